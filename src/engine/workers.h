/* CPU worker threads that prepare requests (image read + decode + preprocess, tokenizing) ahead
 * of the forward passes, so that the device does not wait for them. Items are handed out in the
 * order they were pushed; fn runs on a worker thread with no lock held. */
#ifndef QVL_ENGINE_WORKERS_H
#define QVL_ENGINE_WORKERS_H

typedef void (*qvl_work_fn)(void *ctx, void *item);
typedef struct qvl_workers qvl_workers;

/* n threads (>= 1) running fn(ctx, item) for each pushed item. NULL + error when no thread starts. */
qvl_workers *qvl_workers_new(int n, qvl_work_fn fn, void *ctx);
/* Queues an item. Returns 0, or -1 when out of memory (the caller then runs fn itself). */
int qvl_workers_push(qvl_workers *w, void *item);
/* Finishes the items being worked on, drops the queued ones (their owner still holds them) and
 * joins the threads. */
void qvl_workers_free(qvl_workers *w);

#endif
