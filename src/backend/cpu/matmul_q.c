/* y = x @ w^T + b over a packed quantized Linear (model/quant.h). The weights stay packed: each task
 * dequantizes its 16 rows of w (bit for bit the reference dequantization) into per-thread scratch and
 * multiplies them in float32 with the same 8-lane sums as matmul.c, so an 8B int4 model needs its
 * packed bytes plus 16 x K floats per thread, not 32 GiB of float32. FP8 with dynamic activations
 * first quantizes each input row per group of 128 (transformers' act_quant), then multiplies the
 * fake-quantized rows with the dequantized weights. */
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/ops.h"
#include "model/quant.h"
#include "util/error.h"

enum { LANES = 8, ROWS_PER_TASK = 16 };

typedef struct {
    float *y;
    const float *x, *b;
    const qvl_qweight *w;
    float *scratch; /* [threads][ROWS_PER_TASK * K] */
    int M, K, N;
} qctx;

SIMD_CLONES static float dot(const float *x, const float *w, int K) {
    float acc[LANES] = {0};
    const int K8 = K / LANES * LANES;
    for (int k = 0; k < K8; k += LANES)
        for (int l = 0; l < LANES; l++) acc[l] += x[k + l] * w[k + l];
    float t = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (int k = K8; k < K; k++) t += x[k] * w[k];
    return t;
}

static void task(void *arg, int i, int tid) {
    const qctx *c = arg;
    int n0 = i * ROWS_PER_TASK, n1 = n0 + ROWS_PER_TASK < c->N ? n0 + ROWS_PER_TASK : c->N;
    float *wt = c->scratch + (size_t)tid * ROWS_PER_TASK * c->K;
    qvl_qweight_dequant_rows(c->w, n0, n1, wt);
    for (int m = 0; m < c->M; m++)
        for (int n = n0; n < n1; n++)
            c->y[(size_t)m * c->N + n] =
                dot(c->x + (size_t)m * c->K, wt + (size_t)(n - n0) * c->K, c->K) + (c->b ? c->b[n] : 0.0f);
}

void qvl_cpu_matmul_q(qvl_pool *pool, float *y, const float *x, const qvl_qweight *w, const float *b, int M, int K,
                      int N) {
    const int threads = pool ? qvl_pool_threads(pool) : 1;
    float *xq = NULL;
    if (w->kind == QVL_QW_FP8 && w->act_quant) {
        xq = malloc((size_t)M * K * sizeof(float));
        if (xq) {
            memcpy(xq, x, (size_t)M * K * sizeof(float));
            for (int m = 0; m < M; m++) qvl_fp8_act_quant_row(xq + (size_t)m * K, K, w->group);
            x = xq;
        }
    }
    float *scratch = malloc((size_t)threads * ROWS_PER_TASK * K * sizeof(float));
    if (!scratch || (w->kind == QVL_QW_FP8 && w->act_quant && !xq)) {
        /* The forward pass has no error path here: fill with NaN so that the result cannot look right. */
        qvl_errorf("%s: out of memory for the dequantization scratch", w->name);
        for (size_t i = 0; i < (size_t)M * N; i++) y[i] = __builtin_nanf("");
        free(scratch);
        free(xq);
        return;
    }
    qctx c = {y, x, b, w, scratch, M, K, N};
    qvl_pool_run(pool, task, &c, (N + ROWS_PER_TASK - 1) / ROWS_PER_TASK);
    free(scratch);
    free(xq);
}
