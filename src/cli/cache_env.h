/* The tokenizer's binary-cache folder from the environment: the one place these variables are read
 * (the CLI and bench; the library takes the folder as an argument, qvl_tokenizer_load_cached, or as
 * qvl_engine_opts.tokenizer_cache_dir). Header-only so that bench/ binaries use it without the CLI
 * objects.
 *   QVL_TOKENIZER_CACHE=0  no cache
 *   QVL_CACHE_DIR=DIR      the folder; else $XDG_CACHE_HOME/qvl, else $HOME/.cache/qvl */
#ifndef QVL_CLI_CACHE_ENV_H
#define QVL_CLI_CACHE_ENV_H
#include <stdlib.h>
#include <string.h>

#include "util/file.h"

/* The folder (malloc'd), or NULL: caching off, or no folder can be named. */
static inline char *qvl_tokenizer_cache_dir_from_env(void) {
    const char *e = getenv("QVL_TOKENIZER_CACHE");
    if (e && !strcmp(e, "0")) return NULL;
    const char *d = getenv("QVL_CACHE_DIR");
    if (d && d[0]) return strdup(d);
    d = getenv("XDG_CACHE_HOME");
    if (d && d[0]) return qvl_path_join(d, "qvl");
    d = getenv("HOME");
    if (d && d[0]) return qvl_path_join(d, ".cache/qvl");
    return NULL;
}

#endif
