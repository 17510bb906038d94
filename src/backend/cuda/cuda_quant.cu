/* Packed int4 Linears on the GPU (cuda_quant.h): the register-dequantizing GEMV for decoding, the
 * dequantize-to-BF16 + GEMM path for many rows, and host helpers for the GPU tests. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include "backend/cuda/cuda_quant.h"
extern "C" {
#include "util/error.h"
}

enum { GEMV_MAX_ROWS = 8, WARPS = 4 };

extern "C" int qvl_cuda_qlin_upload_rows(qvl_cuda_qlin *d, int n0, const qvl_qweight *w) {
    if (w->kind != d->kind || w->K != d->K || w->group != d->group || n0 < 0 || n0 + w->N > d->N)
        return qvl_errorf("%s: int4 [%d, %d] group %d does not fit the fused GPU weight [%d, %d] group %d", w->name, w->N,
                          w->K, w->group, d->N, d->K, d->group);
    if (n0 > 0 && w->round != d->round)
        return qvl_errorf("%s: its scales' dtype differs from the other parts of the fused GPU weight", w->name);
    d->round = w->round;
    if (d->kind == QVL_QW_FP8) {
        const size_t kb = (size_t)d->K / d->group, nb = ((size_t)w->N + w->block_n - 1) / w->block_n;
        if (w->block_n != d->block_n || n0 % d->block_n)
            return qvl_errorf("%s: FP8 blocks of %d rows do not line up in the fused GPU weight", w->name, w->block_n);
        if (cudaMemcpy((char *)d->q + (size_t)n0 * d->K, w->q, (size_t)w->N * d->K, cudaMemcpyHostToDevice) != cudaSuccess ||
            cudaMemcpy(d->scale + (size_t)(n0 / d->block_n) * kb, w->scale, nb * kb * sizeof(float), cudaMemcpyHostToDevice) !=
                cudaSuccess)
            return qvl_errorf("%s: copying the FP8 weight to the GPU failed", w->name);
        return 0;
    }
    const size_t G = (size_t)d->K / d->group, qrow = (size_t)d->K / 2;
    /* qvl_qweight's bytes (low nibble = even k) read as little-endian words are this layout */
    if (cudaMemcpy((char *)d->q + n0 * qrow, w->q, (size_t)w->N * qrow, cudaMemcpyHostToDevice) != cudaSuccess ||
        cudaMemcpy(d->zero + n0 * G, w->zero, (size_t)w->N * G, cudaMemcpyHostToDevice) != cudaSuccess ||
        cudaMemcpy(d->scale + n0 * G, w->scale, (size_t)w->N * G * sizeof(float), cudaMemcpyHostToDevice) != cudaSuccess)
        return qvl_errorf("%s: copying the packed weight to the GPU failed", w->name);
    return 0;
}

extern "C" int qvl_cuda_qlin_upload(qvl_cuda_qlin *d, const qvl_config *cfg, const qvl_safetensors *st,
                                    const qvl_tensor_spec *parts, int n) {
    int n0 = 0;
    for (int i = 0; i < n; i++) {
        qvl_qweight *w = qvl_qweight_load(cfg, st, &parts[i]);
        int rc = w ? qvl_cuda_qlin_upload_rows(d, n0, w) : -1;
        n0 += (int)parts[i].shape[0];
        qvl_qweight_free(w);
        if (rc) return -1;
    }
    return 0;
}

