/* Next-token picking on the device (cuda_sample.cu) against the CPU sampler (engine/sampler.c):
 * the same logits and the same seed must give the same ids. Random rows (exact ties, huge and tiny
 * temperatures, top-k 1/20/off/beyond one chunk, top-p 0.1/0.8/1, penalties, greedy with
 * penalties) at V = 151936 and small vocabularies through the kernel's test hook; the CUDA model's
 * own picks (prefill + decode graph) against the CPU sampler on the model's logits; `qvl run
 * --sample --seed 7` end to end; and the kernel's time per pick. The kernel comparison runs the
 * fast path (path 1, counting the picks it made) and the forced fallback (path 2); the timing
 * compares the one-block kernel with the fast path. QVL_TEST_VERBOSE=1 prints figures. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cuda_device.h"
#include "backend/cuda/cuda_sample.h"
#include "engine/sampler.h"
#include "model/model_cuda.h"
#include "gpu_test.h"
#include "../test.h"
#include "util/error.h"

static uint64_t rng_state = 88172645463325252ull;
static double rnd(void) {   /* xorshift64, [0, 1) */
    rng_state ^= rng_state << 13, rng_state ^= rng_state >> 7, rng_state ^= rng_state << 17;
    return (double)(rng_state >> 11) * (1.0 / 9007199254740992.0);
}
static double gauss(void) { return sqrt(-2 * log(1 - rnd())) * cos(6.283185307179586 * rnd()); }

/* A logits row: Gaussian of a random scale, sometimes quantized (many exact ties), sometimes flat,
 * with a few spikes (a peaked head like a language model's). */
static void make_row(float *x, int V) {
    double scale = 0.5 + 5 * rnd(), q = rnd();
    int flat = rnd() < 0.05;
    for (int i = 0; i < V; i++) {
        double v = flat ? 1.0 : scale * gauss();
        if (q < 0.3) v = floor(v * 2) / 2;   /* ties everywhere */
        x[i] = (float)v;
    }
    int spikes = (int)(rnd() * 6);
    for (int s = 0; s < spikes; s++) x[(int)(rnd() * V)] += (float)(4 + 10 * rnd());
    if (rnd() < 0.2 && V > 3) x[1] = x[2] = x[0] = x[(int)(rnd() * V)];   /* ties at the top */
}

typedef struct {
    const char *name;
    qvl_sampler_params p;
} pcase;

static pcase sampling(const char *name, float t, int k, float tp, float rp, float pp) {
    pcase c = {name, qvl_sampler_params_greedy()};
    c.p.do_sample = 1, c.p.temperature = t, c.p.top_k = k, c.p.top_p = tp;
    c.p.repetition_penalty = rp, c.p.presence_penalty = pp;
    return c;
}

static qvl_cuda_pick_params pick_params(const qvl_sampler_params *p) {
    qvl_cuda_pick_params q = {p->do_sample, p->temperature, p->top_k, p->top_p, p->repetition_penalty, p->presence_penalty};
    return q;
}

/* picks consecutive picks of one request on random rows; adds to *total / *same, and the picks
 * the fast path made to *fast. */
