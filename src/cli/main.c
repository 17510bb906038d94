/* qvl: command dispatch. */
#include <stdio.h>
#include <string.h>

#include "cli/commands.h"
#include "cli/eval_mpi.h"
#include "qvl.h"

static const struct {
    const char *name;
    int (*fn)(int, char **);
    const char *about;
} commands[] = {
    {"run", cmd_run, "generate an answer for an image and a prompt"},
    {"serve", cmd_serve, "serve the model over HTTP (OpenAI-compatible chat completions)"},
    {"eval", cmd_eval, "evaluate a model on OCRBench (json+images, TSV or parquet)"},
    {"score", cmd_score, "score OCRBench predictions made elsewhere"},
    {"merge", cmd_merge, "combine the results of qvl eval --shard runs into one report"},
    {"compare", cmd_compare, "compare evaluation summaries (Markdown table, SVG chart)"},
    {"mem", cmd_mem, "print the GPU memory plan without running the model"},
    {"inspect", cmd_inspect, "summarize a checkpoint folder"},
    {"tokenize", cmd_tokenize, "encode or decode text with a tokenizer.json"},
    {"preprocess", cmd_preprocess, "turn an image into pixel_values (.npy)"},
};

static void usage(FILE *f) {
    fprintf(f, "usage: qvl COMMAND [options]   (qvl COMMAND --help for its options)\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-11s %s\n", commands[i].name, commands[i].about);
    fprintf(f, "\n  --version   print the version\n");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *c = argv[1];
    if (!strcmp(c, "--version") || !strcmp(c, "version")) {
        printf("qvl %s\nmpi: %s\n", QVL_VERSION, eval_mpi_built() ? "yes" : "no");
        return 0;
    }
    if (!strcmp(c, "--help") || !strcmp(c, "-h") || !strcmp(c, "help")) {
        usage(stdout);
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(c, commands[i].name)) return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "qvl: unknown command '%s' (see 'qvl --help')\n", c);
    return 2;
}