extern "C" int qvl_cuda_qlin_upload_bf16(const qvl_config *cfg, const qvl_safetensors *st, const qvl_tensor_spec *s,
                                         void *dst) {
    qvl_qweight *w = qvl_qweight_load(cfg, st, s);
    if (!w) return -1;
    enum { ROWS = 64 };
    float *f = (float *)malloc((size_t)ROWS * w->K * sizeof(float));
    bf16 *h = (bf16 *)malloc((size_t)ROWS * w->K * sizeof(bf16));
    int rc = f && h ? 0 : qvl_errorf("%s: out of memory", w->name);
    for (int n0 = 0; !rc && n0 < w->N; n0 += ROWS) {
        const int n1 = n0 + ROWS < w->N ? n0 + ROWS : w->N;
        const size_t cnt = (size_t)(n1 - n0) * w->K;
        qvl_qweight_dequant_rows(w, n0, n1, f);
        for (size_t i = 0; i < cnt; i++) h[i] = __float2bfloat16_rn(f[i]);
        if (cudaMemcpy((bf16 *)dst + (size_t)n0 * w->K, h, cnt * sizeof(bf16), cudaMemcpyHostToDevice) != cudaSuccess)
            rc = qvl_errorf("%s: copying the dequantized weight to the GPU failed", w->name);
    }
    free(f);
    free(h);
    qvl_qweight_free(w);
    return rc;
}

/* (u - z) * s rounded to the reference dtype. */
__device__ __forceinline__ float deq(uint32_t u, float z, float s, int round) {
    float v = ((float)u - z) * s;
    if (round == QVL_QW_ROUND_BF16) return __bfloat162float(__float2bfloat16_rn(v));
    if (round == QVL_QW_ROUND_F16) return __half2float(__float2half_rn(v));
    return v;
}

/* One warp per output row n; lane l takes the 32-value chunks l, l + 32, ...; each chunk lies in one
 * group (group % 32 == 0). */
