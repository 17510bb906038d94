/* Paged KV for the batched backend (cuda_ops.h): decode attention of many single rows, each over
 * its own sequence's blocks of the KV pool, and the gathers that feed the prefill path's flash
 * attention. The decode kernel is cuda_attention.cu's k_attention_dec per batch row: one block per
 * (row, KV head, split of the keys), the group's query heads held in registers so each K/V row is
 * read once for all of them, 4 warps x 4 keys in flight, online softmax in F32 (log2 units).
 * The pool holds BF16 elements, or e4m3 bytes with --kv-dtype fp8 (cuda_kv_fp8.cuh): the kernels are
 * instantiated per element type (no branch in the loops), and FP8 elements are upcast to F32 as they
 * are loaded (decode) or to BF16 (exact) as they are gathered for the prefill path's flash attention. */
#include <math.h>
#include <stdint.h>

#include "backend/cuda/cuda_kv_fp8.cuh"
#include "backend/cuda/cuda_ops.h"

enum { PW = 4, PUNROLL = 4, PMAX_GROUP = 8 };

template <int E>
static __device__ __forceinline__ void load_e(float *dst, const bf16 *src) {
    if constexpr (E == 4) {
        uint2 u = *(const uint2 *)src;
        float2 a = __bfloat1622float2(*(const __nv_bfloat162 *)&u.x), b = __bfloat1622float2(*(const __nv_bfloat162 *)&u.y);
        dst[0] = a.x, dst[1] = a.y, dst[2] = b.x, dst[3] = b.y;
    } else if constexpr (E == 2) {
        float2 a = __bfloat1622float2(*(const __nv_bfloat162 *)src);
        dst[0] = a.x, dst[1] = a.y;
    } else {
        dst[0] = __bfloat162float(src[0]);
    }
}

template <int E>
static __device__ __forceinline__ void load_e(float *dst, const uint8_t *src) {
    if constexpr (E == 4) {
        const uint32_t u = *(const uint32_t *)src;
        const float2 a = qvl_kv_fp8x2_dec((uint16_t)(u & 0xffffu)), b = qvl_kv_fp8x2_dec((uint16_t)(u >> 16));
        dst[0] = a.x, dst[1] = a.y, dst[2] = b.x, dst[3] = b.y;
    } else if constexpr (E == 2) {
        const float2 a = qvl_kv_fp8x2_dec(*(const uint16_t *)src);
        dst[0] = a.x, dst[1] = a.y;
    } else {
        dst[0] = qvl_kv_fp8_dec(src[0]);
    }
}

/* partial layout: [row i][kv head g][split][query head of the group][HD + 2] (o, then max in
 * natural-log units, then the sum). */
