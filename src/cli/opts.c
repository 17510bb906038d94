#include "cli/opts.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cache_env.h"
#include "cli/tuning_env.h"
#include "model/context_len.h"
#include "util/error.h"

int usage_error(const char *cmd, const char *fmt, ...) {
    fprintf(stderr, "qvl: %s: ", cmd);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, " (see 'qvl %s --help')\n", cmd);
    return 2;
}

int runtime_error(void) {
    const char *e = qvl_error();
    fprintf(stderr, "qvl: %s\n", e[0] ? e : "unknown error");
    return 1;
}

int common_opts_check(const char *cmd, const common_opts *c) {
    if (c->threads < 0) return usage_error(cmd, "--threads must be >= 0");
    if (c->max_model_len != -1 && c->max_model_len < QVL_MIN_MAX_MODEL_LEN)
        return usage_error(cmd, "--max-model-len must be at least %d", QVL_MIN_MAX_MODEL_LEN);
    if ((c->min_pixels != -1 && c->min_pixels < 1) || (c->max_pixels != -1 && c->max_pixels < 1) ||
        (c->max_image_tokens != -1 && c->max_image_tokens < 1))
        return usage_error(cmd, "--min-pixels, --max-pixels and --max-image-tokens must be at least 1");
    if (c->kv_dtype && strcmp(c->kv_dtype, "bf16") && strcmp(c->kv_dtype, "fp8"))
        return usage_error(cmd, "--kv-dtype: '%s' is not bf16 or fp8", c->kv_dtype);
    return 0;
}

qvl_engine_opts common_engine_opts(const common_opts *c, const char *model) {
    qvl_engine_opts o = qvl_engine_opts_default();
    o.model_dir = model;
    o.device = !c->device ? QVL_DEVICE_AUTO : !strcmp(c->device, "cpu") ? QVL_DEVICE_CPU : QVL_DEVICE_CUDA;
    o.threads = cli_threads(c->threads);
    o.gpu_mem_mib = c->gpu_mem_mib;
    o.max_model_len = c->max_model_len;
    o.min_pixels = c->min_pixels;
    o.max_pixels = c->max_pixels;
    o.max_image_tokens = c->max_image_tokens;
    o.kv_dtype = c->kv_dtype && !strcmp(c->kv_dtype, "fp8") ? QVL_KV_FP8 : QVL_KV_BF16;
    qvl_tuning_from_env(&o.tuning);
    o.tokenizer_cache_dir = cli_tokenizer_cache_dir();
    return o;
}

const char *cli_tokenizer_cache_dir(void) {
    /* The environment's value for the life of the process (commands read it on the main thread
     * before any engine starts). */
    static char *dir;
    static int read;
    if (!read) {
        dir = qvl_tokenizer_cache_dir_from_env();
        read = 1;
    }
    return dir;
}

long common_max_model_len(const common_opts *c, const qvl_config *cfg) {
    long n;
    return qvl_context_len(cfg, c->max_model_len, &n) ? -1 : n;
}

int cli_threads(int requested) {
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    if (cores < 1) cores = 1;
    if (requested > 4 * cores) {
        fprintf(stderr, "qvl: --threads %d: capped at %ld (4x the %ld cores)\n", requested, 4 * cores, cores);
        return (int)(4 * cores);
    }
    return requested;
}

long common_max_pixels(const common_opts *c, const qvl_config *cfg) {
    long px = c->max_pixels > 0 ? c->max_pixels : cfg->preproc.max_pixels;
    if (c->max_image_tokens > 0 && c->max_image_tokens * 1024 < px) px = c->max_image_tokens * 1024;
    return px;
}

static void print_help(const char *cmd, const cli_opt *opts, int n, const char *usage, const char *about) {
    printf("usage: %s\n\n", usage);
    if (about) printf("%s\n\n", about);
    printf("options:\n");
    for (int i = 0; i < n; i++) {
        char left[64];
        if (opts[i].kind == OPT_FLAG)
            snprintf(left, sizeof left, "--%s", opts[i].name);
        else
            snprintf(left, sizeof left, "--%s %s", opts[i].name, opts[i].arg ? opts[i].arg : "X");
        printf("  %-26s %s\n", left, opts[i].help ? opts[i].help : "");
    }
    printf("  %-26s %s\n", "--help", "show this help");
    (void)cmd;
}

static int set_value(const char *cmd, const cli_opt *o, const char *v) {
    char *end;
    errno = 0;
    switch (o->kind) {
    case OPT_STR: *(const char **)o->dest = v; return 0;
    case OPT_INT: {
        long x = strtol(v, &end, 10);
        if (errno || end == v || *end || x < -2147483647L || x > 2147483647L)
            return usage_error(cmd, "--%s: '%s' is not an integer", o->name, v);
        *(int *)o->dest = (int)x;
        return 0;
    }
    case OPT_LONG: {
        long x = strtol(v, &end, 10);
        if (errno || end == v || *end) return usage_error(cmd, "--%s: '%s' is not an integer", o->name, v);
        *(long *)o->dest = x;
        return 0;
    }
    case OPT_DOUBLE: {
        double x = strtod(v, &end);
        if (errno || end == v || *end) return usage_error(cmd, "--%s: '%s' is not a number", o->name, v);
        *(double *)o->dest = x;
        return 0;
    }
    case OPT_FLAG: break;
    }
    return 0;
}

int opts_parse(int argc, char **argv, const cli_opt *opts, int n_opts, const char *usage,
               const char *about, const char **pos, int max_pos, int *n_pos) {
    const char *cmd = argv[0];
    int np = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            print_help(cmd, opts, n_opts, usage, about);
            return 1;
        }
        if (a[0] == '-' && a[1] == '-' && a[2]) {
            const char *name = a + 2, *eq = strchr(name, '=');
            size_t len = eq ? (size_t)(eq - name) : strlen(name);
            const cli_opt *o = NULL;
            for (int k = 0; k < n_opts; k++)
                if (strlen(opts[k].name) == len && strncmp(opts[k].name, name, len) == 0) o = &opts[k];
            if (!o) return usage_error(cmd, "unknown option '--%.*s'", (int)len, name);
            if (o->kind == OPT_FLAG) {
                if (eq) return usage_error(cmd, "--%s takes no value", o->name);
                *(int *)o->dest = 1;
                continue;
            }
            const char *v = eq ? eq + 1 : NULL;
            if (!v) {
                if (i + 1 >= argc) return usage_error(cmd, "--%s needs a value", o->name);
                v = argv[++i];
            }
            if (set_value(cmd, o, v)) return 2;
            continue;
        }
        if (np >= max_pos) return usage_error(cmd, "unexpected argument '%s'", a);
        pos[np++] = a;
    }
    if (n_pos) *n_pos = np;
    return 0;
}
