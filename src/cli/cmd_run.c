/* qvl run (spec/cli.md). Placeholder until its issue lands. */
#include <stdio.h>
#include <string.h>

#include "cli/commands.h"

int cmd_run(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "--help")) {
        printf("usage: qvl run ... (not implemented yet)\n");
        return 0;
    }
    fprintf(stderr, "qvl: run: not implemented yet\n");
    return 1;
}