template <int MR>
__global__ void __launch_bounds__(WARPS * 32) k_q4_gemv(bf16 *__restrict__ y, int ldy, const bf16 *__restrict__ x, int ldx,
                                                       const uint32_t *__restrict__ q, const uint8_t *__restrict__ zero,
                                                       const float *__restrict__ scale, const bf16 *__restrict__ bias,
                                                       int N, int K, int group, int round) {
    const int n = blockIdx.x * WARPS + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (n >= N) return;
    const int G = K / group, chunks = K / 32;
    const uint32_t *qr = q + (size_t)n * (K / 8);
    float acc[MR];
#pragma unroll
    for (int m = 0; m < MR; m++) acc[m] = 0.f;
    for (int c = lane; c < chunks; c += 32) {
        const uint4 wv = __ldg(reinterpret_cast<const uint4 *>(qr) + c);
        const int gi = c * 32 / group;
        const float s = __ldg(scale + (size_t)n * G + gi), z = (float)__ldg(zero + (size_t)n * G + gi);
        const uint32_t words[4] = {wv.x, wv.y, wv.z, wv.w};
        float wf[32];
#pragma unroll
        for (int j = 0; j < 4; j++)
#pragma unroll
            for (int i = 0; i < 8; i++) wf[8 * j + i] = deq((words[j] >> (4 * i)) & 15u, z, s, round);
#pragma unroll
        for (int m = 0; m < MR; m++) {
            const uint4 *xr = reinterpret_cast<const uint4 *>(x + (size_t)m * ldx + c * 32);
#pragma unroll
            for (int j = 0; j < 4; j++) {
                uint4 xv = __ldg(xr + j);
                const __nv_bfloat162 *h = reinterpret_cast<const __nv_bfloat162 *>(&xv);
#pragma unroll
                for (int i = 0; i < 4; i++) {
                    float2 f = __bfloat1622float2(h[i]);
                    acc[m] = fmaf(wf[8 * j + 2 * i], f.x, acc[m]);
                    acc[m] = fmaf(wf[8 * j + 2 * i + 1], f.y, acc[m]);
                }
            }
        }
    }
#pragma unroll
    for (int m = 0; m < MR; m++) {
        float v = acc[m];
        for (int o = 16; o; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
        if (lane == 0) y[(size_t)m * ldy + n] = __float2bfloat16_rn(v + (bias ? __bfloat162float(bias[n]) : 0.f));
    }
}

/* out[n][k] = BF16 of the dequantized weight, one thread per packed word. */
__global__ void k_q4_dequant(bf16 *__restrict__ out, const uint32_t *__restrict__ q, const uint8_t *__restrict__ zero,
                             const float *__restrict__ scale, int N, int K, int group, int round) {
    const size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x, words = (size_t)N * K / 8;
    if (i >= words) return;
    const int n = (int)(i / (K / 8)), k0 = (int)(i % (K / 8)) * 8, G = K / group, gi = k0 / group;
    const float s = scale[(size_t)n * G + gi], z = (float)zero[(size_t)n * G + gi];
    const uint32_t w = q[i];
    __align__(16) bf16 o[8];
#pragma unroll
    for (int j = 0; j < 8; j++) o[j] = __float2bfloat16_rn(deq((w >> (4 * j)) & 15u, z, s, round));
    *reinterpret_cast<uint4 *>(out + (size_t)n * K + k0) = *reinterpret_cast<const uint4 *>(o);
}

template <int MR>
static void launch_gemv(cudaStream_t st, bf16 *y, int ldy, const bf16 *x, int ldx, const qvl_cuda_qlin *w, const bf16 *b) {
    k_q4_gemv<MR><<<(w->N + WARPS - 1) / WARPS, WARPS * 32, 0, st>>>(y, ldy, x, ldx, w->q, w->zero, w->scale, b, w->N, w->K,
                                                                     w->group, w->round);
}

/* Rows per dequantized slice: all of them, or an even split in multiples of 128 within the scratch. */
static int slice_rows(const qvl_cuda_qlin *d) {
    if ((size_t)d->N * d->K <= (size_t)QVL_CUDA_QLIN_SCRATCH) return d->N;
    /* (multiples of 128 rows: whole FP8 blocks for the usual 128-row blocks) */
    const int most = (int)((size_t)QVL_CUDA_QLIN_SCRATCH / d->K) & ~127;
    const int slices = (d->N + most - 1) / most, rows = (d->N + slices - 1) / slices;
    return (rows + 127) & ~127;
}

static void dequant_rows(cudaStream_t st, bf16 *out, const qvl_cuda_qlin *d, int n0, int rows) {
    const size_t G = (size_t)d->K / d->group, words = (size_t)rows * d->K / 8;
    k_q4_dequant<<<(unsigned)((words + 255) / 256), 256, 0, st>>>(out, d->q + (size_t)n0 * (d->K / 8), d->zero + n0 * G,
                                                                  d->scale + n0 * G, rows, d->K, d->group, d->round);
}

/* ---- FP8 ---- */
__device__ __forceinline__ float e4m3_to_f(uint8_t c) {
    return __half2float(__half(__nv_cvt_fp8_to_halfraw((__nv_fp8_storage_t)c, __NV_E4M3)));
}

/* Row m, group g of x: s = amax / 448; codes e4m3(x / s) (round to nearest even; 0 where s is 0) into
 * codes[m][K] and s into xs[m][G], or x rewritten in place as bf16(e4m3 * s). One warp per group. */
__global__ void k_fp8_act_quant(bf16 *x, int ldx, int K, int bk, uint8_t *codes, float *xs, int in_place) {
    const int m = blockIdx.y, gi = blockIdx.x, lane = threadIdx.x, G = K / bk;
    bf16 *xr = x + (size_t)m * ldx + (size_t)gi * bk;
    float amax = 0.f;
    for (int k = lane; k < bk; k += 32) amax = fmaxf(amax, fabsf(__bfloat162float(xr[k])));
    for (int o = 16; o; o >>= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, o));
    const float sc = amax / 448.f;
    for (int k = lane; k < bk; k += 32) {
        const uint8_t c = sc > 0.f ? (uint8_t)__nv_cvt_float_to_fp8(__bfloat162float(xr[k]) / sc, __NV_SATFINITE, __NV_E4M3) : 0;
        if (in_place)
            xr[k] = __float2bfloat16_rn(e4m3_to_f(c) * sc);
        else
            codes[(size_t)m * K + (size_t)gi * bk + k] = c;
    }
    if (!in_place && lane == 0) xs[(size_t)m * G + gi] = sc;
}

