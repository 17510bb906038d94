/* Norms, activations, residual add and rotary embedding: one plain loop each, split over the
 * pool in contiguous ranges (rows or elements; the split never changes a result). Reductions are
 * accumulated in double so the result is the correctly rounded float32 value the reference
 * approximates. */
#include <math.h>

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

static void rmsnorm_task(void *arg, int task, int tid) {
    const op_ctx *c = arg;
    size_t r0, r1;
    range_of(c, task, &r0, &r1);
    const int dim = c->dim;
    for (size_t r = r0; r < r1; r++) {
        const float *xr = c->x + r * dim;
        float *yr = c->y + r * dim;
        double ss = 0;
        for (int i = 0; i < dim; i++) ss += (double)xr[i] * xr[i];
        float inv = (float)(1.0 / sqrt(ss / dim + c->eps));
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
