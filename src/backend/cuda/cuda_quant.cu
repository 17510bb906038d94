/* Packed int4 Linears on the GPU (cuda_quant.h): the register-dequantizing GEMV for decoding, the
 * dequantize-to-BF16 + GEMM path for many rows, and host helpers for the GPU tests. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cuda_fp16.h>

#include "backend/cuda/cuda_quant.h"
extern "C" {
#include "util/error.h"
}

enum { GEMV_MAX_ROWS = 8, WARPS = 4 };

extern "C" int qvl_cuda_q4_supported(const qvl_qweight *w) {
    return w && w->kind == QVL_QW_INT4 && w->K % 32 == 0 && w->group % 32 == 0;
}

static size_t up16(size_t b) { return (b + 15) & ~(size_t)15; }

extern "C" size_t qvl_cuda_q4_bytes(const qvl_qweight *w) {
    size_t G = (size_t)w->N * (w->K / w->group);
    return up16((size_t)w->N * w->K / 2) + up16(G) + up16(G * sizeof(float));
}

extern "C" int qvl_cuda_q4_upload(const qvl_qweight *w, void *mem, qvl_cuda_q4 *d) {
    if (!qvl_cuda_q4_supported(w)) return qvl_errorf("%s: int4 shape [%d, %d] group %d: the GPU path needs multiples of 32", w->name, w->N, w->K, w->group);
    size_t G = (size_t)w->N * (w->K / w->group), qb = (size_t)w->N * w->K / 2;
    char *p = (char *)mem;
    d->N = w->N, d->K = w->K, d->group = w->group, d->round = w->round;
    d->q = (uint32_t *)p;
    d->zero = (uint8_t *)(p + up16(qb));
    d->scale = (float *)(p + up16(qb) + up16(G));
    /* qvl_qweight's bytes (low nibble = even k) read as little-endian words are this layout */
    if (cudaMemcpy(d->q, w->q, qb, cudaMemcpyHostToDevice) != cudaSuccess ||
        cudaMemcpy(d->zero, w->zero, G, cudaMemcpyHostToDevice) != cudaSuccess ||
        cudaMemcpy(d->scale, w->scale, G * sizeof(float), cudaMemcpyHostToDevice) != cudaSuccess)
        return qvl_errorf("%s: copying the packed weight to the GPU failed", w->name);
    return 0;
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
static void launch_gemv(cudaStream_t st, bf16 *y, int ldy, const bf16 *x, int ldx, const qvl_cuda_q4 *w, const bf16 *b) {
    k_q4_gemv<MR><<<(w->N + WARPS - 1) / WARPS, WARPS * 32, 0, st>>>(y, ldy, x, ldx, w->q, w->zero, w->scale, b, w->N, w->K,
                                                                     w->group, w->round);
}

int qvl_cuda_q4_gemm(qvl_gemm *g, cudaStream_t st, bf16 *y, int ldy, const bf16 *x, int ldx, const qvl_cuda_q4 *w,
                     const bf16 *b, int M, bf16 *scratch) {
    /* the GEMV reads x as 16-byte vectors */
    int aligned = ((uintptr_t)x % 16 == 0) && (ldx % 8 == 0);
    if (M <= GEMV_MAX_ROWS && aligned) {
        switch (M) {
        case 1: launch_gemv<1>(st, y, ldy, x, ldx, w, b); break;
        case 2: launch_gemv<2>(st, y, ldy, x, ldx, w, b); break;
        case 3: launch_gemv<3>(st, y, ldy, x, ldx, w, b); break;
        case 4: launch_gemv<4>(st, y, ldy, x, ldx, w, b); break;
        case 5: launch_gemv<5>(st, y, ldy, x, ldx, w, b); break;
        case 6: launch_gemv<6>(st, y, ldy, x, ldx, w, b); break;
        case 7: launch_gemv<7>(st, y, ldy, x, ldx, w, b); break;
        default: launch_gemv<8>(st, y, ldy, x, ldx, w, b); break;
        }
        return cudaPeekAtLastError() == cudaSuccess ? 0 : -1;
    }
    if (!scratch) return -1;
    size_t words = (size_t)w->N * w->K / 8;
    k_q4_dequant<<<(unsigned)((words + 255) / 256), 256, 0, st>>>(scratch, w->q, w->zero, w->scale, w->N, w->K, w->group,
                                                                  w->round);
    if (cudaPeekAtLastError() != cudaSuccess) return -1;
    return qvl_gemm_run(g, st, y, ldy, x, ldx, scratch, b, M, w->K, w->N);
}

