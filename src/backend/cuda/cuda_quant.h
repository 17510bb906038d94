/* Packed int4 Linears on the GPU (model/quant.h's qvl_qweight, int4 kinds): the weights stay packed
 * in device memory ([N][K/8] words, element k in bits 4*(k%8), 0..15; zero points [N][K/g] bytes;
 * float scales [N][K/g]) and are dequantized on the fly, bit for bit the reference dequantization
 * ((u - z) * s rounded to the scale's dtype):
 *   M <= 8 rows (decoding): one warp per output row streams its packed row, dequantizes in
 *     registers and accumulates in float32 against the BF16 activations;
 *   more rows (prefill, vision): the weight is dequantized to a BF16 scratch and the BF16 GEMM runs
 *     (for AutoAWQ, whose reference dtype is fp16, this rounds the fp16 value once more to BF16).
 * C-callable; the launcher for the CUDA model is declared under __CUDACC__. */
#ifndef QVL_BACKEND_CUDA_QUANT_H
#define QVL_BACKEND_CUDA_QUANT_H
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif
#include "model/quant.h"

typedef struct {
    int N, K, group, round;
    uint32_t *q;     /* device [N][K/8] */
    uint8_t *zero;   /* device [N][K/group] */
    float *scale;    /* device [N][K/group] */
} qvl_cuda_q4;

/* Whether the GPU path takes w (int4, K and group multiples of 32). */
int qvl_cuda_q4_supported(const qvl_qweight *w);
/* Device bytes of w's packed form. */
size_t qvl_cuda_q4_bytes(const qvl_qweight *w);
/* Copies w into dev (device memory at `mem`, qvl_cuda_q4_bytes(w) bytes, 16-byte aligned). 0 or -1 + qvl_error. */
int qvl_cuda_q4_upload(const qvl_qweight *w, void *mem, qvl_cuda_q4 *dev);

/* Test and benchmark helpers (host memory in and out; they allocate and free what they need):
 * y[M][N] (float, the BF16 results) = x[M][K] (BF16 bits) @ deq(w)^T, by the path M selects (or the
 * scratch + GEMM path when force_gemm). ms: mean milliseconds of one product over reps timed runs. */
int qvl_cuda_q4_run_host(const qvl_qweight *w, const uint16_t *x, int M, int force_gemm, float *y, int reps, double *ms);
/* The BF16 GEMV (cuda_gemm.cu's qvl_gemv, M = 1) over a random [N, K] BF16 weight, for comparison:
 * mean milliseconds over reps runs. */
int qvl_cuda_bf16_gemv_ms(int N, int K, int reps, double *ms);

#ifdef __cplusplus
}
#endif

#ifdef __CUDACC__
#include "backend/cuda/cuda_ops.h"
/* y[M, N] = x[M, K] @ deq(w)^T (+ b), BF16 in and out. scratch: N*K BF16 for M > 8 (may be NULL when
 * M <= 8). */
int qvl_cuda_q4_gemm(qvl_gemm *g, cudaStream_t st, bf16 *y, int ldy, const bf16 *x, int ldx, const qvl_cuda_q4 *w,
                     const bf16 *b, int M, bf16 *scratch);
#endif

#endif
