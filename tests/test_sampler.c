/* Token selection: bf16 rounding, greedy tie rule, penalties, top-k/top-p sets, seeded sampling. */
#include <math.h>
#include <stdlib.h>

#include "engine/sampler.h"
#include "test.h"

static qvl_sampler_params sampling_params(float temperature, int top_k, float top_p) {
    qvl_sampler_params p = qvl_sampler_params_greedy();
    p.do_sample = 1;
    p.temperature = temperature;
    p.top_k = top_k;
    p.top_p = top_p;
    return p;
}

/* Runs qvl_sampler_candidates on a copy of logits; returns the count, ids in out. */
static int candidates(const qvl_sampler_params *p, const float *logits, int n, int32_t *out) {
    float buf[64];
    memcpy(buf, logits, (size_t)n * sizeof *buf);
    qvl_sampler *s = qvl_sampler_new(n, p);
    int k = qvl_sampler_candidates(s, buf, out, 64);
    qvl_sampler_free(s);
    return k;
}

TEST(sampler_bf16_round_nearest_even) {
    CHECK(qvl_bf16_round(1.0f) == 1.0f);
    CHECK(qvl_bf16_round(1.0f + 0x1p-9f) == 1.0f);               /* below half an ulp (2^-7) */
    CHECK(qvl_bf16_round(1.0f + 0x1p-8f) == 1.0f);               /* exactly half: to even */
    CHECK(qvl_bf16_round(1.0f + 3 * 0x1p-8f) == 1.0f + 0x1p-6f); /* half, odd below: up */
    CHECK(qvl_bf16_round(-1.0f - 0x1p-9f - 0x1p-10f) == -1.0f);   /* 1.5*2^-9 < half an ulp */
    CHECK(qvl_bf16_round(3.14159265f) == 3.140625f);
    CHECK(isinf(qvl_bf16_round(INFINITY)));
}

TEST(sampler_argmax_ties_to_lowest_id) {
    float x[] = {1, 3, 3, 2, 3};
    CHECK_INT(qvl_argmax_lowest(x, 5), 1);
    float y[] = {-5, -4, -4.5f};
    CHECK_INT(qvl_argmax_lowest(y, 3), 1);
}

TEST(sampler_greedy_rounds_to_bf16_before_argmax) {
    /* 1 + 2^-9 beats 1 in float32 but both round to 1.0 in bf16: the lower id wins. */
    float x[] = {0.5f, 1.0f, 1.0f + 0x1p-9f, -2};
    CHECK_INT(qvl_argmax_lowest(x, 4), 2);
    qvl_sampler_params p = qvl_sampler_params_greedy();
    qvl_sampler *s = qvl_sampler_new(4, &p);
    CHECK_INT(qvl_sampler_pick(s, x), 1);
    CHECK(x[2] == 1.0f);   /* processed in place */
    qvl_sampler_free(s);
}

TEST(sampler_repetition_penalty_divides_positive_multiplies_negative) {
    qvl_sampler_params p = qvl_sampler_params_greedy();
    p.repetition_penalty = 2.0f;
    qvl_sampler *s = qvl_sampler_new(5, &p);
    int32_t prompt[] = {0, 1, 1, 4};
    qvl_sampler_accept_prompt(s, prompt, 4);
    float x[] = {3, -2, 1.25f, 0.5f, 0};
    CHECK_INT(qvl_sampler_pick(s, x), 0);   /* 1.5 vs 1.25 */
    CHECK(x[0] == 1.5f);
    CHECK(x[1] == -4.0f);                   /* penalized once although seen twice */
    CHECK(x[2] == 1.25f);
    CHECK(x[3] == 0.5f);
    CHECK(x[4] == 0.0f);
    /* generated tokens count as seen too */
    qvl_sampler_accept(s, 2);
    float y[] = {3, -2, 2, 0.5f, 0};
    CHECK_INT(qvl_sampler_pick(s, y), 0);   /* 1.5 vs 1.0 */
    CHECK(y[2] == 1.0f);
    qvl_sampler_free(s);
}

TEST(sampler_presence_penalty_once_per_generated_token) {
    qvl_sampler_params p = qvl_sampler_params_greedy();
    p.presence_penalty = 1.5f;
    qvl_sampler *s = qvl_sampler_new(4, &p);
    int32_t prompt[] = {3};
    qvl_sampler_accept_prompt(s, prompt, 1);   /* prompt tokens are not penalized */
    qvl_sampler_accept(s, 1);
    qvl_sampler_accept(s, 1);
    qvl_sampler_accept(s, 2);
    float x[] = {0, 2, 1, 1};
    CHECK_INT(qvl_sampler_pick(s, x), 3);
    CHECK(x[0] == 0.0f);
    CHECK(x[1] == 0.5f);
    CHECK(x[2] == -0.5f);
    CHECK(x[3] == 1.0f);
    qvl_sampler_free(s);
}

