/* Flash-style attention: a block takes 32 query rows (GQA: the query heads of one KV head are
 * consecutive rows, so a KV tile is read once for all of them) and walks the keys in tiles of 32
 * with an online F32 softmax; memory does not grow with n_q x n_kv. Decoding (few rows) splits the
 * keys over several blocks and merges their partial results (flash-decoding). 256 threads: thread
 * t owns row t/8 and, within it, keys t%8 + 8k of a tile and output dims t%8 + 8k. */
#include <atomic>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "backend/cuda/cuda_attention_frag.cuh"
#include "backend/cuda/cuda_attention_sm90.h"
#include "backend/cuda/cuda_ops.h"

enum { BQ = QVL_ATT_BQ, BK = QVL_ATT_BK, MAX_HD = 128, NE = MAX_HD / 8 };

size_t qvl_attention_partial_floats(int n_kv_heads, int hd) {
    return (size_t)n_kv_heads * QVL_ATT_MAX_SPLITS * BQ * (hd + 2);
}

static __global__ void __launch_bounds__(256) k_attention(bf16 *out, int out_stride, const bf16 *q, int q_stride,
                                                          const bf16 *k, const bf16 *v, int kv_stride, int n_q,
                                                          int n_kv, int group, int hd, int causal_pos0, float scale,
                                                          int splits, float *partial, const int32_t *step) {
    __shared__ float Qs[BQ][MAX_HD + 1];
    __shared__ bf16 Ks[BK][MAX_HD + 2];
    __shared__ bf16 Vs[BK][MAX_HD + 2];
    __shared__ float Ps[BQ][BK + 1];
    if (step) { /* graph decoding: one query at cache index step[0] */
        causal_pos0 = step[0];
        n_kv = step[0] + n_q;
    }
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

/* ---- tensor-core path (prefill and vision: more than one row block), FlashAttention-2 style ----
 * NW warps x 16 query rows, key tiles of 64. Each warp keeps its Q fragments, the scores, P and the
 * output accumulator in registers and runs mma.sync m16n8k16 (bf16 in, F32 accumulate), whose
 * fragment layouts the PTX ISA documents: in a C fragment, lane (g = lane/4, c = lane%4) holds rows
 * g and g+8, columns 2c and 2c+1; the scores' C fragments are exactly P's A fragments for P V.
 * Online softmax in F32 (row statistics reduced over the 4 lanes of a row); P rounded to bf16 for
 * P V, as flash attention does. K and V are staged in shared memory as [key][d]; V's B fragments
 * come through ldmatrix.trans. */
enum { TK = 64 };

static __device__ __forceinline__ void mma16816(float *c, const uint32_t *a, uint32_t b0, uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

/* ---- FlashAttention-2 kernel, pipelined (the mma.sync kernel; Hopper runs cuda_attention_sm90.cu's
 * wgmma kernel where it has the head size). Besides the fragment algebra above, what the profile of
 * the huge vision images asked for (it replaced an earlier unpipelined kernel): K/V tiles arrive through cp.async into a second shared-memory stage while the
 * current tile is being multiplied (double buffering), NW warps share one K/V tile (NW = 8: 128
 * query rows per block for head sizes <= 64), K and V fragments come four registers per ldmatrix,
 * scores stay raw and enter exp2 through one FMA with the log2(e)-prescaled scale, the mask is
 * applied only on tiles that cross a row's key limit, and a warp skips tiles entirely past its
 * rows' causal limit (the update would be the identity). Causal grids run the longest row blocks
 * first so they do not form the tail. Registers are capped so that 16 (NW = 8) or 12 warps stay
 * resident per SM, as many as the unpipelined kernel had. */
static __device__ __forceinline__ void cp_async16(void *smem, const void *gmem, int bytes) {
    unsigned s = (unsigned)__cvta_generic_to_shared(smem);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(gmem), "r"(bytes) : "memory");
}
static __device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
static __device__ __forceinline__ void cp_async_wait1() { asm volatile("cp.async.wait_group 1;\n" ::: "memory"); }
static __device__ __forceinline__ void cp_async_wait0() { asm volatile("cp.async.wait_group 0;\n" ::: "memory"); }

static __device__ __forceinline__ void ldsm_x4(uint32_t *r, const void *p) {
    unsigned a = (unsigned)__cvta_generic_to_shared(p);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(a));
}
static __device__ __forceinline__ void ldsm_x2(uint32_t *r, const void *p) {
    unsigned a = (unsigned)__cvta_generic_to_shared(p);
    asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0,%1}, [%2];\n" : "=r"(r[0]), "=r"(r[1]) : "r"(a));
}
static __device__ __forceinline__ void ldsm_x4_trans(uint32_t *r, const void *p) {
    unsigned a = (unsigned)__cvta_generic_to_shared(p);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(a));
}

