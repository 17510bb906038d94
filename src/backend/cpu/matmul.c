/* y = x @ w^T + b, threaded over blocks of output columns (rows of w). The inner kernel computes
 * a 4 x 2 tile of outputs with 8-wide partial sums that the compiler turns into SIMD (an AVX2 /
 * AVX-512 clone is chosen at run time on x86-64). The summation order depends only on K, never
 * on M, N or the thread count, so results are the same however the work is split. */
#include "backend/cpu/ops.h"
#include "model/quant.h"

enum { LANES = 8, COLS_PER_TASK = 16 };

typedef struct {
    float *y;
    const float *x, *w, *b;
    int M, K, N;
} matmul_ctx;

/* Sums the 8 lanes in a fixed tree, then the K % 8 tail. */
static inline float finish(const float acc[LANES], const float *x, const float *w, int k0, int K) {
    float t = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (int k = k0; k < K; k++) t += x[k] * w[k];
    return t;
}

/* out[r][c] = dot(x row r, w row c) for r < rows (1..4), c < cols (1..2). */
SIMD_CLONES static void tile(const float *x, int rows, const float *w, int cols, int K, float out[4][2]) {
    float acc[4][2][LANES] = {{{0}}};
    const int K8 = K / LANES * LANES;
    if (rows == 4 && cols == 2) {
        for (int k = 0; k < K8; k += LANES)
            for (int r = 0; r < 4; r++)
                for (int c = 0; c < 2; c++)
                    for (int l = 0; l < LANES; l++) acc[r][c][l] += x[(size_t)r * K + k + l] * w[(size_t)c * K + k + l];
    } else {
        for (int k = 0; k < K8; k += LANES)
            for (int r = 0; r < rows; r++)
                for (int c = 0; c < cols; c++)
                    for (int l = 0; l < LANES; l++) acc[r][c][l] += x[(size_t)r * K + k + l] * w[(size_t)c * K + k + l];
    }
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++) out[r][c] = finish(acc[r][c], x + (size_t)r * K, w + (size_t)c * K, K8, K);
}

static void matmul_task(void *arg, int task, int tid) {
    (void)tid;
    const matmul_ctx *c = arg;
    int n0 = task * COLS_PER_TASK, n1 = n0 + COLS_PER_TASK < c->N ? n0 + COLS_PER_TASK : c->N;
    for (int m = 0; m < c->M; m += 4) {
        int rows = c->M - m < 4 ? c->M - m : 4;
        for (int n = n0; n < n1; n += 2) {
            int cols = n1 - n < 2 ? n1 - n : 2;
            float o[4][2];
            tile(c->x + (size_t)m * c->K, rows, c->w + (size_t)n * c->K, cols, c->K, o);
            for (int r = 0; r < rows; r++)
                for (int j = 0; j < cols; j++)
                    c->y[(size_t)(m + r) * c->N + n + j] = o[r][j] + (c->b ? c->b[n + j] : 0.0f);
        }
    }
}

void qvl_cpu_matmul(qvl_pool *pool, float *y, const float *x, const float *w, const float *b, int M, int K,
                    int N) {
    /* A packed int4 / fp8 Linear (matmul_q.c) carries a 16-byte magic; a float weight of fewer than
     * 4 values cannot be one (and must not be read past its end). */
    const qvl_qweight *qw = (size_t)K * (size_t)N >= 4 ? qvl_qweight_of(w) : NULL;
    if (qw) {
        qvl_cpu_matmul_q(pool, y, x, qw, b, M, K, N);
        return;
    }
    matmul_ctx c = {y, x, w, b, M, K, N};
    qvl_pool_run(pool, matmul_task, &c, (N + COLS_PER_TASK - 1) / COLS_PER_TASK);
}
