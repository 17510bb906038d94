/* y = x @ w^T + b, threaded over blocks of output columns (rows of w). Each w row is read once
 * per block of four x rows, with eight partial sums per dot product. */
#include "backend/cpu/ops.h"

enum { COLS_PER_TASK = 16 };

typedef struct {
    float *y;
    const float *x, *w, *b;
    int M, K, N;
} matmul_ctx;

static float dot(const float *a, const float *b, int K) {
    float s[8] = {0};
    int k = 0;
    for (; k + 8 <= K; k += 8)
        for (int j = 0; j < 8; j++) s[j] += a[k + j] * b[k + j];
    float t = ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
    for (; k < K; k++) t += a[k] * b[k];
    return t;
}

/* Four rows of x against one row of w. */
static void dot4(const float *x, int K, const float *w, float out[4]) {
    float s[4][4] = {{0}};
    int k = 0;
    for (; k + 4 <= K; k += 4)
        for (int r = 0; r < 4; r++)
            for (int j = 0; j < 4; j++) s[r][j] += x[(size_t)r * K + k + j] * w[k + j];
    for (int r = 0; r < 4; r++) {
        float t = (s[r][0] + s[r][1]) + (s[r][2] + s[r][3]);
        for (int kk = k; kk < K; kk++) t += x[(size_t)r * K + kk] * w[kk];
        out[r] = t;
    }
}

static void matmul_task(void *arg, int task, int tid) {
    (void)tid;
    const matmul_ctx *c = arg;
    int n0 = task * COLS_PER_TASK, n1 = n0 + COLS_PER_TASK < c->N ? n0 + COLS_PER_TASK : c->N;
    for (int n = n0; n < n1; n++) {
        const float *wr = c->w + (size_t)n * c->K;
        float bias = c->b ? c->b[n] : 0.0f;
        int m = 0;
        for (; m + 4 <= c->M; m += 4) {
            float o[4];
            dot4(c->x + (size_t)m * c->K, c->K, wr, o);
            for (int r = 0; r < 4; r++) c->y[(size_t)(m + r) * c->N + n] = o[r] + bias;
        }
        for (; m < c->M; m++) c->y[(size_t)m * c->N + n] = dot(c->x + (size_t)m * c->K, wr, c->K) + bias;
    }
}

void qvl_cpu_matmul(qvl_pool *pool, float *y, const float *x, const float *w, const float *b, int M, int K,
                    int N) {
    matmul_ctx c = {y, x, w, b, M, K, N};
    qvl_pool_run(pool, matmul_task, &c, (N + COLS_PER_TASK - 1) / COLS_PER_TASK);
}
