/* Thread pool: workers sleep on a condition variable until the generation counter moves, then
 * take task indices from a shared atomic counter; the last one to finish wakes the caller. */
#include "backend/cpu/pool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

#include "util/error.h"

struct qvl_pool {
    int n_threads;
    pthread_t *workers;            /* n_threads - 1 */
    pthread_mutex_t mu;
    pthread_cond_t work, done;
    unsigned long generation;      /* bumped once per qvl_pool_run */
    int pending;                   /* workers still inside the current run */
    int quit;
    qvl_task_fn fn;
    void *ctx;
    int n;
    atomic_int next;
};

typedef struct { qvl_pool *p; int tid; } worker_arg;

static void drain(qvl_pool *p, qvl_task_fn fn, void *ctx, int n, int tid) {
    for (int i; (i = atomic_fetch_add(&p->next, 1)) < n;) fn(ctx, i, tid);
}

static void *worker_main(void *arg) {
    worker_arg *wa = arg;
    qvl_pool *p = wa->p;
    int tid = wa->tid;
    free(wa);
    unsigned long seen = 0;
    for (;;) {
        pthread_mutex_lock(&p->mu);
        while (p->generation == seen && !p->quit) pthread_cond_wait(&p->work, &p->mu);
        if (p->quit) {
            pthread_mutex_unlock(&p->mu);
            return NULL;
        }
        seen = p->generation;
        qvl_task_fn fn = p->fn;
        void *ctx = p->ctx;
        int n = p->n;
        pthread_mutex_unlock(&p->mu);
        drain(p, fn, ctx, n, tid);
        pthread_mutex_lock(&p->mu);
        if (--p->pending == 0) pthread_cond_signal(&p->done);
        pthread_mutex_unlock(&p->mu);
    }
}

qvl_pool *qvl_pool_new(int threads) {
    if (threads <= 0) {
        long nc = sysconf(_SC_NPROCESSORS_ONLN);
        threads = nc > 0 ? (int)nc : 1;
    }
    if (threads > 256) threads = 256;
    qvl_pool *p = calloc(1, sizeof *p);
    if (!p) {
        qvl_errorf("thread pool: out of memory");
        return NULL;
    }
    p->n_threads = threads;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->work, NULL);
    pthread_cond_init(&p->done, NULL);
    atomic_init(&p->next, 0);
    p->workers = calloc((size_t)threads, sizeof *p->workers);
    if (!p->workers) {
        qvl_pool_free(p);
        qvl_errorf("thread pool: out of memory");
        return NULL;
    }
    for (int t = 1; t < threads; t++) {
        worker_arg *wa = malloc(sizeof *wa);
        if (wa) *wa = (worker_arg){p, t};
        if (!wa || pthread_create(&p->workers[t - 1], NULL, worker_main, wa) != 0) {
            free(wa);
            p->n_threads = t;             /* only t-1 workers exist: free joins those */
            qvl_pool_free(p);
            qvl_errorf("thread pool: cannot start thread %d of %d", t, threads);
            return NULL;
        }
    }
    return p;
}

void qvl_pool_free(qvl_pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->quit = 1;
    pthread_cond_broadcast(&p->work);
    pthread_mutex_unlock(&p->mu);
    if (p->workers)
        for (int t = 1; t < p->n_threads; t++) pthread_join(p->workers[t - 1], NULL);
    pthread_cond_destroy(&p->work);
    pthread_cond_destroy(&p->done);
    pthread_mutex_destroy(&p->mu);
    free(p->workers);
    free(p);
}

int qvl_pool_threads(const qvl_pool *p) { return p->n_threads; }

void qvl_pool_run(qvl_pool *p, qvl_task_fn fn, void *ctx, int n) {
    if (n <= 0) return;
    if (p->n_threads == 1 || n == 1) {
        for (int i = 0; i < n; i++) fn(ctx, i, 0);
        return;
    }
    pthread_mutex_lock(&p->mu);
    p->fn = fn;
    p->ctx = ctx;
    p->n = n;
    atomic_store(&p->next, 0);
    p->pending = p->n_threads - 1;
    p->generation++;
    pthread_cond_broadcast(&p->work);
    pthread_mutex_unlock(&p->mu);
    drain(p, fn, ctx, n, 0);
    pthread_mutex_lock(&p->mu);
    while (p->pending > 0) pthread_cond_wait(&p->done, &p->mu);
    pthread_mutex_unlock(&p->mu);
}
