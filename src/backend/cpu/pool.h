/* A fixed set of worker threads that run one parallel loop at a time: qvl_pool_run(fn, ctx, n)
 * calls fn(ctx, i, tid) for every i in [0, n) spread over the threads (the caller is thread 0),
 * and returns when all are done. tid < qvl_pool_threads() indexes per-thread scratch. */
#ifndef QVL_CPU_POOL_H
#define QVL_CPU_POOL_H

typedef void (*qvl_task_fn)(void *ctx, int i, int tid);
typedef struct qvl_pool qvl_pool;

/* threads <= 0: one per online core. NULL + qvl_error on failure. */
qvl_pool *qvl_pool_new(int threads);
void qvl_pool_free(qvl_pool *p);
int qvl_pool_threads(const qvl_pool *p);
void qvl_pool_run(qvl_pool *p, qvl_task_fn fn, void *ctx, int n);

#endif