static void run_case(const pcase *c, int V, int picks, int path, uint64_t seed, long *total, long *same, long *fast) {
    qvl_sampler_params p = c->p;
    p.seed = seed;
    qvl_sampler *cpu = qvl_sampler_new(V, &p), *stream = qvl_sampler_new(V, &p);
    qvl_cuda_picker *gpu = qvl_cuda_picker_new(V, picks);
    float *row = malloc((size_t)V * sizeof *row), *copy = malloc((size_t)V * sizeof *copy);
    double *u = malloc((size_t)picks * sizeof *u);
    int32_t prompt[16];
    CHECK(cpu && stream && gpu && row && copy && u);
    if (!cpu || !stream || !gpu || !row || !copy || !u) goto done;
    for (int i = 0; i < 16; i++) prompt[i] = (int32_t)(rnd() * V);
    qvl_sampler_accept_prompt(cpu, prompt, 16);
    qvl_sampler_uniforms(stream, u, picks);
    qvl_cuda_pick_params pp = pick_params(&p);
    CHECK_INT(qvl_cuda_picker_reset(gpu, &pp, prompt, 16, u, picks), 0);
    qvl_cuda_picker_set_path(gpu, path);
    int ok = 0, shown = 0, nfast = 0;
    for (int k = 0; k < picks; k++) {
        make_row(row, V);
        memcpy(copy, row, (size_t)V * sizeof *row);
        int32_t want = qvl_sampler_pick(cpu, copy);
        qvl_sampler_accept(cpu, want);
        int got = qvl_cuda_picker_pick(gpu, row);
        if (got < 0) {
            test_fail(__FILE__, __LINE__, "%s: %s", c->name, qvl_error());
            break;
        }
        int f = qvl_cuda_picker_took_fast(gpu);
        CHECK(f >= 0);
        nfast += f > 0;
        ok += got == want;
        if (got != want && shown++ < 3) printf("    %s V=%d pick %d: gpu %d, cpu %d (fast %d)\n", c->name, V, k, got, want, f);
    }
    *total += picks, *same += ok, *fast += nfast;
    if (verbose()) printf("    %-34s V=%-6d %d/%d identical, %d by the fast path\n", c->name, V, ok, picks, nfast);
    CHECK_INT(ok, picks);
done:
    qvl_sampler_free(cpu), qvl_sampler_free(stream), qvl_cuda_picker_free(gpu);
    free(row), free(copy), free(u);
}

TEST(gpu_sample_matches_cpu_sampler) {
    if (!have_gpu()) return;
    const pcase cases[] = {
        {"greedy", qvl_sampler_params_greedy()},
        sampling("greedy + penalties (t=0)", 0, 0, 1, 1.3f, 0.7f),
        sampling("qwen t=0.7 k=20 p=0.8", 0.7f, 20, 0.8f, 1, 0),
        sampling("qwen + rp 1.1 pp 1.5", 0.7f, 20, 0.8f, 1.1f, 1.5f),
        sampling("t=1 k=off p=1", 1, 0, 1, 1, 0),
        sampling("t=1 k=off p=0.1", 1, 0, 0.1f, 1, 0),
        sampling("t=0.7 k=off p=0.8", 0.7f, 0, 0.8f, 1, 0),
        sampling("t=0.01 k=1", 0.01f, 1, 1, 1, 0),
        sampling("t=1 k=1 p=0.5 rp 2", 1, 1, 0.5f, 2, 0),
        sampling("t=100 k=off p=0.8", 100, 0, 0.8f, 1, 0),
        sampling("t=1e-3 k=20 p=0.8", 1e-3f, 20, 0.8f, 1, 0),
        sampling("t=1.3 k=3000 p=1", 1.3f, 3000, 1, 1, 0),
        sampling("t=0.9 k=5000 p=0.95 pp 0.5", 0.9f, 5000, 0.95f, 1, 0.5f),
        sampling("t=1 k=50 p=0.9 rp 1.2", 1, 50, 0.9f, 1.2f, 0),
        sampling("t=0.8 k=64 p=0.95", 0.8f, 64, 0.95f, 1, 0),   /* the fast path's largest top-k */
        sampling("t=0.8 k=65 p=0.95", 0.8f, 65, 0.95f, 1, 0),   /* one more: the one-block kernel */
        sampling("t=0.5 k=off p=0.9 rp 1.1", 0.5f, 0, 0.9f, 1.1f, 0),
    };
    const int n_cases = (int)(sizeof cases / sizeof cases[0]);
    const int vocabs[] = {151936, 7, 300, 5000, 2049};
    /* path 1: the fast path (the one-block kernel where it cannot pick); path 2: the fast path's
     * kernels always followed by the one-block kernel (fewer picks: that is the old cost) */
    for (int path = 1; path <= 2; path++) {
        long total = 0, same = 0, fast = 0;
        for (int v = 0; v < 5; v++)
            for (int c = 0; c < n_cases; c++) {
                int V = vocabs[v];
                /* the slow ones at the full vocabulary: flat heads walk many chunks on both sides */
                int picks = V == 151936 ? (cases[c].p.temperature >= 100 ? 6 : 40) : 250;
                if (path == 2) picks = (picks + 3) / 4;
                run_case(&cases[c], V, picks, path, 1000u + 17u * (unsigned)c + (unsigned)v + 100u * (unsigned)path, &total,
                         &same, &fast);
            }
        printf("    gpu_sample path %d: %ld picks compared, %ld identical, %ld by the fast path\n", path, total, same,
               fast);
        if (path == 1) CHECK(fast > total / 8);   /* the fast path really picks */
        if (path == 2) CHECK_INT((int)fast, 0);
    }
}

