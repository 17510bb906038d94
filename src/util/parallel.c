/* qvl_parallel_for: the calling thread takes the first share, workers the others. Workers are kept
 * in a small process-wide pool (created on first use, parked on a condition variable between
 * calls): creating and joining threads per call cost ~15-40 us a thread, three times per image,
 * as much as the whole resize of a small image. One caller uses the pool at a time; a concurrent
 * caller (several images preprocessed at once, or a second engine in the process) starts threads
 * per call instead. The split into chunks is the same either way, so results never depend on who
 * got the pool. The pool holds idle threads only, no settings: sharing it between engines changes
 * no result. (The QVL_IMAGE_POOL=0 switch that turned it off is gone: the pool won.) */
#include "util/parallel.h"

#include <pthread.h>
#include <stdlib.h>

enum { MAX_THREADS = 256, POOL_MAX = 63 };

typedef struct {
    qvl_range_fn fn;
    void *ctx;
    int begin, end;
} range_job;

static void *run_job(void *arg) {
    range_job *j = arg;
    j->fn(j->ctx, j->begin, j->end);
    return NULL;
}

static struct {
    pthread_mutex_t busy;   /* held by the one caller using the pool */
    pthread_mutex_t mu;     /* guards everything below */
    pthread_cond_t go, done;
    unsigned gen;           /* bumped for every call: workers wake on a new value */
    int workers, pending, n_jobs;
    range_job jobs[POOL_MAX + 1];
    unsigned start_gen[POOL_MAX];
} pool = {.busy = PTHREAD_MUTEX_INITIALIZER, .mu = PTHREAD_MUTEX_INITIALIZER, .go = PTHREAD_COND_INITIALIZER,
            .done = PTHREAD_COND_INITIALIZER};

static void *pool_worker(void *arg) {
    const int me = (int)(long)arg; /* runs jobs[me + 1] */
    pthread_mutex_lock(&pool.mu);
    unsigned seen = pool.start_gen[me]; /* the generation when it was created: a later one is work */
    for (;;) {
        while (pool.gen == seen) pthread_cond_wait(&pool.go, &pool.mu);
        seen = pool.gen;
        if (me + 1 >= pool.n_jobs) continue;
        range_job j = pool.jobs[me + 1];
        pthread_mutex_unlock(&pool.mu);
        run_job(&j);
        pthread_mutex_lock(&pool.mu);
        if (--pool.pending == 0) pthread_cond_signal(&pool.done);
    }
    return NULL;
}

/* Runs jobs[0..t) with the pool; returns 0, or -1 (pool busy: nothing was run). */
static int pool_run(range_job *jobs, int t) {
    if (t - 1 > POOL_MAX || pthread_mutex_trylock(&pool.busy) != 0) return -1;
    pthread_mutex_lock(&pool.mu);
    while (pool.workers < t - 1) { /* grow on demand; workers never exit */
        pthread_t tid;
        pool.start_gen[pool.workers] = pool.gen;
        if (pthread_create(&tid, NULL, pool_worker, (void *)(long)pool.workers) != 0) break;
        pthread_detach(tid);
        pool.workers++;
    }
    if (pool.workers < t - 1) { /* cannot create enough threads: let the caller fall back */
        pthread_mutex_unlock(&pool.mu);
        pthread_mutex_unlock(&pool.busy);
        return -1;
    }
    for (int i = 0; i < t; i++) pool.jobs[i] = jobs[i];
    pool.n_jobs = t;
    pool.pending = t - 1;
    pool.gen++;
    pthread_cond_broadcast(&pool.go);
    pthread_mutex_unlock(&pool.mu);
    run_job(&jobs[0]);
    pthread_mutex_lock(&pool.mu);
    while (pool.pending > 0) pthread_cond_wait(&pool.done, &pool.mu);
    pthread_mutex_unlock(&pool.mu);
    pthread_mutex_unlock(&pool.busy);
    return 0;
}

void qvl_parallel_for(int threads, int n, int min_chunk, qvl_range_fn fn, void *ctx) {
    if (n <= 0) return;
    if (min_chunk < 1) min_chunk = 1;
    int t = threads < 1 ? 1 : threads > MAX_THREADS ? MAX_THREADS : threads;
    if (t > n / min_chunk) t = n / min_chunk;
    if (t <= 1) {
        fn(ctx, 0, n);
        return;
    }
    range_job jobs[MAX_THREADS];
    for (int i = 0; i < t; i++) jobs[i] = (range_job){fn, ctx, (int)((long)n * i / t), (int)((long)n * (i + 1) / t)};
    if (pool_run(jobs, t) == 0) return;
    pthread_t tid[MAX_THREADS];
    int started[MAX_THREADS];
    for (int i = 0; i < t; i++) started[i] = i > 0 && pthread_create(&tid[i], NULL, run_job, &jobs[i]) == 0;
    for (int i = 0; i < t; i++)
        if (!started[i]) run_job(&jobs[i]);
    for (int i = 1; i < t; i++)
        if (started[i]) pthread_join(tid[i], NULL);
}
