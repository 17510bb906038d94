/* Device helpers shared by the two flash-attention kernels (cuda_attention.cu: mma.sync, any
 * sm_80+; cuda_attention_sm90.cu: wgmma, Hopper). Both hold a warp's 16 query rows as m16n8k16 A
 * fragments and its scores as C fragments: lane (gq = lane/4, tg = lane%4) holds rows R1 (= the
 * warp's first row + gq) and R2 = R1 + 8, columns 2tg, 2tg+1 (and + 8). C++ (nvcc) only. */
#ifndef QVL_BACKEND_CUDA_ATTENTION_FRAG_CUH
#define QVL_BACKEND_CUDA_ATTENTION_FRAG_CUH
#include <cuda_bf16.h>
#include <stdint.h>

/* Two floats as one register of bf16 (lo in the low half), round to nearest. */
static __device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *(uint32_t *)&v;
}

/* Max and sum over the 4 lanes that hold one row of a C fragment. */
static __device__ __forceinline__ float quad_max(float x) {
    x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 1));
    return fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 2));
}
static __device__ __forceinline__ float quad_sum(float x) {
    x += __shfl_xor_sync(0xffffffffu, x, 1);
    return x + __shfl_xor_sync(0xffffffffu, x, 2);
}

/* The online softmax's new row maxima for one tile of raw scores: this lane's n scores s[4 nb + e]
 * (row R1 for e < 2, R2 otherwise; masked keys at -inf), reduced over the row's 4 lanes, scaled to
 * log2 units and merged with the running maxima m1, m2 into mn1, mn2; mb1, mb2 are what exp2
 * subtracts: the maxima, or 0 for a row with no key yet (max -inf), so that exp2 gives 0, not NaN. */
template <int n>
static __device__ __forceinline__ void tile_maxima(const float *s, float scale_log2, float m1, float m2, float &mn1,
                                                   float &mn2, float &mb1, float &mb2) {
    float mx1 = -INFINITY, mx2 = -INFINITY;
#pragma unroll
    for (int nb = 0; nb < n / 4; nb++) {
        mx1 = fmaxf(mx1, fmaxf(s[4 * nb], s[4 * nb + 1]));
        mx2 = fmaxf(mx2, fmaxf(s[4 * nb + 2], s[4 * nb + 3]));
    }
    mx1 = quad_max(mx1);
    mx2 = quad_max(mx2);
    mn1 = fmaxf(m1, mx1 * scale_log2), mn2 = fmaxf(m2, mx2 * scale_log2);
    mb1 = mn1 == -INFINITY ? 0.0f : mn1, mb2 = mn2 == -INFINITY ? 0.0f : mn2;
}

/* This lane's A fragments of query rows R1 and R2 (row R: token R / group, head g * group + R %
 * group of q), KT steps of 16 dims; zero past `rows` and past hd. */
template <int KT>
static __device__ __forceinline__ void load_q_frags(uint32_t (&qf)[KT][4], const __nv_bfloat16 *q, int q_stride,
                                                    int g, int group, int rows, int hd, int R1, int R2, int tg) {
#pragma unroll
    for (int kk = 0; kk < KT; kk++)
#pragma unroll
        for (int j = 0; j < 4; j++) {
            int R = j & 1 ? R2 : R1, col = kk * 16 + 2 * tg + (j & 2 ? 8 : 0);
            uint32_t val = 0;
            if (R < rows && col < hd)
                val = *(const uint32_t *)(q + (size_t)(R / group) * q_stride + (size_t)(g * group + R % group) * hd + col);
            qf[kk][j] = val;
        }
}

/* How many keys query row R attends: all n_kv, or causally up to its own position
 * (causal_pos0 + R / group); 0 for a row past `rows`. */
static __device__ __forceinline__ int row_key_limit(int R, int rows, int n_kv, int group, int causal_pos0) {
    return R >= rows ? 0 : causal_pos0 < 0 ? n_kv : min(n_kv, causal_pos0 + R / group + 1);
}

#endif
