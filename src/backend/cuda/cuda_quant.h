/* Packed Linears on the GPU (model/quant.h's qvl_qweight). A Linear of one or several checkpoint
 * parts fused along N (q|k|v, gate|up) lives in device memory either as BF16 [N][K] (16-bit in the
 * checkpoint, or packed in a form these kernels do not take: dequantized at upload) or packed
 * (qvl_cuda_qlin), and is dequantized on the fly, bit for bit the reference dequantization:
 *   int4: q [N][K/8] words (element k in bits 4*(k%8) of word k/8, 0..15), zeros [N][K/g] bytes,
 *     float scales [N][K/g]; w = round_to_dtype((u - z) * s);
 *   M <= 8 rows (decoding): one warp per output row streams its packed row, dequantizes in
 *     registers and accumulates in float32 against the BF16 activations;
 *   more rows (prefill, vision): slices of at most QVL_CUDA_QLIN_SCRATCH weights are dequantized to a
 *     BF16 scratch and the BF16 GEMM runs on each (AutoAWQ's fp16 weights round once more to BF16).
 *   fp8 (Qwen fine-grained, dynamic activations): e4m3 codes [N][K] (1 byte a weight) and float block
 *     scales [ceil(N/bn)][K/bk]. The input rows are quantized per token in groups of bk as transformers'
 *     act_quant does (s = amax / 448, e4m3(x / s), round to nearest even). M <= 8: the codes go to the
 *     scratch and one warp per output row sums code x code products per block in float32 and scales
 *     each block by s_x * s_w (transformers' w8a8 block matmul, up to the summation order). More rows:
 *     x is REWRITTEN IN PLACE with bf16(e4m3 * s) (every Linear's input in the model is dead after it),
 *     the weight slices are dequantized to BF16 and the BF16 GEMM runs: two BF16 roundings (<= 2^-9
 *     relative) that the reference does not have (Hopper FP8 tensor cores with 128-blocks would avoid
 *     them: not done yet).
 * C-callable; the run functions for the CUDA model are declared under __CUDACC__. */
#ifndef QVL_BACKEND_CUDA_QUANT_H
#define QVL_BACKEND_CUDA_QUANT_H
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif
#include "io/safetensors.h"
#include "model/config.h"
#include "model/quant.h"
#include "model/tensor_names.h"

/* BF16 elements of the dequantization scratch one packed Linear's many-rows product may take (32 MiB). */
enum { QVL_CUDA_QLIN_SCRATCH = 16 << 20 };

typedef struct {
    int kind;          /* QVL_QW_INT4 / QVL_QW_FP8 */
    int N, K, group;   /* out (all parts), in, K per scale (fp8: the block along K) */
    int block_n;       /* fp8: the block along N */
    int round;         /* int4 QVL_QW_ROUND_*: set by the upload from the scales' dtype */
    uint32_t *q;       /* device int4 [N][K/8] words; fp8 [N][K] e4m3 bytes */
    uint8_t *zero;     /* device int4 [N][K/group] */
    float *scale;      /* device int4 [N][K/group]; fp8 [ceil(N/block_n)][K/group] */
} qvl_cuda_qlin;

/* Whether the Linear made of parts[0..n) (fused along N) stays packed on the GPU: 1 with d's kind and
 * shape set (pointers NULL), 0 when it lives as BF16. */
int qvl_cuda_qlin_plan(const qvl_config *cfg, const qvl_safetensors *st, const qvl_tensor_spec *parts, int n,
                       qvl_cuda_qlin *d);
/* The same for one loaded weight (tests). */
int qvl_cuda_qlin_plan_loaded(const qvl_qweight *w, qvl_cuda_qlin *d);
/* Device bytes of d's packed form (16-byte aligned sections). */
size_t qvl_cuda_qlin_bytes(const qvl_cuda_qlin *d);
/* Points d's sections into mem (qvl_cuda_qlin_bytes(d) bytes, 16-byte aligned). */
void qvl_cuda_qlin_place(qvl_cuda_qlin *d, void *mem);
/* Copies the loaded w into rows n0.. of d; sets d->round. 0 or -1 + qvl_error. */
int qvl_cuda_qlin_upload_rows(qvl_cuda_qlin *d, int n0, const qvl_qweight *w);
/* Reads parts[0..n) from st and uploads them one after the other. */
int qvl_cuda_qlin_upload(qvl_cuda_qlin *d, const qvl_config *cfg, const qvl_safetensors *st, const qvl_tensor_spec *parts,
                         int n);
/* A packed part that the GPU keeps in BF16: dequantized on the host into dst (device, [N][K] BF16). */
int qvl_cuda_qlin_upload_bf16(const qvl_config *cfg, const qvl_safetensors *st, const qvl_tensor_spec *s, void *dst);
/* BF16 elements of scratch the many-rows product of d takes. */
size_t qvl_cuda_qlin_scratch(const qvl_cuda_qlin *d);

/* Whether the CUDA model keeps the input embedding table in mapped pinned host memory (it is only
 * gathered from: a few rows per step over PCIe): a quantized checkpoint with untied embeddings. */
int qvl_cuda_embed_on_host(const qvl_config *cfg);
/* Bytes the weights of the checkpoint take on the GPU (every tensor as BF16, the Linears that stay
 * packed as their packed form, plus the dequantization scratch; not a host-kept embedding table):
 * what the memory plan counts. */
double qvl_cuda_weight_bytes(const qvl_config *cfg, const qvl_safetensors *st);

/* Test and benchmark helpers (host memory in and out; they allocate and free what they need):
 * y[M][N] (float, the BF16 results) = x[M][K] (BF16 bits) @ deq(w)^T, by the path M selects (or the
 * scratch + GEMM path when force_gemm). ms: mean milliseconds of one product over reps timed runs. */
int qvl_cuda_qlin_run_host(const qvl_qweight *w, const uint16_t *x, int M, int force_gemm, float *y, int reps, double *ms);
/* The BF16 GEMV (cuda_gemm.cu's qvl_gemv, M = 1) over a random [N, K] BF16 weight, for comparison:
 * mean milliseconds over reps runs. */
int qvl_cuda_bf16_gemv_ms(int N, int K, int reps, double *ms);

#ifdef __cplusplus
}
#endif

#ifdef __CUDACC__
#include "backend/cuda/cuda_ops.h"
/* y[M, N] = x[M, K] @ deq(d)^T (+ b), BF16 in and out. scratch: qvl_cuda_qlin_scratch(d) BF16 (may be
 * NULL when M <= 8). force_gemm: the scratch + GEMM path for any M. */
int qvl_cuda_qlin_run(qvl_gemm *g, cudaStream_t st, bf16 *y, int ldy, const bf16 *x, int ldx, const qvl_cuda_qlin *d,
                      const bf16 *b, int M, bf16 *scratch, int force_gemm);
/* qvl_gemm_prepare for the GEMM shapes the many-rows path of d runs (up to M_max rows). */
int qvl_cuda_qlin_prepare(qvl_gemm *g, cudaStream_t st, bf16 *y, int ldy, const bf16 *x, int ldx, const qvl_cuda_qlin *d,
                          const bf16 *b, int M_max, bf16 *scratch);
#endif

#endif
