/* Attention, one task per (segment, block of query rows, head): scores, float32 softmax, weighted
 * sum of values. A segment is one sequence's queries (a prefill chunk or a decode row) or one
 * image frame; its keys are contiguous rows or, for the paged KV cache, rows found through a block
 * table. Each query's arithmetic depends only on its own row and its keys, never on the other
 * segments or on how queries are grouped into tasks. Like the matmul, the loops are written for
 * the compiler's SIMD (run-time AVX-512/AVX2 clones). */
#include <math.h>

#include "backend/cpu/ops.h"

#include "backend/cpu/kv_fp8.h"

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
    const float *q;
    int out_stride, q_stride, kv_stride, n_heads, n_kv_heads, hd, scratch_stride;
    const qvl_attn_seg *segs;
    int n_segs;
    const qvl_attn_paged *paged;
    float scale;
    float *scratch;
    const float *fp8_table;   /* e4m3 code -> float (paged->fp8) */
} attn_ctx;

/* Key (v = 0) or value (v = 1) row j of head group g in segment sg. An FP8 cache's row is upcast
 * into buf (hd floats) and buf returned; the float32 cache's row is returned where it lies. */
static inline const float *kv_row(const attn_ctx *c, const qvl_attn_seg *sg, int v, int j, int g, float *buf) {
    if (sg->table) {
        const qvl_attn_paged *p = c->paged;
        size_t at = (v ? p->v_off : p->k_off) + (size_t)(j % p->block_tokens) * c->kv_stride + (size_t)g * c->hd;
        const void *block = p->blocks[sg->table[j / p->block_tokens]];
        if (p->fp8) {
            const uint8_t *e = (const uint8_t *)block + at;
            for (int d = 0; d < c->hd; d++) buf[d] = c->fp8_table[e[d]];
            return buf;
        }
        return (const float *)block + at;
    }
    return (v ? sg->v : sg->k) + (size_t)j * c->kv_stride + (size_t)g * c->hd;
}

static int seg_blocks(const qvl_attn_seg *sg) { return (sg->n_q + QB - 1) / QB; }

SIMD_CLONES static void attn_task(void *arg, int task, int tid) {
    const attn_ctx *c = arg;
    /* The segment of this task: the last one starting at or before it (binary search). */
    int lo = 0, hi = c->n_segs - 1;
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (c->segs[mid].task0 <= task) lo = mid;
        else hi = mid - 1;
    }
    int si = lo;
    const qvl_attn_seg *sg = &c->segs[si];
    int local = task - sg->task0, blocks = seg_blocks(sg);
    int i0 = (local % blocks) * QB, h = local / blocks;
    int nq = sg->n_q - i0 < QB ? sg->n_q - i0 : QB;
    int g = h / (c->n_heads / c->n_kv_heads);
    int len[QB], n_max = 0;
    float row_buf[QVL_ATTN_FP8_MAX_HD];   /* an FP8 cache row upcast */
    const float *qi[QB];
    float *s[QB];
    for (int r = 0; r < nq; r++) {
        len[r] = sg->causal_pos0 < 0 ? sg->n_kv : sg->causal_pos0 + i0 + r + 1;
        n_max = len[r] > n_max ? len[r] : n_max;
        qi[r] = c->q + (size_t)(sg->row0 + i0 + r) * c->q_stride + (size_t)h * c->hd;
        s[r] = c->scratch + ((size_t)tid * QB + r) * c->scratch_stride;
    }
    /* Scores of the keys each query may see. */
    for (int j = 0; j < n_max; j++) {
        const float *kj = kv_row(c, sg, 0, j, g, row_buf);
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
        float *o = c->out + (size_t)(sg->row0 + i0 + r) * c->out_stride + (size_t)h * c->hd;
        for (int e = 0; e < c->hd; e++) o[e] = 0;
    }
    /* Weighted sum of values. */
    for (int j = 0; j < n_max; j++) {
        const float *vj = kv_row(c, sg, 1, j, g, row_buf);
        for (int r = 0; r < nq; r++) {
            if (j >= len[r]) continue;
            float p = s[r][j], *o = c->out + (size_t)(sg->row0 + i0 + r) * c->out_stride + (size_t)h * c->hd;
            for (int e = 0; e < c->hd; e++) o[e] += p * vj[e];
        }
    }
}

void qvl_cpu_attention_segs(qvl_pool *pool, float *out, int out_stride, const float *q, int q_stride,
                            int kv_stride, qvl_attn_seg *segs, int n_segs, const qvl_attn_paged *paged, int n_heads,
                            int n_kv_heads, int hd, float *scratch, int scratch_kv) {
    int tasks = 0;
    for (int i = 0; i < n_segs; i++) {
        segs[i].task0 = tasks;
        tasks += seg_blocks(&segs[i]) * n_heads;
    }
    attn_ctx c = {out, q, out_stride, q_stride, kv_stride, n_heads, n_kv_heads, hd, scratch_kv, segs, n_segs, paged,
                  (float)pow(hd, -0.5), scratch, paged && paged->fp8 ? qvl_kv_fp8_table() : NULL};
    if (tasks) qvl_pool_run(pool, attn_task, &c, tasks);
}

void qvl_cpu_attention(qvl_pool *pool, float *out, int out_stride, const float *q, int q_stride, const float *k,
                       const float *v, int kv_stride, int n_q, int n_kv, int n_heads, int n_kv_heads, int hd,
                       int causal_pos0, float *scratch) {
    qvl_attn_seg sg = {.row0 = 0, .n_q = n_q, .n_kv = n_kv, .causal_pos0 = causal_pos0, .k = k, .v = v};
    qvl_cpu_attention_segs(pool, out, out_stride, q, q_stride, kv_stride, &sg, 1, NULL, n_heads, n_kv_heads, hd,
                           scratch, n_kv);
}

size_t qvl_cpu_attention_scratch(int threads, int n_kv) { return (size_t)threads * QB * n_kv; }
