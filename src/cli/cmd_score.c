/* qvl score (spec/cli.md). Placeholder until its issue lands. */
#include <stdio.h>
#include <string.h>

#include "cli/commands.h"

int cmd_score(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "--help")) {
        printf("usage: qvl score ... (not implemented yet)\n");
        return 0;
    }
    fprintf(stderr, "qvl: score: not implemented yet\n");
    return 1;
}
