/* qvl eval (spec/cli.md). Placeholder until its issue lands. */
#include <stdio.h>
#include <string.h>

#include "cli/commands.h"

int cmd_eval(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "--help")) {
        printf("usage: qvl eval ... (not implemented yet)\n");
        return 0;
    }
    fprintf(stderr, "qvl: eval: not implemented yet\n");
    return 1;
}
