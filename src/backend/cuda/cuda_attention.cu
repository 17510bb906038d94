/* Flash-style attention: a block takes 32 query rows (GQA: the query heads of one KV head are
 * consecutive rows, so a KV tile is read once for all of them) and walks the keys in tiles of 32
 * with an online F32 softmax; memory does not grow with n_q x n_kv. Decoding (few rows) splits the
 * keys over several blocks and merges their partial results (flash-decoding). 256 threads: thread
 * t owns row t/8 and, within it, keys t%8 + 8k of a tile and output dims t%8 + 8k. */
#include <math.h>

#include "backend/cuda/cuda_ops.h"

enum { BQ = QVL_ATT_BQ, BK = QVL_ATT_BK, MAX_HD = 128, NE = MAX_HD / 8 };

size_t qvl_attention_partial_floats(int n_kv_heads, int hd) {
    return (size_t)n_kv_heads * QVL_ATT_MAX_SPLITS * BQ * (hd + 2);
}

static __global__ void __launch_bounds__(256) k_attention(bf16 *out, int out_stride, const bf16 *q, int q_stride,
                                                          const bf16 *k, const bf16 *v, int kv_stride, int n_q,
                                                          int n_kv, int group, int hd, int causal_pos0, float scale,
                                                          int splits, float *partial) {
    __shared__ float Qs[BQ][MAX_HD + 1];
    __shared__ bf16 Ks[BK][MAX_HD + 2];
    __shared__ bf16 Vs[BK][MAX_HD + 2];
    __shared__ float Ps[BQ][BK + 1];
    const int t = threadIdx.x, lr = t >> 3, sub = t & 7;
    const int g = blockIdx.y, split = blockIdx.z;
    const int rows = n_q * group, r0 = blockIdx.x * BQ;
    const int r = r0 + lr, i = r / group, h = g * group + r % group;
    const int valid = r < rows;

    for (int idx = t; idx < BQ * hd; idx += blockDim.x) {
        int rr = idx / hd, e = idx % hd, R = r0 + rr;
        float val = 0;
        if (R < rows) val = __bfloat162float(q[(size_t)(R / group) * q_stride + (size_t)(g * group + R % group) * hd + e]);
        Qs[rr][e] = val;
    }
    /* Keys this block needs: up to the causal limit of its last row, then this split's share. */
    int last_row = min(rows, r0 + BQ) - 1;
    int k_need = causal_pos0 < 0 ? n_kv : min(n_kv, causal_pos0 + last_row / group + 1);
    int n_tiles = (k_need + BK - 1) / BK, per = (n_tiles + splits - 1) / splits;
    int tile0 = split * per, tile1 = min(n_tiles, tile0 + per);
    int limit = causal_pos0 < 0 ? n_kv : min(n_kv, causal_pos0 + i + 1);

    float o[NE];
    for (int e = 0; e < NE; e++) o[e] = 0;
    float m = -INFINITY, l = 0;
    for (int tile = tile0; tile < tile1; tile++) {
        int kb = tile * BK;
        __syncthreads();
        for (int idx = t; idx < BK * hd; idx += blockDim.x) {
            int j = idx / hd, e = idx % hd;
            bf16 zero = __float2bfloat16(0.0f);
            Ks[j][e] = kb + j < n_kv ? k[(size_t)(kb + j) * kv_stride + (size_t)g * hd + e] : zero;
            Vs[j][e] = kb + j < n_kv ? v[(size_t)(kb + j) * kv_stride + (size_t)g * hd + e] : zero;
        }
        __syncthreads();
        float s[BK / 8], mt = -INFINITY;
        for (int kk = 0; kk < BK / 8; kk++) {
            int j = sub + 8 * kk;
            float d = 0;
            for (int e = 0; e < hd; e++) d += Qs[lr][e] * __bfloat162float(Ks[j][e]);
            s[kk] = valid && kb + j < limit ? d * scale : -INFINITY;
            mt = fmaxf(mt, s[kk]);
        }
        for (int off = 1; off < 8; off <<= 1) mt = fmaxf(mt, __shfl_xor_sync(0xffffffffu, mt, off));
        float mn = fmaxf(m, mt);
        float corr = mn == -INFINITY ? 1.0f : expf(m - mn), ps = 0;
        for (int kk = 0; kk < BK / 8; kk++) {
            float p = mn == -INFINITY ? 0.0f : expf(s[kk] - mn);
            Ps[lr][sub + 8 * kk] = p;
            ps += p;
        }
        for (int off = 1; off < 8; off <<= 1) ps += __shfl_xor_sync(0xffffffffu, ps, off);
        l = l * corr + ps;
        m = mn;
        __syncwarp();
        for (int c = 0; c < NE; c++) {
            int e = sub + 8 * c;
            if (e >= hd) break;
            float acc = o[c] * corr;
            for (int j = 0; j < BK; j++) acc += Ps[lr][j] * __bfloat162float(Vs[j][e]);
            o[c] = acc;
        }
    }
    if (!valid) return;
    if (splits == 1) {
        bf16 *dst = out + (size_t)i * out_stride + (size_t)h * hd;
        float inv = l > 0 ? 1.0f / l : 0.0f;
        for (int c = 0; c < NE; c++) {
            int e = sub + 8 * c;
            if (e >= hd) break;
            dst[e] = __float2bfloat16(o[c] * inv);
        }
    } else {
        float *pp = partial + ((size_t)(g * splits + split) * BQ + lr) * (hd + 2);
        for (int c = 0; c < NE; c++) {
            int e = sub + 8 * c;
            if (e >= hd) break;
            pp[e] = o[c];
        }
        if (sub == 0) {
            pp[hd] = m;
            pp[hd + 1] = l;
        }
    }
}

