/* The command-line contract shared by every command (docs/cli.md). */
#include <stdlib.h>

#include "qvl.h"
#include "test.h"

TEST(cli_version) {
    char *out = NULL;
    CHECK_INT(test_qvl(&out, NULL, "--version"), 0);
    CHECK_CONTAINS(out, "qvl " QVL_VERSION);
    free(out);
}

TEST(cli_unknown_command_is_usage_error) {
    char *err = NULL;
    CHECK_INT(test_qvl(NULL, &err, "frobnicate"), 2);
    CHECK_CONTAINS(err, "qvl: unknown command 'frobnicate'");
    free(err);
}

TEST(cli_every_command_has_help) {
    const char *cmds[] = {"run", "eval", "score", "compare", "mem", "inspect", "tokenize", "preprocess"};
    for (int i = 0; i < 8; i++) {
        char *out = NULL;
        CHECK_INT(test_qvl(&out, NULL, "%s --help", cmds[i]), 0);
        CHECK_CONTAINS(out, "usage: qvl");
        free(out);
    }
}