template <int E, typename KT>
static __global__ void __launch_bounds__(PW * 32)
    k_paged_dec(const bf16 *q, int q_stride, const KT *k, const KT *v, int kv_stride, const int32_t *rows,
                const int32_t *seq, const int32_t *kv_len, const int32_t *tables, int bps, int block, int group,
                float scale_log2, int splits, float *partial, bf16 *out, int out_stride) {
    enum { HD = 32 * E };
    __shared__ float sm_ml[PW][PMAX_GROUP][2];
    __shared__ float sm_o[PW][PMAX_GROUP][HD];
    const int ri = blockIdx.x, g = blockIdx.y, split = blockIdx.z, w = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int r = rows[ri], n_kv = kv_len[r];
    const int32_t *table = tables + (size_t)seq[r] * bps;
    const int per = (n_kv + splits - 1) / splits, k0 = split * per, k1 = min(n_kv, k0 + per);
    float qv[PMAX_GROUP][E], o[PMAX_GROUP][E], m[PMAX_GROUP], l[PMAX_GROUP];
#pragma unroll
    for (int hh = 0; hh < PMAX_GROUP; hh++) {
        m[hh] = -INFINITY, l[hh] = 0.0f;
#pragma unroll
        for (int e = 0; e < E; e++) o[hh][e] = qv[hh][e] = 0.0f;
        if (hh < group) load_e<E>(qv[hh], q + (size_t)r * q_stride + (size_t)(g * group + hh) * HD + lane * E);
    }
    const size_t col = (size_t)g * HD + lane * E;
    for (int base = k0 + w * PUNROLL; base < k1; base += PW * PUNROLL) {
        float kr[PUNROLL][E], vr[PUNROLL][E];
#pragma unroll
        for (int u = 0; u < PUNROLL; u++)
            if (base + u < k1) {
                const int j = base + u;
                const size_t row = (size_t)table[j / block] * block + j % block;
                load_e<E>(kr[u], k + row * kv_stride + col);
                load_e<E>(vr[u], v + row * kv_stride + col);
            }
#pragma unroll
        for (int u = 0; u < PUNROLL; u++) {
            if (base + u >= k1) break;
#pragma unroll
            for (int hh = 0; hh < PMAX_GROUP; hh++) {
                if (hh >= group) break;
                float d = 0.0f;
#pragma unroll
                for (int e = 0; e < E; e++) d += qv[hh][e] * kr[u][e];
                for (int off = 16; off; off >>= 1) d += __shfl_xor_sync(0xffffffffu, d, off);
                const float sc = d * scale_log2, mn = fmaxf(m[hh], sc);
                const float c = exp2f(m[hh] - mn), p = exp2f(sc - mn);
                l[hh] = l[hh] * c + p;
#pragma unroll
                for (int e = 0; e < E; e++) o[hh][e] = o[hh][e] * c + p * vr[u][e];
                m[hh] = mn;
            }
        }
    }
#pragma unroll
    for (int hh = 0; hh < PMAX_GROUP; hh++) {
        if (hh >= group) break;
        if (lane == 0) sm_ml[w][hh][0] = m[hh], sm_ml[w][hh][1] = l[hh];
#pragma unroll
        for (int e = 0; e < E; e++) sm_o[w][hh][lane * E + e] = o[hh][e];
    }
    __syncthreads();
    for (int idx = threadIdx.x; idx < group * HD; idx += PW * 32) {
        const int hh = idx / HD, d = idx % HD;
        float M = -INFINITY;
        for (int ww = 0; ww < PW; ww++) M = fmaxf(M, sm_ml[ww][hh][0]);
        float num = 0.0f, den = 0.0f;
        if (M != -INFINITY)
            for (int ww = 0; ww < PW; ww++) {
                if (sm_ml[ww][hh][0] == -INFINITY) continue;
                const float f = exp2f(sm_ml[ww][hh][0] - M);
                num += sm_o[ww][hh][d] * f;
                den += sm_ml[ww][hh][1] * f;
            }
        if (splits == 1) {
            out[(size_t)r * out_stride + (size_t)(g * group + hh) * HD + d] = __float2bfloat16(den > 0 ? num / den : 0.0f);
        } else {
            float *pp = partial + ((((size_t)ri * gridDim.y + g) * splits + split) * group + hh) * (HD + 2);
            pp[d] = num;
            if (d == 0) pp[HD] = M == -INFINITY ? -INFINITY : M * 0.6931471805599453f, pp[HD + 1] = den;
        }
    }
}

/* One block per (row, KV head): merges the splits' (o, m, l) of the group's query heads. */
static __global__ void k_paged_combine(bf16 *out, int out_stride, const float *partial, const int32_t *rows, int group,
                                       int hd, int splits) {
    const int ri = blockIdx.x, g = blockIdx.y, r = rows[ri];
    for (int idx = threadIdx.x; idx < group * hd; idx += blockDim.x) {
        const int hh = idx / hd, e = idx % hd;
        const float *base = partial + (((size_t)ri * gridDim.y + g) * splits * group + hh) * (hd + 2);
        const size_t step = (size_t)group * (hd + 2);
        float M = -INFINITY;
        for (int s = 0; s < splits; s++) M = fmaxf(M, base[s * step + hd]);
        float num = 0, den = 0;
        for (int s = 0; s < splits; s++) {
            const float *pp = base + s * step;
            if (pp[hd] == -INFINITY) continue;
            const float wgt = expf(pp[hd] - M);
            num += pp[e] * wgt;
            den += pp[hd + 1] * wgt;
        }
        out[(size_t)r * out_stride + (size_t)(g * group + hh) * hd + e] = __float2bfloat16(den > 0 ? num / den : 0.0f);
    }
}