/* One block per (row, KV head): merges the splits' (o, m, l). */
static __global__ void k_attention_combine(bf16 *out, int out_stride, const float *partial, int rows, int group,
                                           int hd, int splits) {
    int lr = blockIdx.x, g = blockIdx.y;
    if (lr >= rows) return;
    int i = lr / group, h = g * group + lr % group;
    float M = -INFINITY;
    for (int s = 0; s < splits; s++) M = fmaxf(M, partial[((size_t)(g * splits + s) * BQ + lr) * (hd + 2) + hd]);
    for (int e = threadIdx.x; e < hd; e += blockDim.x) {
        float num = 0, den = 0;
        for (int s = 0; s < splits; s++) {
            const float *pp = partial + ((size_t)(g * splits + s) * BQ + lr) * (hd + 2);
            if (pp[hd] == -INFINITY) continue;
            float w = expf(pp[hd] - M);
            num += pp[e] * w;
            den += pp[hd + 1] * w;
        }
        out[(size_t)i * out_stride + (size_t)h * hd + e] = __float2bfloat16(den > 0 ? num / den : 0.0f);
    }
}

void qvl_attention(cudaStream_t st, bf16 *out, int out_stride, const bf16 *q, int q_stride, const bf16 *k,
                   const bf16 *v, int kv_stride, int n_q, int n_kv, int Hq, int Hkv, int hd, int causal_pos0,
                   float *partial) {
    if (n_q <= 0) return;
    int group = Hq / Hkv, rows = n_q * group, row_blocks = (rows + BQ - 1) / BQ;
    float scale = 1.0f / sqrtf((float)hd);
    int splits = 1;
    if (row_blocks == 1 && partial) {
        int k_need = causal_pos0 < 0 ? n_kv : (causal_pos0 + n_q < n_kv ? causal_pos0 + n_q : n_kv);
        int n_tiles = (k_need + BK - 1) / BK, target = (2 * 132 + Hkv - 1) / Hkv;
        splits = n_tiles / 2 < target ? n_tiles / 2 : target;
        if (splits > QVL_ATT_MAX_SPLITS) splits = QVL_ATT_MAX_SPLITS;
        if (splits < 1) splits = 1;
    }
    dim3 grid(row_blocks, Hkv, splits);
    k_attention<<<grid, 256, 0, st>>>(out, out_stride, q, q_stride, k, v, kv_stride, n_q, n_kv, group, hd, causal_pos0,
                                      scale, splits, partial);
    if (splits > 1) k_attention_combine<<<dim3(rows, Hkv), 128, 0, st>>>(out, out_stride, partial, rows, group, hd, splits);
}