/* The CUDA model picks (prefill, then the decode graph) exactly as the CPU sampler picks from the
 * model's own logits (qvl_cuda_logits after each step) with the same seed. */
TEST(gpu_sample_model_picks_match_cpu_sampler) {
    if (!have_gpu()) return;
    qvl_cuda_opts o = {.max_model_len = 512, .max_pixels = 1 << 20};
    qvl_tuning_from_env(&o.tuning);
    qvl_cuda_model *m = qvl_cuda_model_open(FIX "/tied", &o);
    CHECK(m != NULL);
    if (!m) return;
    const int V = qvl_cuda_model_config(m)->text.vocab_size, steps = 40;
    const pcase cases[] = {
        sampling("qwen t=0.7 k=20 p=0.8", 0.7f, 20, 0.8f, 1, 0),
        sampling("t=1.5 k=off p=1 rp 1.3 pp 0.5", 1.5f, 0, 1, 1.3f, 0.5f),
        sampling("greedy + rp 1.5 pp 2", 0, 0, 1, 1.5f, 2),
        {"greedy", qvl_sampler_params_greedy()},
    };
    float *logits = malloc((size_t)V * sizeof *logits);
    double *u = malloc(steps * sizeof *u);
    int32_t prompt[24];
    for (int i = 0; i < 24; i++) prompt[i] = 100 + 37 * i;
    long total = 0, same = 0;
    for (int c = 0; c < 4; c++) {
        qvl_sampler_params p = cases[c].p;
        p.seed = 7 + (uint64_t)c;
        qvl_sampler *cpu = qvl_sampler_new(V, &p), *stream = qvl_sampler_new(V, &p);
        qvl_sampler_accept_prompt(cpu, prompt, 24);
        qvl_sampler_uniforms(stream, u, steps);
        qvl_cuda_pick_params pp = pick_params(&p);
        CHECK_INT(qvl_cuda_set_picking(m, &pp, u, steps), 0);
        int id = qvl_cuda_prefill(m, prompt, 24), ok = 0;
        for (int k = 0; k < steps && id >= 0; k++) {
            CHECK_INT(qvl_cuda_logits(m, logits), 0);
            int want = qvl_sampler_pick(cpu, logits);
            qvl_sampler_accept(cpu, want);
            ok += id == want;
            if (id != want) printf("    %s step %d: gpu %d, cpu %d\n", cases[c].name, k, id, want);
            if (k + 1 < steps) id = qvl_cuda_decode(m, id);
        }
        CHECK(id >= 0);
        total += steps, same += ok;
        CHECK_INT(ok, steps);
        if (verbose()) printf("    model %-30s %d/%d identical\n", cases[c].name, ok, steps);
        qvl_sampler_free(cpu), qvl_sampler_free(stream);
    }
    printf("    gpu_sample model: %ld picks compared, %ld identical\n", total, same);
    free(logits), free(u);
    qvl_cuda_model_close(m);
}