int qvl_attention_paged_ok(int Hq, int Hkv, int hd) {
    return Hkv > 0 && Hq % Hkv == 0 && Hq / Hkv <= PMAX_GROUP && (hd == 32 || hd == 64 || hd == 128);
}

template <typename KT>
static void paged(cudaStream_t st, bf16 *out, int out_stride, const bf16 *q, int q_stride, const KT *k_pool,
                  const KT *v_pool, int kv_stride, const int32_t *rows, int n_rows, const int32_t *seq,
                  const int32_t *kv_len, const int32_t *tables, int blocks_per_seq, int block, int Hq, int Hkv, int hd,
                  int splits, float *partial) {
    if (n_rows <= 0) return;
    const int group = Hq / Hkv;
    const float scale_log2 = 1.0f / sqrtf((float)hd) * 1.4426950408889634f;
    if (splits < 1 || !partial) splits = 1;
    dim3 grid(n_rows, Hkv, splits);
#define PD(E)                                                                                                        \
    k_paged_dec<E, KT><<<grid, PW * 32, 0, st>>>(q, q_stride, k_pool, v_pool, kv_stride, rows, seq, kv_len, tables,   \
                                                 blocks_per_seq, block, group, scale_log2, splits, partial, out,       \
                                                 out_stride)
    if (hd == 128)
        PD(4);
    else if (hd == 64)
        PD(2);
    else
        PD(1);
#undef PD
    if (splits > 1) k_paged_combine<<<dim3(n_rows, Hkv), 128, 0, st>>>(out, out_stride, partial, rows, group, hd, splits);
}
void qvl_attention_paged(cudaStream_t st, bf16 *out, int out_stride, const bf16 *q, int q_stride, const bf16 *k_pool,
                         const bf16 *v_pool, int kv_stride, const int32_t *rows, int n_rows, const int32_t *seq,
                         const int32_t *kv_len, const int32_t *tables, int blocks_per_seq, int block, int Hq, int Hkv,
                         int hd, int splits, float *partial) {
    paged(st, out, out_stride, q, q_stride, k_pool, v_pool, kv_stride, rows, n_rows, seq, kv_len, tables, blocks_per_seq,
          block, Hq, Hkv, hd, splits, partial);
}
void qvl_attention_paged_fp8(cudaStream_t st, bf16 *out, int out_stride, const bf16 *q, int q_stride,
                             const uint8_t *k_pool, const uint8_t *v_pool, int kv_stride, const int32_t *rows, int n_rows,
                             const int32_t *seq, const int32_t *kv_len, const int32_t *tables, int blocks_per_seq,
                             int block, int Hq, int Hkv, int hd, int splits, float *partial) {
    paged(st, out, out_stride, q, q_stride, k_pool, v_pool, kv_stride, rows, n_rows, seq, kv_len, tables, blocks_per_seq,
          block, Hq, Hkv, hd, splits, partial);
}

/* One block per row; 16-byte copies where the row is aligned. */
static __global__ void k_kv_gather(bf16 *kd, bf16 *vd, const bf16 *kp, const bf16 *vp, int kv, const int32_t *table,
                                   int block) {
    const int j = blockIdx.x;
    const size_t src = ((size_t)table[j / block] * block + j % block) * kv, dst = (size_t)j * kv;
    if (kv % 8 == 0) {
        const int n4 = kv / 8;
        for (int e = threadIdx.x; e < n4; e += blockDim.x) {
            ((uint4 *)(kd + dst))[e] = ((const uint4 *)(kp + src))[e];
            ((uint4 *)(vd + dst))[e] = ((const uint4 *)(vp + src))[e];
        }
    } else {
        for (int e = threadIdx.x; e < kv; e += blockDim.x) kd[dst + e] = kp[src + e], vd[dst + e] = vp[src + e];
    }
}
void qvl_k_kv_gather(cudaStream_t st, bf16 *k_dst, bf16 *v_dst, const bf16 *k_pool, const bf16 *v_pool, int kv,
                     const int32_t *table, int block, int n) {
    if (n > 0) k_kv_gather<<<n, 128, 0, st>>>(k_dst, v_dst, k_pool, v_pool, kv, table, block);
}

