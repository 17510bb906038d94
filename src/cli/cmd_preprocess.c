/* qvl preprocess (spec/cli.md). Placeholder until its issue lands. */
#include <stdio.h>
#include <string.h>

#include "cli/commands.h"

int cmd_preprocess(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "--help")) {
        printf("usage: qvl preprocess ... (not implemented yet)\n");
        return 0;
    }
    fprintf(stderr, "qvl: preprocess: not implemented yet\n");
    return 1;
}