/* Sampling end to end: the same seed gives the same text; agreement with the CPU printed only (the
 * logits of the two backends differ slightly). */
TEST(gpu_sample_cli_seed) {
    if (!have_gpu()) return;
    const char *args = "run --model " FIX "/tied --prompt 'Tell me a story.' --max-new-tokens 24 --max-model-len 512 "
                       "--sample --seed 7";
    char *a = NULL, *b = NULL, *cpu = NULL;
    CHECK_INT(test_qvl(&a, NULL, "%s --device cuda", args), 0);
    CHECK_INT(test_qvl(&b, NULL, "%s --device cuda", args), 0);
    CHECK_INT(test_qvl(&cpu, NULL, "%s --device cpu", args), 0);
    if (a && b) CHECK_STR(a, b);
    if (a && cpu) {
        size_t n = 0;
        while (a[n] && a[n] == cpu[n]) n++;
        printf("    sampled text, seed 7: cuda %s CPU (common prefix %zu of %zu bytes)\n",
               strcmp(a, cpu) ? "differs from" : "identical to", n, strlen(cpu));
        if (verbose()) printf("    cuda: %s    cpu:  %s", a, cpu);
    }
    free(a), free(b), free(cpu);
}

/* Kernel time per pick at V = 151936 on an LM-like row (Qwen3-VL's generation_config: t 0.7, top-k
 * 20, top-p 0.8; then top-k off; greedy with a penalty). */
TEST(gpu_sample_speed) {
    if (!have_gpu()) return;
    const int V = 151936, picks = 1000;
    qvl_cuda_picker *g = qvl_cuda_picker_new(V, picks + 1);
    float *row = malloc((size_t)V * sizeof *row);
    double *u = malloc((picks + 1) * sizeof *u);
    CHECK(g && row && u);
    if (!g || !row || !u) goto done;
    for (int i = 0; i < V; i++) row[i] = (float)(2.5 * gauss());
    for (int s = 0; s < 8; s++) row[(int)(rnd() * V)] = (float)(14 + 3 * rnd());
    for (int i = 0; i <= picks; i++) u[i] = rnd();
    const pcase cases[] = {
        sampling("t=0.7 top_k=20 top_p=0.8", 0.7f, 20, 0.8f, 1, 0),
        sampling("t=0.7 top_k=off top_p=0.8", 0.7f, 0, 0.8f, 1, 0),
        sampling("t=0.7 top_k=off top_p=1", 0.7f, 0, 1, 1, 0),
        sampling("greedy + rp 1.05", 0, 0, 1, 1.05f, 0),
    };
    for (int c = 0; c < 4; c++) {
        double us[5] = {0};
        int fast = 0;
        /* 0: the one-block kernel alone; 1: the fast path; 3, 4: its first kernel, both (parts only) */
        for (int path = 0; path <= 4; path++) {
            if (path == 2) continue;
            qvl_cuda_picker_set_path(g, path);
            qvl_cuda_pick_params pp = pick_params(&cases[c].p);
            CHECK_INT(qvl_cuda_picker_reset(g, &pp, NULL, 0, u, picks + 1), 0);
            int n = c == 2 && path == 0 ? 50 : picks;   /* the full walk is the slow path */
            us[path] = qvl_cuda_picker_time_us(g, row, n);
            CHECK(us[path] > 0);
            if (path == 1) fast = qvl_cuda_picker_took_fast(g);
        }
        printf("    pick %-28s V=%d: %.1f us per pick one-block, %.1f us fast path (last pick fast: %d; scan %.1f, "
               "scan + merge %.1f)\n", cases[c].name, V, us[0], us[1], fast, us[3], us[4]);
    }
done:
    qvl_cuda_picker_free(g);
    free(row), free(u);
}
