/* Norms, activations, residual add and rotary embedding: one plain loop each, split over the
 * pool in contiguous ranges (rows or elements; the split never changes a result). LayerNorm
 * accumulates in double (the correctly rounded float32 value the reference approximates); RMSNorm
 * rounds as torch's CPU kernels do, since its output feeds FP8 activation codes (docs/model.md 7.4). */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "backend/cpu/ops.h"

enum { ELEMS_PER_TASK = 16384 };

typedef struct {
    float *y;
    const float *x, *w, *b;
    int dim;
    float eps;
    size_t n, per;
} op_ctx;

/* Runs fn over [0, n) in ranges of `per`, on the pool (or inline without one). */
static void run_ranges(qvl_pool *pool, qvl_task_fn fn, op_ctx *c, size_t n, size_t per) {
    c->n = n;
    c->per = per < 1 ? 1 : per;
    size_t tasks = (n + c->per - 1) / c->per;
    if (!pool) {
        for (size_t t = 0; t < tasks; t++) fn(c, (int)t, 0);
        return;
    }
    qvl_pool_run(pool, fn, c, (int)tasks);
}

static void range_of(const op_ctx *c, int task, size_t *i0, size_t *i1) {
    *i0 = (size_t)task * c->per;
    *i1 = *i0 + c->per < c->n ? *i0 + c->per : c->n;
}

static size_t rows_per_task(int dim) {
    size_t r = ELEMS_PER_TASK / (dim > 0 ? (size_t)dim : 1);
    return r < 1 ? 1 : r;
}

static void layernorm_task(void *arg, int task, int tid) {
    const op_ctx *c = arg;
    size_t r0, r1;
    range_of(c, task, &r0, &r1);
    const int dim = c->dim;
    for (size_t r = r0; r < r1; r++) {
        const float *xr = c->x + r * dim;
        float *yr = c->y + r * dim;
        double mean = 0, var = 0;
        for (int i = 0; i < dim; i++) mean += xr[i];
        mean /= dim;
        for (int i = 0; i < dim; i++) var += (xr[i] - mean) * (xr[i] - mean);
        var /= dim;
        float inv = (float)(1.0 / sqrt(var + c->eps));
        for (int i = 0; i < dim; i++) yr[i] = (float)(xr[i] - mean) * inv * c->w[i] + c->b[i];
    }
}

void qvl_cpu_layernorm(qvl_pool *pool, float *y, const float *x, const float *w, const float *b, int rows, int dim,
                       float eps) {
    op_ctx c = {y, x, w, b, dim, eps, 0, 0};
    run_ranges(pool, layernorm_task, &c, (size_t)rows, rows_per_task(dim));
}

/* ---- torch's CPU float32 sum over a contiguous row (aten/src/ATen/native/cpu/SumKernel.cpp:
 * cascade_sum -> vectorized_inner_sum -> row_sum -> multi_row_sum), operation for operation. The row
 * is read as vectors of TORCH_LANES floats (16: the AVX-512 kernels torch picks on the x86 hosts the
 * references come from; an AVX2-only host uses 8 and can differ in the last ulp); rows shorter than one
 * vector take the same cascade over single floats (scalar_inner_sum). */
enum { TORCH_LANES = 16, TORCH_ILP = 4, TORCH_LEVELS = 4 };

/* multi_row_sum: item (4i + k) of width w goes to accumulator k; every 16 rows the level-0 sums move
 * up a cascade of 4 levels. out[k][l] for k < 4, lane l < w. */
static float ld(const float *x, int64_t i, int square) {
    const float v = x[i];
    return square ? v * v : v; /* rounded to float32 as torch's pow(2) tensor is */
}

static void torch_multi_row_sum(const float *x, int sq, int w, int64_t size, float out[TORCH_ILP][TORCH_LANES]) {
    float acc[TORCH_LEVELS][TORCH_ILP][TORCH_LANES];
    memset(acc, 0, sizeof acc);
    int ceil_log2 = 1;
    while (size > 2 && ((int64_t)1 << ceil_log2) < size) ceil_log2++;
    const int level_power = ceil_log2 / TORCH_LEVELS > 4 ? ceil_log2 / TORCH_LEVELS : 4;
    const int64_t level_step = (int64_t)1 << level_power, level_mask = level_step - 1;
    int64_t i = 0;
    while (i + level_step <= size) {
        for (int64_t j = 0; j < level_step; j++, i++)
            for (int k = 0; k < TORCH_ILP; k++)
                for (int l = 0; l < w; l++) acc[0][k][l] += ld(x, (TORCH_ILP * i + k) * w + l, sq);
        for (int j = 1; j < TORCH_LEVELS; j++) {
            for (int k = 0; k < TORCH_ILP; k++)
                for (int l = 0; l < w; l++) {
                    acc[j][k][l] += acc[j - 1][k][l];
                    acc[j - 1][k][l] = 0.0f;
                }
            if ((i & (level_mask << (j * level_power))) != 0) break;
        }
    }
    for (; i < size; i++)
        for (int k = 0; k < TORCH_ILP; k++)
            for (int l = 0; l < w; l++) acc[0][k][l] += ld(x, (TORCH_ILP * i + k) * w + l, sq);
    for (int j = 1; j < TORCH_LEVELS; j++)
        for (int k = 0; k < TORCH_ILP; k++)
            for (int l = 0; l < w; l++) acc[0][k][l] += acc[j][k][l];
    memcpy(out, acc[0], sizeof acc[0]);
}

