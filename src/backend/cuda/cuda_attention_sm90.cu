/* Prefill/vision attention on Hopper with warpgroup MMA (wgmma, sm_90a), FlashAttention-2 algebra:
 * the same online softmax as k_attention_fa in cuda_attention.cu (F32 statistics in log2 units,
 * P rounded to bf16 for P V), but each warpgroup (4 warps, 64 query rows) multiplies with one
 * asynchronous m64nNk16 instruction per 16-wide K step instead of a warp's m16n8k16 per 8 columns.
 * A operands come from registers: Q fragments loaded once, P converted from the score accumulators
 * (a warp's part of a wgmma accumulator or A operand has exactly the mma.sync m16n8k16 fragment
 * layout, rows 16 * warp-in-group onwards). B operands (K for Q K^T, V for P V) come from shared
 * memory through matrix descriptors: K and V tiles are stored as [key][64 dims] sub-tiles of
 * 128-byte rows with the 128-byte swizzle (16-byte chunk c of row j at chunk c ^ (j % 8)), which is
 * the canonical K-major layout for K (keys = N, dims = K) and the canonical MN-major layout for V
 * (keys = K, dims = N, transpose bit set). Tiles arrive by cp.async, double buffered. All threads
 * load; the warpgroups of a block share each K/V tile. */
#include <atomic>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "backend/cuda/cuda_attention_frag.cuh"
#include "backend/cuda/cuda_attention_sm90.h"

/* The device code below exists only in the sm_90a pass (other passes: an empty kernel body). */
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ == 900 && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define QVL_WGMMA_DEVICE 1

/* The wgmma wrappers, one per shape (m64nNk16) and B layout (t0: K-major, t1: MN-major), A from
 * registers, D += A B (D = A B where scale_d is 0). Written out by a small generator: asm operand
 * lists cannot be produced by the preprocessor. */