TEST(sampler_repetition_then_presence_order) {
    qvl_sampler_params p = qvl_sampler_params_greedy();
    p.repetition_penalty = 2.0f;
    p.presence_penalty = 1.0f;
    qvl_sampler *s = qvl_sampler_new(2, &p);
    qvl_sampler_accept(s, 0);
    float x[] = {4, 0};
    qvl_sampler_pick(s, x);
    CHECK(x[0] == 1.0f);    /* 4/2 - 1, not (4-1)/2 */
    qvl_sampler_free(s);
}

TEST(sampler_reset_forgets_seen_tokens) {
    qvl_sampler_params p = qvl_sampler_params_greedy();
    p.repetition_penalty = 2.0f;
    qvl_sampler *s = qvl_sampler_new(2, &p);
    qvl_sampler_accept(s, 0);
    qvl_sampler_reset(s, &p);
    float x[] = {4, 0};
    qvl_sampler_pick(s, x);
    CHECK(x[0] == 4.0f);
    qvl_sampler_free(s);
}

TEST(sampler_top_k_keeps_ties_with_kth) {
    float x[] = {3, 5, 4, 4, 1};
    int32_t ids[64];
    qvl_sampler_params p = sampling_params(1.0f, 2, 1.0f);
    CHECK_INT(candidates(&p, x, 5, ids), 3);
    CHECK_INT(ids[0], 1);
    CHECK_INT(ids[1], 2);   /* equal logits: lower id first */
    CHECK_INT(ids[2], 3);
    p.top_k = 1;
    CHECK_INT(candidates(&p, x, 5, ids), 1);
    CHECK_INT(ids[0], 1);
    p.top_k = 4;
    CHECK_INT(candidates(&p, x, 5, ids), 4);
    CHECK_INT(ids[3], 0);
    p.top_k = 0;   /* off */
    CHECK_INT(candidates(&p, x, 5, ids), 5);
    CHECK_INT(ids[4], 4);
}

TEST(sampler_top_p_sets) {
    /* softmax(2, 1, 0, -1) = 0.6439, 0.2369, 0.0871, 0.0321 */
    float x[] = {0, 2, -1, 1};
    int32_t ids[64];
    qvl_sampler_params p = sampling_params(1.0f, 0, 0.5f);
    CHECK_INT(candidates(&p, x, 4, ids), 1);
    CHECK_INT(ids[0], 1);
    p.top_p = 0.7f;
    CHECK_INT(candidates(&p, x, 4, ids), 2);
    CHECK_INT(ids[1], 3);
    p.top_p = 0.9f;
    CHECK_INT(candidates(&p, x, 4, ids), 3);
    CHECK_INT(ids[2], 0);
    p.top_p = 0.99f;
    CHECK_INT(candidates(&p, x, 4, ids), 4);
    /* temperature sharpens before top-p: softmax(4, 2, 0, -2) = 0.865, 0.117, ... */
    p = sampling_params(0.5f, 0, 0.8f);
    CHECK_INT(candidates(&p, x, 4, ids), 1);
    /* top-k then top-p over the renormalized survivors: softmax(2, 1) = 0.731, 0.269 */
    p = sampling_params(1.0f, 2, 0.7f);
    CHECK_INT(candidates(&p, x, 4, ids), 1);
    p = sampling_params(1.0f, 2, 0.75f);
    CHECK_INT(candidates(&p, x, 4, ids), 2);
}

TEST(sampler_zero_temperature_is_greedy) {
    float x[] = {0, 2, 2, 1};
    qvl_sampler_params p = sampling_params(0.0f, 0, 1.0f);
    qvl_sampler *s = qvl_sampler_new(4, &p);
    for (int i = 0; i < 10; i++) {
        float y[4];
        memcpy(y, x, sizeof y);
        CHECK_INT(qvl_sampler_pick(s, y), 1);
    }
    qvl_sampler_free(s);
}

static void draw(uint64_t seed, int32_t *out, int n) {
    enum { V = 1000 };
    qvl_sampler_params p = sampling_params(1.0f, 0, 1.0f);
    p.seed = seed;
    qvl_sampler *s = qvl_sampler_new(V, &p);
    float *x = malloc(V * sizeof *x);
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < V; j++) x[j] = 0;
        out[i] = qvl_sampler_pick(s, x);
    }
    free(x);
    qvl_sampler_free(s);
}

TEST(sampler_seed_determinism) {
    int32_t a[50], b[50], c[50];
    draw(42, a, 50);
    draw(42, b, 50);
    draw(43, c, 50);
    int same = 0, diff_c = 0, distinct = 0;
    for (int i = 0; i < 50; i++) {
        same += a[i] == b[i];
        diff_c += a[i] != c[i];
        for (int j = 0; j < i; j++)
            if (a[j] == a[i]) goto dup;
        distinct++;
    dup:;
    }
    CHECK_INT(same, 50);
    CHECK(diff_c > 40);      /* 1000 equally likely tokens */
    CHECK(distinct > 40);
}