template <int HDP, int NW>
static __global__ void __launch_bounds__(NW * 32, NW == 8 ? 2 : 3) k_attention_fa(bf16 *out, int out_stride, const bf16 *q, int q_stride,
                                                                 const bf16 *k, const bf16 *v, int kv_stride, int n_q,
                                                                 int n_kv, int group, int hd, int causal_pos0,
                                                                 float scale_log2) {
    enum { LD = HDP + 8, CH = HDP / 8, KT = HDP / 16, TILE = TK * LD };
    extern __shared__ __align__(16) unsigned char smem_raw[];
    bf16 *sm = (bf16 *)smem_raw; /* K stage 0, K stage 1, V stage 0, V stage 1; rows of LD */
    const int t = threadIdx.x, w = t >> 5, lane = t & 31, gq = lane >> 2, tg = lane & 3;
    const int g = blockIdx.y, rows = n_q * group;
    const int rb = causal_pos0 < 0 ? blockIdx.x : gridDim.x - 1 - blockIdx.x;
    const int r0 = rb * (16 * NW);
    const int R1 = r0 + w * 16 + gq, R2 = R1 + 8;
    uint32_t qf[KT][4];
    load_q_frags<KT>(qf, q, q_stride, g, group, rows, hd, R1, R2, tg);
    const int lim1 = row_key_limit(R1, rows, n_kv, group, causal_pos0);
    const int lim2 = row_key_limit(R2, rows, n_kv, group, causal_pos0);
    /* The warp's smallest and largest key limits: below the first no mask is needed, from the
     * second on the warp has nothing to do. */
    int wmin = min(lim1, lim2), wmax = max(lim1, lim2);
    for (int off = 16; off; off >>= 1) {
        wmin = min(wmin, __shfl_xor_sync(0xffffffffu, wmin, off));
        wmax = max(wmax, __shfl_xor_sync(0xffffffffu, wmax, off));
    }
    const int last_row = min(rows, r0 + 16 * NW) - 1;
    const int k_need = causal_pos0 < 0 ? n_kv : min(n_kv, causal_pos0 + last_row / group + 1);
    const int n_tiles = (k_need + TK - 1) / TK;
    const size_t head_off = (size_t)g * hd;

    /* Stage s of tile kb: 16-byte chunks, zero-filled past n_kv and past hd. */
    auto load_tile = [&](int s, int kb) {
        bf16 *Kd = sm + s * TILE, *Vd = sm + (2 + s) * TILE;
        for (int idx = t; idx < TK * CH; idx += NW * 32) {
            int j = idx / CH, c = idx % CH;
            int ok = kb + j < n_kv && c * 8 < hd;
            size_t off = ok ? (size_t)(kb + j) * kv_stride + head_off + c * 8 : 0;
            cp_async16(Kd + j * LD + c * 8, k + off, ok ? 16 : 0);
            cp_async16(Vd + j * LD + c * 8, v + off, ok ? 16 : 0);
        }
    };

    float o[HDP / 8][4];
#pragma unroll
    for (int nb = 0; nb < HDP / 8; nb++) o[nb][0] = o[nb][1] = o[nb][2] = o[nb][3] = 0.0f;
    float m1 = -INFINITY, m2 = -INFINITY, l1 = 0.0f, l2 = 0.0f; /* m in log2 units */
    if (n_tiles > 0) load_tile(0, 0);
    cp_async_commit();
    for (int it = 0; it < n_tiles; it++) {
        const int kb = it * TK, cur = it & 1;
        if (it + 1 < n_tiles) load_tile(cur ^ 1, kb + TK); /* overlaps this tile's math */
        cp_async_commit();
        cp_async_wait1(); /* this tile's group has landed (the newest may still be in flight) */
        __syncthreads();
        if (kb < wmax) {
            const bf16 *Ks = sm + cur * TILE, *Vs = sm + (2 + cur) * TILE;
            /* S = Q K^T: 16 rows x TK keys per warp. ldmatrix x4 row l%8 of matrix l/8: key nb*8 + l%8,
             * dims kk*16 + (l/8)*8: b0, b1 of kk and of kk + 1. */
            float s[TK / 8][4];
#pragma unroll
            for (int nb = 0; nb < TK / 8; nb++) {
                s[nb][0] = s[nb][1] = s[nb][2] = s[nb][3] = 0.0f;
                const bf16 *krow = Ks + (nb * 8 + (lane & 7)) * LD;
#pragma unroll
                for (int kk = 0; kk < KT; kk += 2) {
                    if (kk + 1 < KT) {
                        uint32_t b[4];
                        ldsm_x4(b, krow + kk * 16 + (lane >> 3) * 8);
                        mma16816(s[nb], qf[kk], b[0], b[1]);
                        mma16816(s[nb], qf[kk + 1], b[2], b[3]);
                    } else {
                        uint32_t b[2];
                        ldsm_x2(b, krow + kk * 16 + ((lane >> 3) & 1) * 8);
                        mma16816(s[nb], qf[kk], b[0], b[1]);
                    }
                }
            }
            if (kb + TK > wmin) {
#pragma unroll
                for (int nb = 0; nb < TK / 8; nb++)
#pragma unroll
                    for (int e = 0; e < 4; e++) {
                        int col = kb + nb * 8 + 2 * tg + (e & 1);
                        if (col >= (e < 2 ? lim1 : lim2)) s[nb][e] = -INFINITY;
                    }
            }
            float mn1, mn2, mb1, mb2;
            tile_maxima<TK / 2>(&s[0][0], scale_log2, m1, m2, mn1, mn2, mb1, mb2);
            const float c1 = exp2f(m1 - mb1), c2 = exp2f(m2 - mb2);
            float ps1 = 0.0f, ps2 = 0.0f;
#pragma unroll
            for (int nb = 0; nb < TK / 8; nb++) {
                s[nb][0] = exp2f(fmaf(s[nb][0], scale_log2, -mb1));
                s[nb][1] = exp2f(fmaf(s[nb][1], scale_log2, -mb1));
                s[nb][2] = exp2f(fmaf(s[nb][2], scale_log2, -mb2));
                s[nb][3] = exp2f(fmaf(s[nb][3], scale_log2, -mb2));
                ps1 += s[nb][0] + s[nb][1];
                ps2 += s[nb][2] + s[nb][3];
            }
            ps1 = quad_sum(ps1);
            ps2 = quad_sum(ps2);
            l1 = l1 * c1 + ps1, l2 = l2 * c2 + ps2;
            m1 = mn1, m2 = mn2;
#pragma unroll
            for (int nb = 0; nb < HDP / 8; nb++) {
                o[nb][0] *= c1, o[nb][1] *= c1;
                o[nb][2] *= c2, o[nb][3] *= c2;
            }
            /* O += P V. ldmatrix x4.trans, lane l: key kc*16 + l%16, dims (nb + l/16)*8: b0, b1 of nb
             * and of nb + 1. */
#pragma unroll
            for (int kc = 0; kc < TK / 16; kc++) {
                uint32_t a[4] = {pack_bf16(s[2 * kc][0], s[2 * kc][1]), pack_bf16(s[2 * kc][2], s[2 * kc][3]),
                                 pack_bf16(s[2 * kc + 1][0], s[2 * kc + 1][1]),
                                 pack_bf16(s[2 * kc + 1][2], s[2 * kc + 1][3])};
                const bf16 *vrow = Vs + (kc * 16 + (lane & 15)) * LD + (lane >> 4) * 8;
#pragma unroll
                for (int nb = 0; nb < HDP / 8; nb += 2) {
                    uint32_t b[4];
                    ldsm_x4_trans(b, vrow + nb * 8);
                    mma16816(o[nb], a, b[0], b[1]);
                    mma16816(o[nb + 1], a, b[2], b[3]);
                }
            }
        }
        __syncthreads(); /* everyone is done with stage cur before it is refilled */
    }
    cp_async_wait0();
    float inv1 = l1 > 0 ? 1.0f / l1 : 0.0f, inv2 = l2 > 0 ? 1.0f / l2 : 0.0f;
    bf16 *d1 = R1 < rows ? out + (size_t)(R1 / group) * out_stride + (size_t)(g * group + R1 % group) * hd : NULL;
    bf16 *d2 = R2 < rows ? out + (size_t)(R2 / group) * out_stride + (size_t)(g * group + R2 % group) * hd : NULL;
#pragma unroll
    for (int nb = 0; nb < HDP / 8; nb++) {
        int col = nb * 8 + 2 * tg;
        if (col >= hd) break;
        if (d1) *(__nv_bfloat162 *)(d1 + col) = __floats2bfloat162_rn(o[nb][0] * inv1, o[nb][1] * inv1);
        if (d2) *(__nv_bfloat162 *)(d2 + col) = __floats2bfloat162_rn(o[nb][2] * inv2, o[nb][3] * inv2);
    }
}

