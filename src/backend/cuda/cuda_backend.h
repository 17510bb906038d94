/* The CUDA backend's operations table (engine/backend.h), registered as "cuda" in builds with
 * CUDA (qvl_backend_find). */
#ifndef QVL_BACKEND_CUDA_BACKEND_H
#define QVL_BACKEND_CUDA_BACKEND_H
#include "engine/backend.h"

const qvl_backend_ops *qvl_cuda_backend_ops(void);
/* The batched path under a backend this table opened (tests). */
struct qvl_cuda_batch;
struct qvl_cuda_batch *qvl_cuda_backend_batch(qvl_backend *b);

#endif
