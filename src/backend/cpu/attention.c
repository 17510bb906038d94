/* Attention, one task per (query row, head): scores, float32 softmax, weighted sum of values.
 * Like the matmul, the loops are written for the compiler's SIMD (run-time AVX-512/AVX2 clones). */
#include <math.h>

#include "backend/cpu/ops.h"

/* Dot product with 8 partial sums in a fixed order. */
static inline float dot8(const float *a, const float *b, int n) {
    float acc[8] = {0};
    int k = 0;
    for (; k + 8 <= n; k += 8)
        for (int l = 0; l < 8; l++) acc[l] += a[k + l] * b[k + l];
    float t = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (; k < n; k++) t += a[k] * b[k];
    return t;
}

enum { QB = 4 }; /* queries per task: each key and value row is read once for QB queries */

typedef struct {
    float *out;
    const float *q, *k, *v;
    int out_stride, q_stride, kv_stride, n_q, n_kv, n_heads, n_kv_heads, hd, causal_pos0;
    float scale;
    float *scratch;
} attn_ctx;

SIMD_CLONES static void attn_task(void *arg, int task, int tid) {
    const attn_ctx *c = arg;
    int blocks = (c->n_q + QB - 1) / QB;
    int i0 = (task % blocks) * QB, h = task / blocks;
    int nq = c->n_q - i0 < QB ? c->n_q - i0 : QB;
    int g = h / (c->n_heads / c->n_kv_heads);
    int len[QB], n_max = 0;
    const float *qi[QB];
    float *s[QB];
    for (int r = 0; r < nq; r++) {
        len[r] = c->causal_pos0 < 0 ? c->n_kv : c->causal_pos0 + i0 + r + 1;
        n_max = len[r] > n_max ? len[r] : n_max;
        qi[r] = c->q + (size_t)(i0 + r) * c->q_stride + (size_t)h * c->hd;
        s[r] = c->scratch + ((size_t)tid * QB + r) * c->n_kv;
    }
    /* Scores of the keys each query may see. */
    for (int j = 0; j < n_max; j++) {
        const float *kj = c->k + (size_t)j * c->kv_stride + (size_t)g * c->hd;
        for (int r = 0; r < nq; r++)
            if (j < len[r]) s[r][j] = dot8(qi[r], kj, c->hd) * c->scale;
    }
    /* Softmax in float32 (sum accumulated in double), probabilities left in s. */
    for (int r = 0; r < nq; r++) {
        float mx = -INFINITY;
        for (int j = 0; j < len[r]; j++) mx = s[r][j] > mx ? s[r][j] : mx;
        double sum = 0;
        for (int j = 0; j < len[r]; j++) {
            s[r][j] = expf(s[r][j] - mx);
            sum += s[r][j];
        }
        float inv = (float)(1.0 / sum);
        for (int j = 0; j < len[r]; j++) s[r][j] *= inv;
        float *o = c->out + (size_t)(i0 + r) * c->out_stride + (size_t)h * c->hd;
        for (int e = 0; e < c->hd; e++) o[e] = 0;
    }
    /* Weighted sum of values. */
    for (int j = 0; j < n_max; j++) {
        const float *vj = c->v + (size_t)j * c->kv_stride + (size_t)g * c->hd;
        for (int r = 0; r < nq; r++) {
            if (j >= len[r]) continue;
            float p = s[r][j], *o = c->out + (size_t)(i0 + r) * c->out_stride + (size_t)h * c->hd;
            for (int e = 0; e < c->hd; e++) o[e] += p * vj[e];
        }
    }
}

void qvl_cpu_attention(qvl_pool *pool, float *out, int out_stride, const float *q, int q_stride, const float *k,
                       const float *v, int kv_stride, int n_q, int n_kv, int n_heads, int n_kv_heads, int hd,
                       int causal_pos0, float *scratch) {
    attn_ctx c = {out, q, k, v, out_stride, q_stride, kv_stride, n_q, n_kv, n_heads, n_kv_heads, hd, causal_pos0,
                  (float)pow(hd, -0.5), scratch};
    qvl_pool_run(pool, attn_task, &c, (n_q + QB - 1) / QB * n_heads);
}

size_t qvl_cpu_attention_scratch(int threads, int n_kv) { return (size_t)threads * QB * n_kv; }