static __device__ __forceinline__ void wgmma_n64_t0(float *d, const uint32_t *a, uint64_t desc, int scale_d) {
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 {"
                 "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
                 "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31"
                 "}, {%32, %33, %34, %35}, %36, p, 1, 1, 0;\n}\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
                   "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
                   "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
                   "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc), "r"(scale_d));
}
static __device__ __forceinline__ void wgmma_n128_t0(float *d, const uint32_t *a, uint64_t desc, int scale_d) {
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {"
                 "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
                 "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, "
                 "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, "
                 "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63"
                 "}, {%64, %65, %66, %67}, %68, p, 1, 1, 0;\n}\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
                   "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
                   "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
                   "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]),
                   "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]),
                   "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]),
                   "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]),
                   "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc), "r"(scale_d));
}
static __device__ __forceinline__ void wgmma_n64_t1(float *d, const uint32_t *a, uint64_t desc, int scale_d) {
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 {"
                 "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
                 "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31"
                 "}, {%32, %33, %34, %35}, %36, p, 1, 1, 1;\n}\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
                   "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
                   "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
                   "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc), "r"(scale_d));
}
static __device__ __forceinline__ void wgmma_n16_t1(float *d, const uint32_t *a, uint64_t desc, int scale_d) {
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %13, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n16k16.f32.bf16.bf16 {"
                 "%0, %1, %2, %3, %4, %5, %6, %7"
                 "}, {%8, %9, %10, %11}, %12, p, 1, 1, 1;\n}\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc), "r"(scale_d));
}

static __device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
static __device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
static __device__ __forceinline__ void wgmma_wait0() { asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory"); }
static __device__ __forceinline__ void wgmma_wait1() { asm volatile("wgmma.wait_group.sync.aligned 1;\n" ::: "memory"); }
/* Keeps the compiler from moving reads of accumulators above the wait (or writes below a wgmma). */
template <int N>
static __device__ __forceinline__ void reg_fence(float *d) {
#pragma unroll
    for (int i = 0; i < N; i++) asm volatile("" : "+f"(d[i])::"memory");
}

/* Shared-memory matrix descriptor, 128-byte swizzle, 8-row groups 1024 bytes apart (the stride
 * byte offset; the leading byte offset is set to the same 1024 so that it holds whichever of the
 * two the hardware reads for a single 64-wide atom column). addr: shared-window byte address. */
static __device__ __forceinline__ uint64_t sw128_desc(unsigned addr) {
    return (uint64_t)((addr & 0x3FFFF) >> 4) | ((uint64_t)(1024 >> 4) << 16) | ((uint64_t)(1024 >> 4) << 32) |
           ((uint64_t)1 << 62);
}

static __device__ __forceinline__ void cp_async16(unsigned saddr, const void *gmem, int bytes) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(saddr), "l"(gmem), "r"(bytes) : "memory");
}

#endif /* QVL_WGMMA_DEVICE */

/* 2^x on the special-function unit, subnormal results flushed to 0 (probabilities below 2^-126
 * of the row maximum; exp2f adds a few instructions per call to keep them). */
#ifdef QVL_WGMMA_DEVICE
static __device__ __forceinline__ float exp2_ftz(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
}
#endif

/* HDP: head size padded to 16 (64, 80 or 128); TK: keys per tile (64 or 128); NWG warpgroups per
 * block (64 query rows each); MINB: blocks per SM the registers are capped for; NST: shared-memory
 * stages. NST = 2: a tile's P V is waited for before the block barrier that frees its stage.
 * NST = 3: P V stays in flight while the next tile is waited for and its Q K^T issued (the tensor
 * cores run the two back to back); a stage is refilled two tiles after its use, by which time
 * every warpgroup has waited for its P V (one barrier per tile). NST = 4: also the next tile's
 * Q K^T runs during this tile's softmax (FlashAttention-3's intra-warpgroup overlap). */
template <int HDP, int TK, int NWG, int MINB, int NST>
static __global__ void __launch_bounds__(NWG * 128, MINB)
    k_attention_wg(bf16 *out, int out_stride, const bf16 *q, int q_stride, const bf16 *k, const bf16 *v,
                   int kv_stride, int n_q, int n_kv, int group, int hd, int causal_pos0, float scale_log2) {
#ifdef QVL_WGMMA_DEVICE
    enum { NSUB = (HDP + 63) / 64, KT = HDP / 16, CH = HDP / 8, SUB = TK * 128, TILE = NSUB * SUB, NT = NWG * 128 };
    enum { O1 = HDP - 64 }; /* width of the second P V product (0, 16 or 64) */
    extern __shared__ unsigned char smem_raw[];
    /* Swizzle atoms must be 1024-byte aligned: stage s holds K at sm0 + 2s TILE, V at sm0 + (2s+1) TILE. */
    const unsigned sm0 = ((unsigned)__cvta_generic_to_shared(smem_raw) + 1023u) & ~1023u;
    const int t = threadIdx.x, w = t >> 5, lane = t & 31, gq = lane >> 2, tg = lane & 3, wg = w >> 2;
    const int g = blockIdx.y, rows = n_q * group;
    const int rb = causal_pos0 < 0 ? blockIdx.x : gridDim.x - 1 - blockIdx.x; /* causal: longest first */
    const int r0 = rb * (64 * NWG);
    const int R1 = r0 + w * 16 + gq, R2 = R1 + 8;
    uint32_t qf[KT][4];
    load_q_frags<KT>(qf, q, q_stride, g, group, rows, hd, R1, R2, tg);
    const int lim1 = row_key_limit(R1, rows, n_kv, group, causal_pos0);
    const int lim2 = row_key_limit(R2, rows, n_kv, group, causal_pos0);
    int wmin = min(lim1, lim2); /* below the warp's smallest key limit no mask is needed */
    for (int off = 16; off; off >>= 1) wmin = min(wmin, __shfl_xor_sync(0xffffffffu, wmin, off));
    /* The warpgroup's largest key limit (its last valid row's): the wgmma is collective, so a tile
     * is skipped (the identity update) only when all 64 rows are past it. */
    const int wg_first = r0 + wg * 64, wg_last = min(rows, wg_first + 64) - 1;
    const int wgmax = wg_last < wg_first ? 0 : causal_pos0 < 0 ? n_kv : min(n_kv, causal_pos0 + wg_last / group + 1);
    const int last_row = min(rows, r0 + 64 * NWG) - 1;
    const int k_need = causal_pos0 < 0 ? n_kv : min(n_kv, causal_pos0 + last_row / group + 1);
    const int n_tiles = (k_need + TK - 1) / TK;
    const size_t head_off = (size_t)g * hd;

    /* Stage s of tile kb: 16-byte chunks (row j, chunk gc of the padded head), zero-filled past n_kv and hd. */
    auto load_tile = [&](int st, int kb) {
        const unsigned Kd = sm0 + (2 * st) * TILE, Vd = Kd + TILE;
        for (int idx = t; idx < TK * CH; idx += NT) {
            const int j = idx / CH, gc = idx % CH;
            const int ok = kb + j < n_kv && gc * 8 < hd;
            const size_t off = ok ? (size_t)(kb + j) * kv_stride + head_off + gc * 8 : 0;
            const unsigned so = (gc >> 3) * SUB + j * 128 + (((gc & 7) ^ (j & 7)) << 4);
            cp_async16(Kd + so, k + off, ok ? 16 : 0);
            cp_async16(Vd + so, v + off, ok ? 16 : 0);
        }
    };

    float o[HDP / 2], s[TK / 2], s2[TK / 2]; /* s2: the next tile's scores (NST = 4) */
    uint32_t pa[TK / 16][4]; /* P as the A operand of P V, 16 keys per K step */
#pragma unroll
    for (int i = 0; i < HDP / 2; i++) o[i] = 0.0f;
#pragma unroll
    for (int i = 0; i < TK / 2; i++) s[i] = s2[i] = 0.0f;
    float m1 = -INFINITY, m2 = -INFINITY, l1 = 0.0f, l2 = 0.0f; /* m in log2 units */

    /* S = Q K^T for the tile in stage st: 64 rows x TK keys per warpgroup, one instruction per 16 dims. */
    auto issue_qk = [&](int st, float *s) {
        const unsigned Ks = sm0 + (2 * st) * TILE;
        reg_fence<TK / 2>(s);
        wgmma_fence();
#pragma unroll
        for (int kk = 0; kk < KT; kk++) {
            const uint64_t d = sw128_desc(Ks + (kk >> 2) * SUB + (kk & 3) * 32);
            if constexpr (TK == 128) wgmma_n128_t0(s, qf[kk], d, kk > 0);
            else wgmma_n64_t0(s, qf[kk], d, kk > 0);
        }
        wgmma_commit();
    };
    /* O += P V for the tile in stage st: dims 0-63 from V sub-tile 0, the rest from sub-tile 1. */
    auto issue_pv = [&](int st) {
        const unsigned Vs = sm0 + (2 * st + 1) * TILE;
        reg_fence<HDP / 2>(o);
        wgmma_fence();
#pragma unroll
        for (int kc = 0; kc < TK / 16; kc++) {
            wgmma_n64_t1(o, pa[kc], sw128_desc(Vs + kc * 2048), 1);
            if constexpr (O1 == 64) wgmma_n64_t1(o + 32, pa[kc], sw128_desc(Vs + SUB + kc * 2048), 1);
            else if constexpr (O1 == 16) wgmma_n16_t1(o + 32, pa[kc], sw128_desc(Vs + SUB + kc * 2048), 1);
        }
        wgmma_commit();
    };
    /* Online softmax of the scores of tile kb: P into pa, O rescaled. s[4 nb + e]: row R1 (e < 2)
     * or R2, key kb + 8 nb + 2 tg + (e & 1). */
    auto softmax = [&](int kb, float *s) {
        if (kb + TK > wmin) {
#pragma unroll
            for (int nb = 0; nb < TK / 8; nb++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    int col = kb + nb * 8 + 2 * tg + (e & 1);
                    if (col >= (e < 2 ? lim1 : lim2)) s[4 * nb + e] = -INFINITY;
                }
        }
        float mn1, mn2, mb1, mb2;
        tile_maxima<TK / 2>(s, scale_log2, m1, m2, mn1, mn2, mb1, mb2);
        const float c1 = exp2_ftz(m1 - mb1), c2 = exp2_ftz(m2 - mb2);
        float ps1 = 0.0f, ps2 = 0.0f;
#pragma unroll
        for (int nb = 0; nb < TK / 8; nb++) {
            const float p0 = exp2_ftz(fmaf(s[4 * nb], scale_log2, -mb1));
            const float p1 = exp2_ftz(fmaf(s[4 * nb + 1], scale_log2, -mb1));
            const float p2 = exp2_ftz(fmaf(s[4 * nb + 2], scale_log2, -mb2));
            const float p3 = exp2_ftz(fmaf(s[4 * nb + 3], scale_log2, -mb2));
            ps1 += p0 + p1;
            ps2 += p2 + p3;
            pa[nb >> 1][(nb & 1) * 2] = pack_bf16(p0, p1);
            pa[nb >> 1][(nb & 1) * 2 + 1] = pack_bf16(p2, p3);
        }
        ps1 = quad_sum(ps1);
        ps2 = quad_sum(ps2);
        l1 = l1 * c1 + ps1, l2 = l2 * c2 + ps2;
        m1 = mn1, m2 = mn2;
#pragma unroll
        for (int nb = 0; nb < HDP / 8; nb++) {
            o[4 * nb] *= c1, o[4 * nb + 1] *= c1;
            o[4 * nb + 2] *= c2, o[4 * nb + 3] *= c2;
        }
    };

    if (n_tiles > 0) load_tile(0, 0);
    asm volatile("cp.async.commit_group;\n" ::: "memory");
    if constexpr (NST == 4) {
        /* Tile j lives in stage j % 4. Per tile j: Q K^T of tile j + 1 is issued before the
         * softmax of tile j, so the tensor cores work while this warpgroup computes exponentials;
         * P V of tile j stays in flight until the softmax of tile j + 1 needs O. */
        if (n_tiles > 1) load_tile(1, TK);
        asm volatile("cp.async.commit_group;\n" ::: "memory");
        asm volatile("cp.async.wait_group 1;\n" ::: "memory");
        asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
        __syncthreads();
        if (n_tiles > 0 && 0 < wgmax) issue_qk(0, s);
        auto body = [&](int j, float *sc, float *sn) {
            const int kb = j * TK;
            const bool act = kb < wgmax, act_next = j + 1 < n_tiles && kb + TK < wgmax;
            /* Q K^T of tile j (P V of tile j - 1, issued after it, may run on); an idle warpgroup
             * leaves nothing in flight. */
            if (!act || j == 0) wgmma_wait0();
            else wgmma_wait1();
            reg_fence<TK / 2>(sc);
            /* Tile j + 1 has landed; every warpgroup has waited for P V of tile j - 2, so stage
             * (j + 2) % 4 is free. */
            asm volatile("cp.async.wait_group 0;\n" ::: "memory");
            asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
            __syncthreads();
            if (j + 2 < n_tiles) load_tile((j + 2) % 4, kb + 2 * TK);
            asm volatile("cp.async.commit_group;\n" ::: "memory");
            if (act_next) issue_qk((j + 1) % 4, sn);
            if (act) {
                if (act_next) wgmma_wait1(); /* P V of tile j - 1 (Q K^T of tile j + 1 runs on) */
                else wgmma_wait0();
                reg_fence<HDP / 2>(o);
                softmax(kb, sc);
                issue_pv(j % 4);
            }
        };
        for (int j = 0; j < n_tiles; j += 2) { /* two steps per trip: s and s2 swap roles statically */
            body(j, s, s2);
            if (j + 1 < n_tiles) body(j + 1, s2, s);
        }
    }
    for (int it = 0; NST != 4 && it < n_tiles; it++) {
        const int kb = it * TK;
        if constexpr (NST == 2) {
            const int cur = it & 1;
            if (it + 1 < n_tiles) load_tile(cur ^ 1, kb + TK); /* overlaps this tile's math */
            asm volatile("cp.async.commit_group;\n" ::: "memory");
            asm volatile("cp.async.wait_group 1;\n" ::: "memory");
            /* cp.async wrote through the generic proxy; wgmma reads through the async proxy. */
            asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
            __syncthreads();
            if (kb < wgmax) {
                issue_qk(cur, s);
                wgmma_wait0();
                reg_fence<TK / 2>(s);
                softmax(kb, s);
                issue_pv(cur);
                wgmma_wait0();
                reg_fence<HDP / 2>(o);
            }
            __syncthreads(); /* everyone is done with stage cur before it is refilled */
        } else {
            const int cur = it % 3;
            asm volatile("cp.async.wait_group 0;\n" ::: "memory"); /* tile it has landed */
            asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
            /* After this barrier every warpgroup has waited for its P V of tile it - 2 (at its
             * Q K^T wait of tile it - 1, or in the skip branch): stage (it + 1) % 3 is free. */
            __syncthreads();
            if (it + 1 < n_tiles) load_tile((it + 1) % 3, kb + TK); /* overlaps this tile's math */
            asm volatile("cp.async.commit_group;\n" ::: "memory");
            if (kb < wgmax) {
                issue_qk(cur, s);
                wgmma_wait0(); /* also the previous tile's P V (groups complete in order) */
                reg_fence<TK / 2>(s);
                reg_fence<HDP / 2>(o);
                softmax(kb, s);
                issue_pv(cur); /* left in flight */
            } else {
                wgmma_wait0();
                reg_fence<HDP / 2>(o);
            }
        }
    }
    wgmma_wait0();
    reg_fence<HDP / 2>(o);
    asm volatile("cp.async.wait_group 0;\n" ::: "memory");
    const float inv1 = l1 > 0 ? 1.0f / l1 : 0.0f, inv2 = l2 > 0 ? 1.0f / l2 : 0.0f;
    bf16 *d1 = R1 < rows ? out + (size_t)(R1 / group) * out_stride + (size_t)(g * group + R1 % group) * hd : NULL;
    bf16 *d2 = R2 < rows ? out + (size_t)(R2 / group) * out_stride + (size_t)(g * group + R2 % group) * hd : NULL;
#pragma unroll
    for (int nb = 0; nb < HDP / 8; nb++) {
        const int col = nb * 8 + 2 * tg;
        if (col >= hd) break;
        if (d1) *(__nv_bfloat162 *)(d1 + col) = __floats2bfloat162_rn(o[4 * nb] * inv1, o[4 * nb + 1] * inv1);
        if (d2) *(__nv_bfloat162 *)(d2 + col) = __floats2bfloat162_rn(o[4 * nb + 2] * inv2, o[4 * nb + 3] * inv2);
    }
#else
    __trap(); /* built without sm_90a: the host never launches this (qvl_attention_sm90_available) */
#endif
}

template <int HDP, int TK, int NWG, int MINB, int NST>
static void launch_wg(cudaStream_t st, bf16 *out, int out_stride, const bf16 *q, int q_stride, const bf16 *k,
                      const bf16 *v, int kv_stride, int n_q, int n_kv, int group, int Hkv, int hd, int causal_pos0,
                      float scale_log2) {
    constexpr int smem = 2 * NST * ((HDP + 63) / 64) * TK * 128 + 1024;
    /* above 48 KiB dynamic shared memory must be opted into: once per process (the attribute is the
     * function's), atomically since two engines may launch from two threads */
    static std::atomic<int> attr_set{0};
    if (!attr_set.load(std::memory_order_acquire)) {
        cudaFuncSetAttribute(k_attention_wg<HDP, TK, NWG, MINB, NST>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
        attr_set.store(1, std::memory_order_release);
    }
    dim3 grid((n_q * group + 64 * NWG - 1) / (64 * NWG), Hkv);
    k_attention_wg<HDP, TK, NWG, MINB, NST><<<grid, NWG * 128, smem, st>>>(
        out, out_stride, q, q_stride, k, v, kv_stride, n_q, n_kv, group, hd, causal_pos0, scale_log2);
}

int qvl_attention_sm90_available(void) {
#ifdef QVL_SM90A
    static std::atomic<int> avail{-1}; /* the same answer from every thread: a race only computes it twice */
    int a = avail.load(std::memory_order_relaxed);
    if (a < 0) {
        int dev = 0, major = 0, minor = 0;
        a = cudaGetDevice(&dev) == cudaSuccess &&
            cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) == cudaSuccess &&
            cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev) == cudaSuccess && major == 9 &&
            minor == 0;
        avail.store(a, std::memory_order_relaxed);
    }
    return a;
#else
    return 0; /* the Makefile defines QVL_SM90A together with the sm_90a target */
#endif
}

/* The configuration for large inputs by padded head size (64, 80, 128): the fastest in
 * bench_attention on an H100 (bench/results/2026-11-26-attention-kernels-h100: 64 -> 2, 192 rows per block and 128-key
 * tiles; 80 -> 1; 128 -> 0). bench_attention times every configuration (explicit config). */
static int large_default(int hd) { return hd <= 64 ? 2 : hd <= 80 ? 1 : 0; }

int qvl_attention_sm90(cudaStream_t st, bf16 *out, int out_stride, const bf16 *q, int q_stride, const bf16 *k,
                       const bf16 *v, int kv_stride, int n_q, int n_kv, int group, int Hkv, int hd, int causal_pos0,
                       float scale_log2, int config) {
    if (!qvl_attention_sm90_available()) return -1;
    if ((((uintptr_t)q | (uintptr_t)k | (uintptr_t)v | (uintptr_t)out) & 15) || q_stride % 8 || kv_stride % 8 ||
        out_stride % 2 || hd % 8)
        return -1;
#define WG(H, T, N, M, S)                                                                                        \
    launch_wg<H, T, N, M, S>(st, out, out_stride, q, q_stride, k, v, kv_stride, n_q, n_kv, group, Hkv, hd,      \
                             causal_pos0, scale_log2)
    /* Configurations (bench_attention times them all): 0 three stages; 1 the first version (two
     * stages, 64-key tiles); 2.. others. config -1 takes large_default(hd), or 64 rows per block
     * (config 3) where blocks of 128 rows would give fewer than two blocks per SM. */
    const int rows = n_q * group;
    if (config == -1) config = (rows + 127) / 128 * Hkv < 2 * 132 ? 3 : large_default(hd);
    if (hd > 48 && hd <= 64) {
        switch (config) {
        case 0: WG(64, 64, 2, 2, 3); return 0;
        case 1: WG(64, 64, 2, 2, 2); return 0;
        case 2: WG(64, 128, 3, 1, 3); return 0;
        case 3: WG(64, 64, 1, 4, 3); return 0;
        case 4: WG(64, 128, 2, 1, 3); return 0;
        case 5: WG(64, 64, 3, 1, 3); return 0;
        case 6: WG(64, 64, 2, 1, 4); return 0;
        case 7: WG(64, 128, 2, 1, 4); return 0;
        case 8: WG(64, 64, 3, 1, 4); return 0;
        }
    } else if (hd > 64 && hd <= 80) {
        switch (config) {
        case 0: WG(80, 64, 2, 2, 3); return 0;
        case 1: WG(80, 64, 2, 2, 2); return 0;
        case 2: WG(80, 128, 2, 1, 3); return 0;
        case 3: WG(80, 64, 1, 4, 3); return 0;
        case 6: WG(80, 64, 2, 1, 4); return 0;
        }
    } else if (hd > 112 && hd <= 128) {
        switch (config) {
        case 0: WG(128, 128, 2, 1, 3); return 0;
        case 1: WG(128, 64, 2, 1, 2); return 0;
        case 2: WG(128, 64, 2, 1, 3); return 0;
        case 3: WG(128, 64, 1, 2, 3); return 0;
        case 4: WG(128, 128, 2, 1, 2); return 0;
        case 6: WG(128, 64, 2, 1, 4); return 0;
        }
    }
#undef WG
    return -1;
}
