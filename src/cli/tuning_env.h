/* qvl_tuning from the environment: the one place the QVL_* kernel switches are read (the CLI and
 * bench; the library never reads the environment). Header-only so that bench/ and tests/gpu/
 * binaries use it without the CLI objects.
 *   QVL_ATT_IMPL=n   prefill/vision attention: 0 the mma.sync (FA2) kernel, 1 + c wgmma configuration c
 *   QVL_GEMV_PICK=n  decode one-row product variant n (1..5) for every shape (bit-comparable runs)
 *   QVL_NO_GRAPH=1   decode steps kernel by kernel (no CUDA graph)
 *   QVL_DECODE_GRAPHS=1 / 0   batched decode steps from CUDA graphs per batch-size bucket: on / off
 *   QVL_DUMP=DIR     every stage's activations as DIR/<name>.npy (parity) */
#ifndef QVL_CLI_TUNING_ENV_H
#define QVL_CLI_TUNING_ENV_H
#include <stdlib.h>

#include "qvl.h"

static inline void qvl_tuning_from_env(qvl_tuning *t) {
    const char *e = getenv("QVL_ATT_IMPL");
    if (e && *e && atoi(e) >= 0) t->attention = atoi(e) + 1;
    e = getenv("QVL_GEMV_PICK");
    if (e && atoi(e) >= 1 && atoi(e) <= 5) t->gemv_variant = atoi(e);
    e = getenv("QVL_NO_GRAPH");
    if (e && *e && *e != '0') t->no_cuda_graphs = 1;
    e = getenv("QVL_DECODE_GRAPHS");
    if (e && *e) t->decode_graphs = *e == '0' ? -1 : 1;
    e = getenv("QVL_DUMP");
    if (e && *e) t->dump_dir = e;
}

#endif
