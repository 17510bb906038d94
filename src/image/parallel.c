#include "image/parallel.h"

#include <pthread.h>

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

void qvl_parallel_for(int threads, int n, int min_chunk, qvl_range_fn fn, void *ctx) {
    enum { MAX_THREADS = 256 };
    if (n <= 0) return;
    if (min_chunk < 1) min_chunk = 1;
    int t = threads < 1 ? 1 : threads > MAX_THREADS ? MAX_THREADS : threads;
    if (t > n / min_chunk) t = n / min_chunk;
    if (t <= 1) {
        fn(ctx, 0, n);
        return;
    }
    range_job jobs[MAX_THREADS];
    pthread_t tid[MAX_THREADS];
    int started[MAX_THREADS];
    for (int i = 0; i < t; i++) {
        jobs[i] = (range_job){fn, ctx, (int)((long)n * i / t), (int)((long)n * (i + 1) / t)};
        started[i] = i > 0 && pthread_create(&tid[i], NULL, run_job, &jobs[i]) == 0;
    }
    for (int i = 0; i < t; i++)
        if (!started[i]) run_job(&jobs[i]);
    for (int i = 1; i < t; i++)
        if (started[i]) pthread_join(tid[i], NULL);
}