/* row_sum over `size` items of width w: the 4 interleaved partial sums, the items left over added
 * to the first, then the four added in order. */
static void torch_row_sum(const float *x, int sq, int w, int64_t size, float out[TORCH_LANES]) {
    float part[TORCH_ILP][TORCH_LANES];
    const int64_t size_ilp = size / TORCH_ILP;
    torch_multi_row_sum(x, sq, w, size_ilp, part);
    for (int64_t i = size_ilp * TORCH_ILP; i < size; i++)
        for (int l = 0; l < w; l++) part[0][l] += ld(x, i * w + l, sq);
    for (int k = 1; k < TORCH_ILP; k++)
        for (int l = 0; l < w; l++) part[0][l] += part[k][l];
    memcpy(out, part[0], (size_t)w * sizeof(float));
}

float qvl_cpu_torch_sum(const float *x, int n, int square) {
    float v[TORCH_LANES];
    if (n < TORCH_LANES) { /* scalar_inner_sum */
        torch_row_sum(x, square, 1, n, v);
        return v[0];
    }
    const int64_t vecs = n / TORCH_LANES; /* vectorized_inner_sum */
    torch_row_sum(x, square, TORCH_LANES, vecs, v);
    float acc = 0.0f;
    for (int64_t k = vecs * TORCH_LANES; k < n; k++) acc += ld(x, k, square);
    for (int l = 0; l < TORCH_LANES; l++) acc += v[l];
    return acc;
}

static void rmsnorm_task(void *arg, int task, int tid) {
    const op_ctx *c = arg;
    size_t r0, r1;
    range_of(c, task, &r0, &r1);
    const int dim = c->dim;
    for (size_t r = r0; r < r1; r++) {
        const float *xr = c->x + r * dim;
        float *yr = c->y + r * dim;
        /* transformers' Qwen3VLTextRMSNorm in float32, each rounding where torch's CPU kernels make
         * it: x.pow(2) as float32, .mean(-1) = torch's float32 row sum / dim, + eps in float32, then
         * rsqrt = 1 / sqrt (two float32 roundings), w * (x * inv). An inverse one ulp away decides
         * e4m3 codes at exact ties once the norm feeds FP8 activations (docs/model.md 7.4). */
        const float var = qvl_cpu_torch_sum(xr, dim, 1) / (float)dim;
        const float inv = 1.0f / sqrtf(var + c->eps);
        for (int i = 0; i < dim; i++) yr[i] = c->w[i] * (xr[i] * inv);
    }
}

void qvl_cpu_rmsnorm(qvl_pool *pool, float *y, const float *x, const float *w, int rows, int dim, float eps) {
    op_ctx c = {y, x, w, NULL, dim, eps, 0, 0};
    run_ranges(pool, rmsnorm_task, &c, (size_t)rows, rows_per_task(dim));
}

static void gelu_tanh_task(void *arg, int task, int tid) {
    const op_ctx *c = arg;
    size_t i0, i1;
    range_of(c, task, &i0, &i1);
    const float k = 0.7978845608028654f; /* sqrt(2/pi) */
    for (size_t i = i0; i < i1; i++) {
        float v = c->y[i];
        c->y[i] = 0.5f * v * (1.0f + tanhf(k * (v + 0.044715f * v * v * v)));
    }
}

void qvl_cpu_gelu_tanh(qvl_pool *pool, float *x, size_t n) {
    op_ctx c = {x, NULL, NULL, NULL, 0, 0, 0, 0};
    run_ranges(pool, gelu_tanh_task, &c, n, ELEMS_PER_TASK);
}

static void gelu_erf_task(void *arg, int task, int tid) {
    const op_ctx *c = arg;
    size_t i0, i1;
    range_of(c, task, &i0, &i1);
    for (size_t i = i0; i < i1; i++) c->y[i] = 0.5f * c->y[i] * (1.0f + erff(c->y[i] * 0.70710678118654752f));
}

void qvl_cpu_gelu_erf(qvl_pool *pool, float *x, size_t n) {
    op_ctx c = {x, NULL, NULL, NULL, 0, 0, 0, 0};
    run_ranges(pool, gelu_erf_task, &c, n, ELEMS_PER_TASK);
}

static void silu_mul_task(void *arg, int task, int tid) {
    const op_ctx *c = arg;
    size_t i0, i1;
    range_of(c, task, &i0, &i1);
    for (size_t i = i0; i < i1; i++) c->y[i] = c->y[i] / (1.0f + expf(-c->y[i])) * c->x[i];
}

void qvl_cpu_silu_mul(qvl_pool *pool, float *gate, const float *up, size_t n) {
    op_ctx c = {gate, up, NULL, NULL, 0, 0, 0, 0};
    run_ranges(pool, silu_mul_task, &c, n, ELEMS_PER_TASK);
}

void qvl_cpu_add(float *x, const float *y, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] += y[i];
}

void qvl_cpu_rope_half(float *x, const float *cos, const float *sin, int hd) {
    int half = hd / 2;
    for (int d = 0; d < half; d++) {
        float a = x[d], b = x[d + half];
        x[d] = a * cos[d] - b * sin[d];
        x[d + half] = b * cos[d + half] + a * sin[d + half];
    }
}