TEST(sampler_frequencies_follow_softmax) {
    /* logits 0 and ln 3 (bf16: 1.1015625): p(1) = e^1.1015625 / (1 + e^1.1015625) = 0.7506 */
    qvl_sampler_params p = sampling_params(1.0f, 0, 1.0f);
    p.seed = 7;
    qvl_sampler *s = qvl_sampler_new(2, &p);
    int ones = 0, n = 20000;
    for (int i = 0; i < n; i++) {
        float x[] = {0, logf(3)};
        ones += qvl_sampler_pick(s, x) == 1;
    }
    CHECK_NEAR((double)ones / n, 0.7506, 0.015);
    qvl_sampler_free(s);
}

TEST(sampler_params_resolve) {
    qvl_generation_config gc = {0};
    gc.do_sample = 1;
    gc.temperature = 0.7;
    gc.top_k = 20;
    gc.top_p = 0.8;
    gc.repetition_penalty = 1.0;
    qvl_gen_opts g = {0};
    g.temperature = g.top_p = g.repetition_penalty = g.presence_penalty = NAN;
    g.top_k = -1;
    g.seed = 9;
    /* greedy whatever generation_config says */
    qvl_sampler_params p = qvl_sampler_params_resolve(&g, &gc);
    CHECK_INT(p.do_sample, 0);
    CHECK(p.repetition_penalty == 1.0f && p.presence_penalty == 0.0f);
    /* --sample: the checkpoint's values */
    g.sample = 1;
    p = qvl_sampler_params_resolve(&g, &gc);
    CHECK_INT(p.do_sample, 1);
    CHECK(p.temperature == 0.7f && p.top_p == 0.8f);
    CHECK_INT(p.top_k, 20);
    CHECK_INT((long long)p.seed, 9);
    /* overrides */
    g.temperature = 1.5;
    g.top_k = 0;
    g.top_p = 0.95;
    g.presence_penalty = 1.5;
    g.repetition_penalty = 1.1;
    p = qvl_sampler_params_resolve(&g, &gc);
    CHECK(p.temperature == 1.5f && p.top_p == 0.95f && p.presence_penalty == 1.5f);
    CHECK(p.repetition_penalty == 1.1f);
    CHECK_INT(p.top_k, 0);
    /* a missing repetition_penalty (0) means off */
    gc.repetition_penalty = 0;
    g.repetition_penalty = NAN;
    p = qvl_sampler_params_resolve(&g, &gc);
    CHECK(p.repetition_penalty == 1.0f);
}

static int cmp_desc(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x < y) - (x > y);
}

TEST(sampler_top_k_top_p_on_a_real_vocabulary) {
    enum { V = 151936 };
    float *x = malloc(V * sizeof *x), *sorted = malloc(V * sizeof *x), *work = malloc(V * sizeof *x);
    uint32_t r = 12345;
    for (int i = 0; i < V; i++) {
        r = r * 1664525u + 1013904223u;
        /* exponential tail: the largest values are spread apart like real logits, few bf16 ties */
        x[i] = qvl_bf16_round(-2.0f * logf(((float)(r >> 8) + 0.5f) / (float)(1 << 24)));
        sorted[i] = x[i];
    }
    qsort(sorted, V, sizeof *sorted, cmp_desc);
    /* top-k 20: the 20 largest values (plus any tie with the 20th), in decreasing order */
    int32_t ids[64];
    qvl_sampler_params p = sampling_params(1.0f, 20, 1.0f);
    qvl_sampler *s = qvl_sampler_new(V, &p);
    memcpy(work, x, V * sizeof *x);
    int n = qvl_sampler_candidates(s, work, ids, 64);
    int ties = 0;
    while (20 + ties < V && sorted[20 + ties] == sorted[19]) ties++;
    CHECK_INT(n, 20 + ties);
    for (int i = 0; i < n && i < 64; i++) CHECK(x[ids[i]] == sorted[i]);
    qvl_sampler_free(s);
    /* top-p 0.9 after top-k 20 at temperature 3: the head whose preceding mass is below 0.9 */
    p = sampling_params(3.0f, 20, 0.9f);
    s = qvl_sampler_new(V, &p);
    memcpy(work, x, V * sizeof *x);
    n = qvl_sampler_candidates(s, work, ids, 64);
    double z = 0, above = 0;
    int want = 0;
    for (int i = 0; i < 20 + ties; i++) z += exp(((double)(sorted[i] / 3.0f)) - (double)(sorted[0] / 3.0f));
    while (want < 20 + ties && (want == 0 || above < 0.9)) above += exp((double)(sorted[want++] / 3.0f) - (double)(sorted[0] / 3.0f)) / z;
    CHECK_INT(n, want);
    CHECK(n >= 2);
    qvl_sampler_free(s);
    free(x);
    free(sorted);
    free(work);
}