/* The FP8 pool's rows upcast to BF16 (exact: e4m3 values are BF16 values); 8 elements per step
 * where rows allow (8-byte loads, 16-byte stores). */
static __global__ void k_kv_gather_fp8(bf16 *kd, bf16 *vd, const uint8_t *kp, const uint8_t *vp, int kv,
                                       const int32_t *table, int block) {
    const int j = blockIdx.x;
    const size_t src = ((size_t)table[j / block] * block + j % block) * kv, dst = (size_t)j * kv;
    if (kv % 8 == 0) {
        const int n8 = kv / 8;
        for (int e = threadIdx.x; e < n8; e += blockDim.x)
            for (int t = 0; t < 2; t++) {
                const uint2 u = ((const uint2 *)((t ? vp : kp) + src))[e];
                const uint32_t w[2] = {u.x, u.y};
                uint4 o;
                __nv_bfloat162 *ob = (__nv_bfloat162 *)&o;
#pragma unroll
                for (int h = 0; h < 4; h++)
                    ob[h] = __float22bfloat162_rn(qvl_kv_fp8x2_dec((uint16_t)(w[h / 2] >> (16 * (h % 2)))));
                ((uint4 *)((t ? vd : kd) + dst))[e] = o;
            }
    } else {
        for (int e = threadIdx.x; e < kv; e += blockDim.x)
            kd[dst + e] = __float2bfloat16(qvl_kv_fp8_dec(kp[src + e])),
            vd[dst + e] = __float2bfloat16(qvl_kv_fp8_dec(vp[src + e]));
    }
}
void qvl_k_kv_gather_fp8(cudaStream_t st, bf16 *k_dst, bf16 *v_dst, const uint8_t *k_pool, const uint8_t *v_pool, int kv,
                         const int32_t *table, int block, int n) {
    if (n > 0) k_kv_gather_fp8<<<n, 128, 0, st>>>(k_dst, v_dst, k_pool, v_pool, kv, table, block);
}

static __global__ void k_kv_fp8_encode(uint8_t *dst, const float *src, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        dst[i] = qvl_kv_fp8_enc(src[i]);
}
static __global__ void k_kv_fp8_decode(float *dst, const uint8_t *src, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        dst[i] = qvl_kv_fp8_dec(src[i]);
}
void qvl_k_kv_fp8_encode(cudaStream_t st, uint8_t *dst, const float *src, size_t n) {
    if (n) k_kv_fp8_encode<<<(unsigned)((n + 255) / 256 < 4096 ? (n + 255) / 256 : 4096), 256, 0, st>>>(dst, src, n);
}
void qvl_k_kv_fp8_decode(cudaStream_t st, float *dst, const uint8_t *src, size_t n) {
    if (n) k_kv_fp8_decode<<<(unsigned)((n + 255) / 256 < 4096 ? (n + 255) / 256 : 4096), 256, 0, st>>>(dst, src, n);
}

static __global__ void k_gather_rows(bf16 *dst, const bf16 *src, const int32_t *rows, int D) {
    const int i = blockIdx.x;
    const bf16 *s = src + (size_t)rows[i] * D;
    for (int e = threadIdx.x; e < D; e += blockDim.x) dst[(size_t)i * D + e] = s[e];
}
void qvl_k_gather_rows(cudaStream_t st, bf16 *dst, const bf16 *src, const int32_t *rows, int n, int D) {
    if (n > 0) k_gather_rows<<<n, 256, 0, st>>>(dst, src, rows, D);
}
