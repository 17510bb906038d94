/* Attention, one task per (query row, head): scores, float32 softmax, weighted sum of values. */
#include <math.h>

#include "backend/cpu/ops.h"

typedef struct {
    float *out;
    const float *q, *k, *v;
    int out_stride, q_stride, kv_stride, n_q, n_kv, n_heads, n_kv_heads, hd, causal_pos0;
    float scale;
    float *scratch;
} attn_ctx;

static void attn_task(void *arg, int task, int tid) {
    const attn_ctx *c = arg;
    int i = task / c->n_heads, h = task % c->n_heads;
    int g = h / (c->n_heads / c->n_kv_heads);
    int n = c->causal_pos0 < 0 ? c->n_kv : c->causal_pos0 + i + 1;
    const float *qi = c->q + (size_t)i * c->q_stride + (size_t)h * c->hd;
    float *s = c->scratch + (size_t)tid * c->n_kv;
    float mx = -INFINITY;
    for (int j = 0; j < n; j++) {
        const float *kj = c->k + (size_t)j * c->kv_stride + (size_t)g * c->hd;
        float d = 0;
        for (int e = 0; e < c->hd; e++) d += qi[e] * kj[e];
        s[j] = d * c->scale;
        if (s[j] > mx) mx = s[j];
    }
    double sum = 0;
    for (int j = 0; j < n; j++) {
        s[j] = expf(s[j] - mx);
        sum += s[j];
    }
    float inv = (float)(1.0 / sum);
    float *o = c->out + (size_t)i * c->out_stride + (size_t)h * c->hd;
    for (int e = 0; e < c->hd; e++) o[e] = 0;
    for (int j = 0; j < n; j++) {
        const float *vj = c->v + (size_t)j * c->kv_stride + (size_t)g * c->hd;
        float p = s[j] * inv;
        for (int e = 0; e < c->hd; e++) o[e] += p * vj[e];
    }
}

void qvl_cpu_attention(qvl_pool *pool, float *out, int out_stride, const float *q, int q_stride, const float *k,
                       const float *v, int kv_stride, int n_q, int n_kv, int n_heads, int n_kv_heads, int hd,
                       int causal_pos0, float *scratch) {
    attn_ctx c = {out, q, k, v, out_stride, q_stride, kv_stride, n_q, n_kv, n_heads, n_kv_heads, hd, causal_pos0,
                  (float)pow(hd, -0.5), scratch};
    qvl_pool_run(pool, attn_task, &c, n_q * n_heads);
}