/* One warp per output row n; lane l takes the 16-code chunks l, l + 32, ... (each inside one block). */
template <int MR>
__global__ void __launch_bounds__(WARPS * 32) k_fp8_gemv(bf16 *__restrict__ y, int ldy, const uint8_t *__restrict__ xc,
                                                        const float *__restrict__ xs, const uint8_t *__restrict__ q,
                                                        const float *__restrict__ ws, const bf16 *__restrict__ bias, int N,
                                                        int K, int bk, int bn) {
    const int n = blockIdx.x * WARPS + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (n >= N) return;
    const int G = K / bk, chunks = K / 16;
    const uint8_t *qr = q + (size_t)n * K;
    float acc[MR];
#pragma unroll
    for (int m = 0; m < MR; m++) acc[m] = 0.f;
    for (int c = lane; c < chunks; c += 32) {
        const uint4 wv = __ldg(reinterpret_cast<const uint4 *>(qr) + c);
        const uint8_t *wb = reinterpret_cast<const uint8_t *>(&wv);
        const int gi = c * 16 / bk;
        const float sw = __ldg(ws + (size_t)(n / bn) * G + gi);
        float wf[16];
#pragma unroll
        for (int i = 0; i < 16; i++) wf[i] = e4m3_to_f(wb[i]);
#pragma unroll
        for (int m = 0; m < MR; m++) {
            const uint4 xv = __ldg(reinterpret_cast<const uint4 *>(xc + (size_t)m * K) + c);
            const uint8_t *xb = reinterpret_cast<const uint8_t *>(&xv);
            float part = 0.f;
#pragma unroll
            for (int i = 0; i < 16; i++) part = fmaf(wf[i], e4m3_to_f(xb[i]), part);
            acc[m] = fmaf(part, sw * __ldg(xs + (size_t)m * G + gi), acc[m]);
        }
    }
#pragma unroll
    for (int m = 0; m < MR; m++) {
        float v = acc[m];
        for (int o = 16; o; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
        if (lane == 0) y[(size_t)m * ldy + n] = __float2bfloat16_rn(v + (bias ? __bfloat162float(bias[n]) : 0.f));
    }
}

/* out[n][k] = bf16(code * s_w) for rows n0 .. n0 + rows - 1 (n0 a multiple of bn). */
__global__ void k_fp8_dequant(bf16 *__restrict__ out, const uint8_t *__restrict__ q, const float *__restrict__ ws, int n0,
                              int rows, int K, int bk, int bn) {
    const size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x, vecs = (size_t)rows * K / 8;
    if (i >= vecs) return;
    const int r = (int)(i / (K / 8)), k0 = (int)(i % (K / 8)) * 8, n = n0 + r;
    const float s = ws[(size_t)(n / bn) * (K / bk) + k0 / bk];
    const uint2 v = *reinterpret_cast<const uint2 *>(q + (size_t)n * K + k0);
    const uint8_t *b = reinterpret_cast<const uint8_t *>(&v);
    __align__(16) bf16 o[8];
#pragma unroll
    for (int j = 0; j < 8; j++) o[j] = __float2bfloat16_rn(e4m3_to_f(b[j]) * s);
    *reinterpret_cast<uint4 *>(out + (size_t)r * K + k0) = *reinterpret_cast<const uint4 *>(o);
}

template <int MR>
static void launch_fp8_gemv(cudaStream_t st, bf16 *y, int ldy, const uint8_t *xc, const float *xs, const qvl_cuda_qlin *d,
                            const bf16 *b) {
    k_fp8_gemv<MR><<<(d->N + WARPS - 1) / WARPS, WARPS * 32, 0, st>>>(y, ldy, xc, xs, (const uint8_t *)d->q, d->scale, b,
                                                                      d->N, d->K, d->group, d->block_n);
}

/* FP8 rows: codes into the scratch + the block GEMV (M <= 8), or in-place fake quantization + BF16 GEMM. */
static int fp8_run(qvl_gemm *g, cudaStream_t st, bf16 *y, int ldy, const bf16 *x, int ldx, const qvl_cuda_qlin *d,
                   const bf16 *b, int M, bf16 *scratch, int force_gemm) {
    if (!scratch || ldx % 8) return -1;
    const dim3 grid(d->K / d->group, M);
    if (M <= GEMV_MAX_ROWS && !force_gemm) {
        uint8_t *xc = (uint8_t *)scratch;
        float *xs = (float *)(void *)(xc + (((size_t)GEMV_MAX_ROWS * d->K + 15) & ~(size_t)15));
        k_fp8_act_quant<<<grid, 32, 0, st>>>((bf16 *)x, ldx, d->K, d->group, xc, xs, 0);
        switch (M) {
        case 1: launch_fp8_gemv<1>(st, y, ldy, xc, xs, d, b); break;
        case 2: launch_fp8_gemv<2>(st, y, ldy, xc, xs, d, b); break;
        case 3: launch_fp8_gemv<3>(st, y, ldy, xc, xs, d, b); break;
        case 4: launch_fp8_gemv<4>(st, y, ldy, xc, xs, d, b); break;
        case 5: launch_fp8_gemv<5>(st, y, ldy, xc, xs, d, b); break;
        case 6: launch_fp8_gemv<6>(st, y, ldy, xc, xs, d, b); break;
        case 7: launch_fp8_gemv<7>(st, y, ldy, xc, xs, d, b); break;
        default: launch_fp8_gemv<8>(st, y, ldy, xc, xs, d, b); break;
        }
        return cudaPeekAtLastError() == cudaSuccess ? 0 : -1;
    }
    k_fp8_act_quant<<<grid, 32, 0, st>>>((bf16 *)x, ldx, d->K, d->group, NULL, NULL, 1);
    const int rows = slice_rows(d);
    for (int n0 = 0; n0 < d->N; n0 += rows) {
        const int cnt = d->N - n0 < rows ? d->N - n0 : rows;
        const size_t vecs = (size_t)cnt * d->K / 8;
        k_fp8_dequant<<<(unsigned)((vecs + 255) / 256), 256, 0, st>>>(scratch, (const uint8_t *)d->q, d->scale, n0, cnt, d->K,
                                                                    d->group, d->block_n);
        if (cudaPeekAtLastError() != cudaSuccess) return -1;
        if (qvl_gemm_run(g, st, y + n0, ldy, x, ldx, scratch, b ? b + n0 : NULL, M, d->K, cnt)) return -1;
    }
    return 0;
}

int qvl_cuda_qlin_run(qvl_gemm *g, cudaStream_t st, bf16 *y, int ldy, const bf16 *x, int ldx, const qvl_cuda_qlin *d,
                      const bf16 *b, int M, bf16 *scratch, int force_gemm) {
    if (d->kind == QVL_QW_FP8) return fp8_run(g, st, y, ldy, x, ldx, d, b, M, scratch, force_gemm);
    /* the GEMV reads x as 16-byte vectors */
    int aligned = ((uintptr_t)x % 16 == 0) && (ldx % 8 == 0);
    if (M <= GEMV_MAX_ROWS && aligned && !force_gemm) {
        switch (M) {
        case 1: launch_gemv<1>(st, y, ldy, x, ldx, d, b); break;
        case 2: launch_gemv<2>(st, y, ldy, x, ldx, d, b); break;
        case 3: launch_gemv<3>(st, y, ldy, x, ldx, d, b); break;
        case 4: launch_gemv<4>(st, y, ldy, x, ldx, d, b); break;
        case 5: launch_gemv<5>(st, y, ldy, x, ldx, d, b); break;
        case 6: launch_gemv<6>(st, y, ldy, x, ldx, d, b); break;
        case 7: launch_gemv<7>(st, y, ldy, x, ldx, d, b); break;
        default: launch_gemv<8>(st, y, ldy, x, ldx, d, b); break;
        }
        return cudaPeekAtLastError() == cudaSuccess ? 0 : -1;
    }
    if (!scratch) return -1;
    const int rows = slice_rows(d);
    for (int n0 = 0; n0 < d->N; n0 += rows) {
        const int cnt = d->N - n0 < rows ? d->N - n0 : rows;
        dequant_rows(st, scratch, d, n0, cnt);
        if (cudaPeekAtLastError() != cudaSuccess) return -1;
        if (qvl_gemm_run(g, st, y + n0, ldy, x, ldx, scratch, b ? b + n0 : NULL, M, d->K, cnt)) return -1;
    }
    return 0;
}

int qvl_cuda_qlin_prepare(qvl_gemm *g, cudaStream_t st, bf16 *y, int ldy, const bf16 *x, int ldx, const qvl_cuda_qlin *d,
                          const bf16 *b, int M_max, bf16 *scratch) {
    const int rows = slice_rows(d);
    for (int n0 = 0; n0 < d->N; n0 += rows) {
        const int cnt = d->N - n0 < rows ? d->N - n0 : rows;
        if ((n0 == 0 || cnt != rows) && qvl_gemm_prepare(g, st, y + n0, ldy, x, ldx, scratch, b ? b + n0 : NULL, M_max, d->K, cnt, 0))
            return -1;
    }
    return 0;
}

/* ---- host helpers for the GPU tests --------------------------------------------------------------- */

enum { BENCH_WS = 32 << 20 };

#define CK(x) \
    if ((x) != cudaSuccess) { rc = qvl_errorf("cuda_quant: %s failed: %s", #x, cudaGetErrorString(cudaGetLastError())); goto done; }

extern "C" int qvl_cuda_qlin_run_host(const qvl_qweight *w, const uint16_t *xh, int M, int force_gemm, float *yh, int reps,
                                      double *ms) {
    int rc = 0;
    void *mem = NULL, *ws = NULL;
    bf16 *x = NULL, *y = NULL, *scratch = NULL;
    qvl_gemm *g = NULL;
    cudaStream_t st = NULL;
    cudaEvent_t e0 = NULL, e1 = NULL;
    qvl_cuda_qlin d;
    uint16_t *yb = (uint16_t *)malloc((size_t)M * w->N * 2);
    if (!yb) return qvl_errorf("cuda_quant: out of memory");
    if (!qvl_cuda_qlin_plan_loaded(w, &d)) {
        free(yb);
        return qvl_errorf("%s: int4 shape [%d, %d] group %d: the GPU path needs multiples of 32", w->name, w->N, w->K, w->group);
    }
    CK(cudaMalloc(&mem, qvl_cuda_qlin_bytes(&d)));
    qvl_cuda_qlin_place(&d, mem);
    if (qvl_cuda_qlin_upload_rows(&d, 0, w)) {
        rc = -1;
        goto done;
    }
    CK(cudaMalloc(&x, (size_t)M * w->K * 2));
    CK(cudaMalloc(&y, (size_t)M * w->N * 2));
    CK(cudaMalloc(&ws, BENCH_WS));
    CK(cudaStreamCreate(&st));
    CK(cudaEventCreate(&e0));
    CK(cudaEventCreate(&e1));
    CK(cudaMalloc(&scratch, qvl_cuda_qlin_scratch(&d) * 2));
    if (!(g = qvl_gemm_new(ws, BENCH_WS, 0))) {
        rc = qvl_errorf("cuda_quant: qvl_gemm_new failed");
        goto done;
    }
    CK(cudaMemcpy(x, xh, (size_t)M * w->K * 2, cudaMemcpyHostToDevice));
    for (int r = 0; r <= reps && !rc; r++) {
        if (r == 1) CK(cudaEventRecord(e0, st));
        rc = qvl_cuda_qlin_run(g, st, y, d.N, x, d.K, &d, NULL, M, scratch, force_gemm);
    }
    if (rc) {
        qvl_errorf("cuda_quant: the product failed");
        goto done;
    }
    CK(cudaEventRecord(e1, st));
    CK(cudaEventSynchronize(e1));
    if (ms) *ms = 0;
    if (reps > 0) { /* e0 is recorded only when there are timed runs */
        float t = 0;
        CK(cudaEventElapsedTime(&t, e0, e1));
        if (ms) *ms = t / reps;
    }
    CK(cudaMemcpy(yb, y, (size_t)M * w->N * 2, cudaMemcpyDeviceToHost));
    for (size_t i = 0; i < (size_t)M * w->N; i++) {
        uint32_t u = (uint32_t)yb[i] << 16;
        memcpy(&yh[i], &u, 4);
    }
done:
    if (g) qvl_gemm_free(g);
    if (e0) cudaEventDestroy(e0);
    if (e1) cudaEventDestroy(e1);
    if (st) cudaStreamDestroy(st);
    cudaFree(mem);
    cudaFree(ws);
    cudaFree(x);
    cudaFree(y);
    cudaFree(scratch);
    free(yb);
    return rc;
}

__global__ void k_fill_random(bf16 *w, size_t n, uint32_t seed) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    uint32_t h = (uint32_t)i * 2654435761u ^ seed;
    h ^= h >> 15, h *= 2246822519u, h ^= h >> 13;
    w[i] = __float2bfloat16_rn(((float)(h & 0xffff) / 65536.f - 0.5f) * 0.05f);
}

extern "C" int qvl_cuda_bf16_gemv_ms(int N, int K, int reps, double *ms) {
    int rc = 0;
    bf16 *w = NULL, *x = NULL, *y = NULL;
    void *ws = NULL;
    qvl_gemm *g = NULL;
    cudaStream_t st = NULL;
    cudaEvent_t e0 = NULL, e1 = NULL;
    CK(cudaMalloc(&w, (size_t)N * K * 2));
    CK(cudaMalloc(&x, (size_t)K * 2));
    CK(cudaMalloc(&y, (size_t)N * 2));
    CK(cudaMalloc(&ws, BENCH_WS));
    CK(cudaStreamCreate(&st));
    CK(cudaEventCreate(&e0));
    CK(cudaEventCreate(&e1));
    k_fill_random<<<(unsigned)(((size_t)N * K + 255) / 256), 256, 0, st>>>(w, (size_t)N * K, 1u);
    k_fill_random<<<(K + 255) / 256, 256, 0, st>>>(x, (size_t)K, 2u);
    if (!(g = qvl_gemm_new(ws, BENCH_WS, 0))) {
        rc = qvl_errorf("cuda_quant: qvl_gemm_new failed");
        goto done;
    }
    for (int r = 0; r <= reps && !rc; r++) {
        if (r == 1) CK(cudaEventRecord(e0, st));
        rc = qvl_gemv_ok(x, w, K) ? qvl_gemv(g, st, y, x, w, K, N, QVL_GEMV_PLAIN, NULL, 0.f, 0)
                                  : qvl_gemm_run(g, st, y, N, x, K, w, NULL, 1, K, N);
    }
    CK(cudaEventRecord(e1, st));
    CK(cudaEventSynchronize(e1));
    {
        float t = 0;
        cudaEventElapsedTime(&t, e0, e1);
        *ms = t / reps;
    }
done:
    if (g) qvl_gemm_free(g);
    if (e0) cudaEventDestroy(e0);
    if (e1) cudaEventDestroy(e1);
    if (st) cudaStreamDestroy(st);
    cudaFree(w);
    cudaFree(x);
    cudaFree(y);
    cudaFree(ws);
    return rc;
}
