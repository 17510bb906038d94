/* The backends built into this binary. "cpu" is always there; "cuda" (backend/cuda/cuda_backend.c,
 * batched) only in a CUDA build. */
#include <string.h>

#include "engine/backend.h"
#include "util/error.h"

extern const qvl_backend_ops qvl_cpu_backend_ops;
#ifdef QVL_CUDA
/* "cuda": the batched CUDA backend (backend/cuda/cuda_backend.c). */
#include "backend/cuda/cuda_backend.h"
#define CUDA_OPS qvl_cuda_backend_ops()
#endif

const qvl_backend_ops *qvl_backend_find(const char *name) {
    const qvl_backend_ops *const backends[] = {
        &qvl_cpu_backend_ops,
#ifdef QVL_CUDA
        CUDA_OPS,
#endif
    };
    for (size_t i = 0; i < sizeof backends / sizeof *backends; i++)
        if (name && !strcmp(backends[i]->name, name)) return backends[i];
    qvl_errorf("%s: this build has no such backend (built in: cpu%s)", name ? name : "(none)",
#ifdef QVL_CUDA
               ", cuda"
#else
               ""
#endif
    );
    qvl_error_set_kind(QVL_ERR_UNSUPPORTED);
    return NULL;
}