template <int HDP>
static void launch_tc(cudaStream_t st, bf16 *out, int out_stride, const bf16 *q, int q_stride, const bf16 *k,
                      const bf16 *v, int kv_stride, int n_q, int n_kv, int group, int Hkv, int hd, int causal_pos0,
                      float scale) {
    /* 128 query rows per block where the registers allow two blocks per SM (head size <= 64). */
    constexpr int NW = HDP <= 64 ? 8 : 4;
    constexpr size_t smem = (size_t)4 * TK * (HDP + 8) * sizeof(bf16);
    /* above 48 KiB dynamic shared memory must be opted into: once per process (the attribute is the
     * function's), atomically since two engines may launch from two threads */
    static std::atomic<int> attr_set{0};
    if (!attr_set.load(std::memory_order_acquire)) {
        cudaFuncSetAttribute(k_attention_fa<HDP, NW>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
        attr_set.store(1, std::memory_order_release);
    }
    dim3 grid((n_q * group + 16 * NW - 1) / (16 * NW), Hkv);
    k_attention_fa<HDP, NW><<<grid, NW * 32, smem, st>>>(out, out_stride, q, q_stride, k, v, kv_stride, n_q, n_kv,
                                                         group, hd, causal_pos0, scale * 1.4426950408889634f);
}

/* The tensor-core kernel needs 16-byte aligned rows (hd, strides multiples of 8 elements). */
static int tc_ok(const void *a, const void *b, const void *c, int s1, int s2, int hd) {
    return (((uintptr_t)a | (uintptr_t)b | (uintptr_t)c) & 15) == 0 && s1 % 8 == 0 && s2 % 8 == 0 && hd % 8 == 0 &&
           hd <= 128;
}

void qvl_attention(cudaStream_t st, bf16 *out, int out_stride, const bf16 *q, int q_stride, const bf16 *k,
                   const bf16 *v, int kv_stride, int n_q, int n_kv, int Hq, int Hkv, int hd, int causal_pos0,
                   float *partial, int impl) {
    if (n_q <= 0) return;
    int group = Hq / Hkv, rows = n_q * group, row_blocks = (rows + BQ - 1) / BQ;
    float scale = 1.0f / sqrtf((float)hd);
    if (rows > BQ && tc_ok(q, k, v, q_stride, kv_stride, hd)) {
        /* Hopper: the wgmma kernel (cuda_attention_sm90.cu) where it has the head size. */
        if (impl != QVL_ATT_FA2 &&
            qvl_attention_sm90(st, out, out_stride, q, q_stride, k, v, kv_stride, n_q, n_kv, group, Hkv, hd,
                               causal_pos0, scale * 1.4426950408889634f, impl >= QVL_ATT_WG ? impl - QVL_ATT_WG : -1) == 0)
            return;
        int hdp = (hd + 15) / 16 * 16;
#define TC(H) launch_tc<H>(st, out, out_stride, q, q_stride, k, v, kv_stride, n_q, n_kv, group, Hkv, hd, causal_pos0, scale)
        switch (hdp) {
        case 16: TC(16); return;
        case 32: TC(32); return;
        case 48: TC(48); return;
        case 64: TC(64); return;
        case 80: TC(80); return;
        case 96: TC(96); return;
        case 112: TC(112); return;
        case 128: TC(128); return;
        }
#undef TC
    }
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
                                      scale, splits, partial, NULL);
    if (splits > 1) k_attention_combine<<<dim3(rows, Hkv), 128, 0, st>>>(out, out_stride, partial, rows, group, hd, splits);
}

