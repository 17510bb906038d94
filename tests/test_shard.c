/* The partition of an evaluation into shares (src/eval/shard.c): i/N parsing, shard file names,
 * cost balance and determinism. */
#include <stdint.h>
#include <stdlib.h>

#include "eval/shard.h"
#include "test.h"
#include "util/error.h"

TEST(shard_parse) {
    int i = -1, n = -1;
    CHECK_INT(qvl_shard_parse("2/5", "--shard", &i, &n), 0);
    CHECK_INT(i, 2);
    CHECK_INT(n, 5);
    CHECK_INT(qvl_shard_parse("5/5", "--shard", &i, &n), -1);
    CHECK_CONTAINS(qvl_error(), "--shard: '5/5': i must be in 0..4 (0-based)");
    CHECK_INT(qvl_shard_parse("1", "--shard", &i, &n), -1);
    CHECK_INT(qvl_shard_parse("0/0", "--shard", &i, &n), -1);
    CHECK_INT(qvl_shard_parse("-1/3", "--shard", &i, &n), -1);
    CHECK_INT(qvl_shard_parse("0/3x", "--shard", &i, &n), -1);
}

TEST(shard_paths) {
    char *p = qvl_shard_path("runs/a.jsonl", 1, 3), *s = qvl_shard_summary_path(p);
    CHECK_STR(p, "runs/a.shard-1-of-3.jsonl");
    CHECK_STR(s, "runs/a.shard-1-of-3.json");
    free(p);
    free(s);
    p = qvl_shard_path("out", 0, 2);
    CHECK_STR(p, "out.shard-0-of-2.jsonl");
    free(p);
}

TEST(shard_partition_balances_cost_not_count) {
    /* One expensive sample and many cheap ones: by count each share would get 5; by cost the
     * expensive one's share takes few others. */
    int64_t cost[10] = {900, 100, 100, 100, 100, 100, 100, 100, 100, 100};
    int owner[10], again[10];
    uint64_t fp = qvl_shard_partition(cost, 10, 2, owner);
    int64_t load[2] = {0, 0};
    int count[2] = {0, 0};
    for (int k = 0; k < 10; k++) {
        load[owner[k]] += cost[k];
        count[owner[k]]++;
    }
    CHECK_INT(load[0], 900);   /* the expensive sample alone: 900 vs 9 x 100 */
    CHECK_INT(load[1], 900);
    CHECK_INT(count[0], 1);
    CHECK_INT(owner[0], 0);
    /* The same costs give the same shares and fingerprint; other costs another fingerprint. */
    CHECK(qvl_shard_partition(cost, 10, 2, again) == fp);
    CHECK(!memcmp(owner, again, sizeof owner));
    cost[3] = 101;
    CHECK(qvl_shard_partition(cost, 10, 2, again) != fp);
    CHECK(qvl_shard_partition(cost, 10, 3, again) != fp);
}

TEST(shard_partition_every_sample_once_and_close_loads) {
    enum { N = 1000, S = 7 };
    int64_t *cost = malloc(N * sizeof *cost);
    int *owner = malloc(N * sizeof *owner);
    uint32_t x = 12345;
    int64_t total = 0, max_cost = 0;
    for (int k = 0; k < N; k++) {
        x = x * 1664525u + 1013904223u;
        cost[k] = 50 + (x >> 20) % 2000;   /* image tokens of varied images */
        total += cost[k];
        if (cost[k] > max_cost) max_cost = cost[k];
    }
    qvl_shard_partition(cost, N, S, owner);
    int64_t load[S] = {0};
    for (int k = 0; k < N; k++) {
        CHECK(owner[k] >= 0 && owner[k] < S);
        load[owner[k]] += cost[k];
    }
    int64_t lo = load[0], hi = load[0];
    for (int s = 1; s < S; s++) {
        if (load[s] < lo) lo = load[s];
        if (load[s] > hi) hi = load[s];
    }
    CHECK(hi - lo <= max_cost);          /* greedy longest-first bound */
    CHECK(hi * S <= total + total / 100);   /* within 1% of a perfect split here */
    /* More shares than samples: the extra shares are empty, nothing is lost. */
    int64_t c3[3] = {5, 5, 5};
    int o3[3];
    qvl_shard_partition(c3, 3, 5, o3);
    CHECK(o3[0] != o3[1] && o3[1] != o3[2] && o3[0] != o3[2]);
    free(cost);
    free(owner);
}
