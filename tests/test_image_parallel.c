/* qvl_parallel_for (image pipeline workers): every item exactly once, whatever the thread count,
 * with the pooled workers reused across calls, several callers at once (one gets the pool, the
 * others start their own threads), and the pool switched off. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "util/parallel.h"
#include "test.h"

enum { N = 5000 };

typedef struct {
    atomic_int hits[N];
} counts;

static void mark(void *ctx, int begin, int end) {
    counts *c = ctx;
    for (int i = begin; i < end; i++) atomic_fetch_add(&c->hits[i], 1);
}

/* Runs `rounds` calls with 1..17 threads; returns the number of items not hit exactly rounds times. */
static int run_rounds(int rounds) {
    counts *c = calloc(1, sizeof *c);
    if (!c) return -1;
    for (int r = 0; r < rounds; r++) qvl_parallel_for(1 + r % 17, N, 7, mark, c);
    int bad = 0;
    for (int i = 0; i < N; i++) bad += atomic_load(&c->hits[i]) != rounds;
    free(c);
    return bad;
}

static void *caller(void *arg) {
    *(int *)arg = run_rounds(40);
    return NULL;
}

TEST(image_parallel_for_covers_every_item_once) {
    CHECK_INT(run_rounds(60), 0);
    counts *c = calloc(1, sizeof *c);
    qvl_parallel_for(16, 10, 4, mark, c); /* 10 items, chunks >= 4: 2 threads */
    for (int i = 0; i < 10; i++) CHECK_INT(atomic_load(&c->hits[i]), 1);
    CHECK_INT(atomic_load(&c->hits[10]), 0);
    free(c);
}

TEST(image_parallel_for_concurrent_callers) {
    pthread_t t[4];
    int bad[4] = {-1, -1, -1, -1};
    for (int i = 0; i < 4; i++) CHECK_INT(pthread_create(&t[i], NULL, caller, &bad[i]), 0);
    for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
    for (int i = 0; i < 4; i++) CHECK_INT(bad[i], 0);
}
