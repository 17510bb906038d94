/* Command-line options: `--opt value` and `--opt=value`, any order, plus positional arguments.
 * Every command declares a table of options; the parser fills the destinations, prints --help
 * from the table, and reports usage errors as "qvl: <cmd>: <reason>" (exit code 2). */
#ifndef QVL_CLI_OPTS_H
#define QVL_CLI_OPTS_H
#include <stdint.h>

#include "model/config.h"
#include "qvl.h"

enum opt_kind { OPT_FLAG, OPT_STR, OPT_INT, OPT_LONG, OPT_DOUBLE };

typedef struct {
    const char *name;   /* without the leading "--" */
    enum opt_kind kind;
    void *dest;         /* int* for FLAG/INT, const char** for STR, long* for LONG, double* for DOUBLE */
    const char *arg;    /* placeholder shown in help, e.g. "N" (NULL for flags) */
    const char *help;
} cli_opt;

/* Options shared by every command that runs a model (docs/cli.md). -1 / NULL mean "not given". */
typedef struct {
    const char *device;     /* "cpu" | "cuda" | NULL (auto) */
    int threads;            /* 0 = all cores */
    long gpu_mem_mib;
    long max_model_len;
    long min_pixels, max_pixels;
    long max_image_tokens;
    long seed;
    const char *kv_dtype;   /* "bf16" | "fp8" | NULL (bf16) */
} common_opts;

#define COMMON_OPTS_INIT {NULL, 0, -1, -1, -1, -1, -1, 0, NULL}
/* Expands to the cli_opt rows for a common_opts variable `c`. */
#define COMMON_OPT_ROWS(c)                                                                          \
    {"device", OPT_STR, &(c).device, "cpu|cuda", "device to run on (default: cuda if usable, else cpu)"}, \
    {"threads", OPT_INT, &(c).threads, "N", "CPU threads (default: all cores)"},                      \
    COMMON_PLAN_OPT_ROWS(c),                                                                        \
    {"seed", OPT_LONG, &(c).seed, "N", "random seed for sampling"}
/* Only the rows that change a memory plan (`qvl mem` runs no model: no device, threads or seed). */
#define COMMON_PLAN_OPT_ROWS(c)                                                                     \
    {"gpu-mem", OPT_LONG, &(c).gpu_mem_mib, "MiB", "hard cap on all GPU memory qvl allocates"},        \
    {"max-model-len", OPT_LONG, &(c).max_model_len, "N", "maximum context length in tokens"},          \
    {"min-pixels", OPT_LONG, &(c).min_pixels, "N", "minimum image area after resize"},                 \
    {"max-pixels", OPT_LONG, &(c).max_pixels, "N", "maximum image area after resize"},                 \
    {"max-image-tokens", OPT_LONG, &(c).max_image_tokens, "N", "cap tokens per image (max-pixels = N*1024)"}, \
    {"kv-dtype", OPT_STR, &(c).kv_dtype, "bf16|fp8", "KV cache type: bf16 (default) or fp8 (e4m3, scale 1.0)"}

/* CPU threads for a --threads request (0: all cores): above 4x the cores it is capped there, with a
 * one-line warning on stderr (more threads than that only slow the CPU path down). */
int cli_threads(int requested);

/* Range checks of the numeric common options (--device is checked by each command): 0, or the
 * usage error's exit code 2 (already printed). */
int common_opts_check(const char *cmd, const common_opts *c);

/* The engine options for model dir and these common options (device: NULL = auto, "cpu" = CPU,
 * anything else = CUDA; callers check the name first). */
qvl_engine_opts common_engine_opts(const common_opts *c, const char *model);
/* The tokenizer cache folder named by the environment (src/cli/cache_env.h), read once; NULL: none. */
const char *cli_tokenizer_cache_dir(void);

/* The context and largest image a memory plan is made for (`qvl mem`, the eval report): the
 * context follows the one rule the engine applies (model/context_len.h: default 32768 capped at
 * max_position_embeddings, an explicit value refused above it): -1 with the library error set when
 * refused; the image area is --max-pixels (default: preprocessor_config.json's) capped at
 * max-image-tokens*1024. */
long common_max_model_len(const common_opts *c, const qvl_config *cfg);
long common_max_pixels(const common_opts *c, const qvl_config *cfg);

/* Parses argv (argv[0] is the command name). Positional arguments are collected into pos (size
 * max_pos). Returns 0 on success, 1 if --help was printed (caller exits 0), 2 on a usage error
 * (already printed). `usage` is the synopsis line, `about` one paragraph for --help. */
int opts_parse(int argc, char **argv, const cli_opt *opts, int n_opts, const char *usage,
               const char *about, const char **pos, int max_pos, int *n_pos);

/* Prints "qvl: <cmd>: <msg>" and returns 2 (for missing required options and the like). */
int usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prints "qvl: <library error>" and returns 1. */
int runtime_error(void);

#endif