/* ---- decoding (one query token); other head sizes and groups take the 32-row k_attention ----
 * One block per (KV head, split of the cache): only the group's real query heads, held in
 * registers, so each K/V row is read once for all of them. 4 warps take 4 consecutive keys at a
 * time; lane l owns dims l*E .. l*E+E-1 (E = hd/32), so a K or V row is one coalesced load. The
 * warps' online-softmax states are merged in shared memory and written as one partial per head
 * for k_attention_combine (max stored in natural-log units, as k_attention stores it). */
enum { DEC_W = 4, DEC_UNROLL = 4, DEC_MAX_GROUP = 8 };

template <int E>
static __device__ __forceinline__ void load_dims(float *dst, const bf16 *src) {
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

/* Fused combine (QVL_DEC_FUSED, default on): the last split block of each KV head to finish
 * (counted in dec_count[g] of the caller's qvl_sync, reset by that block so the decode graph
 * replays it) merges the splits' partials into out itself, with k_attention_combine's arithmetic
 * in its order, instead of a second kernel. out == NULL: partials only (k_attention_combine
 * follows). */
enum { DEC_MAX_KV = QVL_SYNC_DEC_KV };

template <int E>
static __global__ void __launch_bounds__(DEC_W * 32) k_attention_dec(const bf16 *q, int q_stride, const bf16 *k,
                                                                     const bf16 *v, int kv_stride, int group, float scale_log2,
                                                                     int splits, float *partial, const int32_t *step,
                                                                     bf16 *out, int out_stride,
                                                                     unsigned *dec_count) {
    enum { HD = 32 * E };
    __shared__ float sm_ml[DEC_W][DEC_MAX_GROUP][2];
    __shared__ float sm_o[DEC_W][DEC_MAX_GROUP][HD];
    const int n_kv = step[0] + 1; /* the query sits at cache index step[0] */
    const int g = blockIdx.x, split = blockIdx.y, w = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int per = (n_kv + splits - 1) / splits, k0 = split * per, k1 = min(n_kv, k0 + per);
    float qv[DEC_MAX_GROUP][E], o[DEC_MAX_GROUP][E], m[DEC_MAX_GROUP], l[DEC_MAX_GROUP];
#pragma unroll
    for (int hh = 0; hh < DEC_MAX_GROUP; hh++) {
        m[hh] = -INFINITY, l[hh] = 0.0f;
#pragma unroll
        for (int e = 0; e < E; e++) o[hh][e] = qv[hh][e] = 0.0f;
        if (hh < group) load_dims<E>(qv[hh], q + (size_t)(g * group + hh) * HD + lane * E);
    }
    const size_t col = (size_t)g * HD + lane * E;
    for (int base = k0 + w * DEC_UNROLL; base < k1; base += DEC_W * DEC_UNROLL) {
        float kr[DEC_UNROLL][E], vr[DEC_UNROLL][E];
#pragma unroll
        for (int u = 0; u < DEC_UNROLL; u++) /* all loads first: DEC_UNROLL rows in flight */
            if (base + u < k1) {
                load_dims<E>(kr[u], k + (size_t)(base + u) * kv_stride + col);
                load_dims<E>(vr[u], v + (size_t)(base + u) * kv_stride + col);
            }
#pragma unroll
        for (int u = 0; u < DEC_UNROLL; u++) {
            if (base + u >= k1) break;
#pragma unroll
            for (int hh = 0; hh < DEC_MAX_GROUP; hh++) {
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
    for (int hh = 0; hh < DEC_MAX_GROUP; hh++) {
        if (hh >= group) break;
        if (lane == 0) sm_ml[w][hh][0] = m[hh], sm_ml[w][hh][1] = l[hh];
#pragma unroll
        for (int e = 0; e < E; e++) sm_o[w][hh][lane * E + e] = o[hh][e];
    }
    __syncthreads();
    for (int idx = threadIdx.x; idx < group * HD; idx += DEC_W * 32) {
        const int hh = idx / HD, d = idx % HD;
        float M = -INFINITY;
        for (int ww = 0; ww < DEC_W; ww++) M = fmaxf(M, sm_ml[ww][hh][0]);
        float num = 0.0f, den = 0.0f;
        if (M != -INFINITY)
            for (int ww = 0; ww < DEC_W; ww++) {
                if (sm_ml[ww][hh][0] == -INFINITY) continue;
                const float f = exp2f(sm_ml[ww][hh][0] - M);
                num += sm_o[ww][hh][d] * f;
                den += sm_ml[ww][hh][1] * f;
            }
        float *pp = partial + ((size_t)(g * splits + split) * BQ + hh) * (HD + 2);
        pp[d] = num;
        if (d == 0) pp[HD] = M * 0.6931471805599453f, pp[HD + 1] = den; /* log2 -> natural units */
    }
    if (!out) return;
    __shared__ bool last;
    __threadfence(); /* this block's partials are visible before it is counted */
    __syncthreads();
    if (threadIdx.x == 0) last = atomicAdd(&dec_count[g], 1u) == (unsigned)splits - 1;
    __syncthreads();
    if (!last) return;
    __threadfence();
    /* k_attention_combine's arithmetic in its order (bit for bit), but each split's max and sum are
     * loaded once, in parallel, and the weights computed once per head, not per output dim: the
     * separate kernel's serial dependent loads over the splits were its whole cost. */
    __shared__ float s_w[DEC_MAX_GROUP][QVL_ATT_MAX_SPLITS], s_pm[DEC_MAX_GROUP][QVL_ATT_MAX_SPLITS];
    __shared__ float s_l[DEC_MAX_GROUP][QVL_ATT_MAX_SPLITS], s_den[DEC_MAX_GROUP];
    for (int idx = threadIdx.x; idx < group * splits; idx += DEC_W * 32) {
        const int hh = idx / splits, sp = idx % splits;
        const float *pp = partial + ((size_t)(g * splits + sp) * BQ + hh) * (HD + 2);
        s_pm[hh][sp] = __ldcg(pp + HD), s_l[hh][sp] = __ldcg(pp + HD + 1);
    }
    __syncthreads();
    if (threadIdx.x < group) {
        const int hh = threadIdx.x;
        float M = -INFINITY, den = 0;
        for (int sp = 0; sp < splits; sp++) M = fmaxf(M, s_pm[hh][sp]);
        for (int sp = 0; sp < splits; sp++) {
            if (s_pm[hh][sp] == -INFINITY) continue;
            float wgt = expf(s_pm[hh][sp] - M);
            s_w[hh][sp] = wgt;
            den += s_l[hh][sp] * wgt;
        }
        s_den[hh] = den;
    }
    __syncthreads();
    for (int idx = threadIdx.x; idx < group * HD; idx += DEC_W * 32) {
        const int hh = idx / HD, e = idx % HD;
        const float *pe = partial + (size_t)g * splits * BQ * (HD + 2) + (size_t)hh * (HD + 2) + e;
        float num = 0;
#pragma unroll 8
        for (int sp = 0; sp < splits; sp++) {
            const float val = __ldcg(pe + (size_t)sp * BQ * (HD + 2)); /* loaded unconditionally: in flight together */
            if (s_pm[hh][sp] != -INFINITY) num += val * s_w[hh][sp];
        }
        const float den = s_den[hh];
        out[(size_t)(g * group + hh) * HD + e] = __float2bfloat16(den > 0 ? num / den : 0.0f);
    }
    if (threadIdx.x == 0) dec_count[g] = 0;
}

void qvl_attention_decode(cudaStream_t st, bf16 *out, int out_stride, const bf16 *q, int q_stride, const bf16 *k,
                          const bf16 *v, int kv_stride, int Hq, int Hkv, int hd, const int32_t *step, float *partial,
                          qvl_sync *sync) {
    int group = Hq / Hkv, splits = (2 * 132 + Hkv - 1) / Hkv;
    if (splits > QVL_ATT_MAX_SPLITS) splits = QVL_ATT_MAX_SPLITS;
    const float scale_log2 = 1.0f / sqrtf((float)hd) * 1.4426950408889634f;
    if (group <= DEC_MAX_GROUP && (hd == 32 || hd == 64 || hd == 128)) {
        dim3 grid(Hkv, splits);
        /* the fused combine writes out rows as [head][hd] of the one query token */
        bf16 *fo = Hkv <= DEC_MAX_KV && sync ? out : NULL;
        unsigned *cnt = sync ? sync->dec_count : NULL;
        if (hd == 128)
            k_attention_dec<4><<<grid, DEC_W * 32, 0, st>>>(q, q_stride, k, v, kv_stride, group, scale_log2, splits, partial, step, fo, out_stride, cnt);
        else if (hd == 64)
            k_attention_dec<2><<<grid, DEC_W * 32, 0, st>>>(q, q_stride, k, v, kv_stride, group, scale_log2, splits, partial, step, fo, out_stride, cnt);
        else
            k_attention_dec<1><<<grid, DEC_W * 32, 0, st>>>(q, q_stride, k, v, kv_stride, group, scale_log2, splits, partial, step, fo, out_stride, cnt);
        if (fo) return;
    } else {
        dim3 grid(1, Hkv, splits);
        k_attention<<<grid, 256, 0, st>>>(out, out_stride, q, q_stride, k, v, kv_stride, 1, 0, group, hd, 0,
                                          1.0f / sqrtf((float)hd), splits, partial, step);
    }
    k_attention_combine<<<dim3(group, Hkv), 128, 0, st>>>(out, out_stride, partial, group, group, hd, splits);
}