/* ---- host helpers for the GPU tests --------------------------------------------------------------- */

enum { BENCH_WS = 32 << 20 };

#define CK(x) \
    if ((x) != cudaSuccess) { rc = qvl_errorf("cuda_quant: %s failed: %s", #x, cudaGetErrorString(cudaGetLastError())); goto done; }

extern "C" int qvl_cuda_q4_run_host(const qvl_qweight *w, const uint16_t *xh, int M, int force_gemm, float *yh, int reps,
                                    double *ms) {
    int rc = 0;
    void *mem = NULL, *ws = NULL;
    bf16 *x = NULL, *y = NULL, *scratch = NULL;
    qvl_gemm *g = NULL;
    cudaStream_t st = NULL;
    cudaEvent_t e0 = NULL, e1 = NULL;
    qvl_cuda_q4 d;
    uint16_t *yb = (uint16_t *)malloc((size_t)M * w->N * 2);
    if (!yb) return qvl_errorf("cuda_quant: out of memory");
    CK(cudaMalloc(&mem, qvl_cuda_q4_bytes(w)));
    if (qvl_cuda_q4_upload(w, mem, &d)) {
        rc = -1;
        goto done;
    }
    CK(cudaMalloc(&x, (size_t)M * w->K * 2));
    CK(cudaMalloc(&y, (size_t)M * w->N * 2));
    CK(cudaMalloc(&ws, BENCH_WS));
    CK(cudaStreamCreate(&st));
    CK(cudaEventCreate(&e0));
    CK(cudaEventCreate(&e1));
    if (force_gemm || M > GEMV_MAX_ROWS) CK(cudaMalloc(&scratch, (size_t)w->N * w->K * 2));
    if (!(g = qvl_gemm_new(ws, BENCH_WS, 0))) {
        rc = qvl_errorf("cuda_quant: qvl_gemm_new failed");
        goto done;
    }
    CK(cudaMemcpy(x, xh, (size_t)M * w->K * 2, cudaMemcpyHostToDevice));
    {
        /* force_gemm: the dequantize + GEMM path even for few rows */
        int rows_path = force_gemm && M <= GEMV_MAX_ROWS;
        for (int r = 0; r <= reps && !rc; r++) {
            if (r == 1) CK(cudaEventRecord(e0, st));
            if (rows_path) {
                size_t words = (size_t)d.N * d.K / 8;
                k_q4_dequant<<<(unsigned)((words + 255) / 256), 256, 0, st>>>(scratch, d.q, d.zero, d.scale, d.N, d.K, d.group,
                                                                              d.round);
                rc = qvl_gemm_run(g, st, y, d.N, x, d.K, scratch, NULL, M, d.K, d.N);
            } else
                rc = qvl_cuda_q4_gemm(g, st, y, d.N, x, d.K, &d, NULL, M, scratch);
        }
        if (rc) {
            qvl_errorf("cuda_quant: the product failed");
            goto done;
        }
        CK(cudaEventRecord(e1, st));
        CK(cudaEventSynchronize(e1));
        float t = 0;
        cudaEventElapsedTime(&t, e0, e1);
        if (ms) *ms = reps > 0 ? t / reps : 0;
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
