/* CUDA kernels of the Qwen3-VL forward pass (BF16 storage, F32 arithmetic where the reference
 * computes in F32; rounding points follow docs/model.md section 8). Launchers only: every
 * function enqueues on `st` and returns at once. C++ (nvcc) only. Row-major; a "row" is one
 * token or patch; linear weights are PyTorch's [out, in]. */
#ifndef QVL_BACKEND_CUDA_OPS_H
#define QVL_BACKEND_CUDA_OPS_H
#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stddef.h>
#include <stdint.h>

typedef __nv_bfloat16 bf16;

/* Device state of the kernels whose last block to finish merges the other blocks' work (decode
 * attention's fused combine, the one-row argmax): the finished-block counters and the argmax's
 * per-block bests. Each model (and each stream of a test) owns one, zeroed once (the memory plan's
 * QVL_BUF_SYNC); the last block resets the counters it used, so a captured graph replays. Launches
 * that may overlap (two streams, two engines) must not share one. */
enum { QVL_SYNC_DEC_KV = 64, QVL_SYNC_AM_BLOCKS = 132 };
typedef struct {
    unsigned dec_count[QVL_SYNC_DEC_KV];   /* per KV head: split blocks of qvl_attention_decode done */
    float am_val[QVL_SYNC_AM_BLOCKS];      /* qvl_k_argmax, one row: each block's best value and id */
    int am_id[QVL_SYNC_AM_BLOCKS];
    unsigned am_count;                     /* its blocks done */
} qvl_sync;

/* ---- GEMM (cuda_gemm.cu): y[M,N] = x[M,K] @ w[N,K]^T (+ b[N]), BF16 in/out, F32 accumulate,
 * bias added in F32 in the epilogue (one rounding). ldx/ldy: row strides of x/y in elements. */
typedef struct qvl_gemm qvl_gemm;
/* gemv_variant: 0 the one-row variant timed fastest per shape (qvl_gemm_tune_m1); 1..5 that
 * variant for every shape (qvl_tuning.gemv_variant). */
qvl_gemm *qvl_gemm_new(void *workspace, size_t workspace_bytes, int gemv_variant);
void qvl_gemm_free(qvl_gemm *g);
int qvl_gemm_run(qvl_gemm *g, cudaStream_t st, bf16 *y, int ldy, const bf16 *x, int ldx, const bf16 *w,
                 const bf16 *b, int M, int K, int N);
/* The same with GELU (tanh approximation, cuBLASLt's GELU_BIAS epilogue) applied to x w^T + b in
 * F32 before the one rounding; b required. */
int qvl_gemm_run_gelu(qvl_gemm *g, cudaStream_t st, bf16 *y, int ldy, const bf16 *x, int ldx, const bf16 *w,
                      const bf16 *b, int M, int K, int N);
/* Runs the shape once at every row-count bucket up to M_max (y, x: scratch holding M_max rows), so
 * that the heuristic queries and cuBLAS kernel loads happen at open, not while serving. */
int qvl_gemm_prepare(qvl_gemm *g, cudaStream_t st, bf16 *y, int ldy, const bf16 *x, int ldx, const bf16 *w,
                     const bf16 *b, int M_max, int K, int N, int gelu);
/* Heuristic queries made so far and the host milliseconds they took. */
void qvl_gemm_setup_stats(const qvl_gemm *g, int *count, double *ms);

/* One-row products (decoding) with their neighbours fused: y[N] = w[N,K] in(x), where in(x) is x
 * (PLAIN), RMSNorm(x) * norm_w with HF's roundings (RMSNORM), or bf16(silu(gate)) * up of the
 * row x = [gate | up] of 2K values (SWIGLU); resid: y = bf16(y + bf16(product)) (the residual
 * stream, in place). Requires qvl_gemv_ok. qvl_gemm_tune_m1 times cuBLASLt against the kernel's
 * variants (1, 2, 4 warps per row) on the weights ws[0..n_ws) (all layers, so that they stream
 * from HBM as in decoding; y and x scratch) and keeps the fastest variant for the shape; not
 * during stream capture. Shapes qvl_gemv_ok refuses take cuBLASLt and separate kernels. */
enum { QVL_GEMV_PLAIN = 0, QVL_GEMV_RMSNORM = 1, QVL_GEMV_SWIGLU = 2 };
int qvl_gemv_ok(const bf16 *x, const bf16 *w, int K);
/* Whether qvl_gemv launches programmatic dependents (Hopper: +0.6% in bench/results/2026-11-26-cuda-backend-h100); on = 0 turns
 * that off for good (a stream capture that refused them). Returns the previous setting. */
int qvl_gemv_pdl(qvl_gemm *g, int on);
int qvl_gemv(qvl_gemm *g, cudaStream_t st, bf16 *y, const bf16 *x, const bf16 *w, int K, int N, int mode,
             const bf16 *norm_w, float eps, int resid);
int qvl_gemm_tune_m1(qvl_gemm *g, cudaStream_t st, bf16 *y, const bf16 *x, const bf16 *const *ws, int n_ws, int K, int N);
/* The timings and choices as one line of text. */
int qvl_gemm_m1_report(const qvl_gemm *g, char *buf, size_t size);

/* ---- attention (cuda_attention.cu). Query row i, head h attends key j of head h/(Hq/Hkv) for
 * j < n_kv (causal_pos0 < 0) or j <= causal_pos0 + i. Softmax in F32, scale hd^-0.5. Flash-style:
 * no n_q x n_kv buffer. partial: scratch for split-key decoding, qvl_attention_partial_floats()
 * floats (may be NULL when n_q * Hq/Hkv > 32, i.e. prefill). hd <= 128.
 * impl: QVL_ATT_AUTO the wgmma kernel where the build and the device have it (sm_90a), else the
 * mma.sync FA2 kernel (pre-Hopper GPUs); QVL_ATT_FA2 forces the latter; QVL_ATT_WG + n forces wgmma
 * configuration n (benchmarks; qvl_attention_sm90). Unaligned rows or short inputs take the
 * scalar kernel whatever impl says. (qvl_tuning.attention - 1 gives these numbers.) */
enum { QVL_ATT_BQ = 32, QVL_ATT_BK = 32, QVL_ATT_MAX_SPLITS = 64 };
enum { QVL_ATT_AUTO = -1, QVL_ATT_FA2 = 0, QVL_ATT_WG = 1 };
size_t qvl_attention_partial_floats(int n_kv_heads, int hd);
void qvl_attention(cudaStream_t st, bf16 *out, int out_stride, const bf16 *q, int q_stride, const bf16 *k,
                   const bf16 *v, int kv_stride, int n_q, int n_kv, int Hq, int Hkv, int hd, int causal_pos0,
                   float *partial, int impl);
/* One decoding row per query head over the cache rows 0..step[0] (device: the query sits at cache
 * index step[0]); the key range is split a fixed number of ways (chosen from max_kv) so the launch
 * does not depend on the length, for CUDA graphs. */
void qvl_attention_decode(cudaStream_t st, bf16 *out, int out_stride, const bf16 *q, int q_stride, const bf16 *k,
                          const bf16 *v, int kv_stride, int Hq, int Hkv, int hd, const int32_t *step, float *partial,
                          qvl_sync *sync);

/* ---- elementwise and row kernels (cuda_kernels.cu) */
/* RMSNorm, SwiGLU and vision rotary have a vectorised kernel (16-byte accesses, row in registers)
 * and a scalar one for unaligned or odd sizes; both do the same arithmetic. */
void qvl_k_f32_to_bf16(cudaStream_t st, bf16 *y, const float *x, size_t n);
void qvl_k_bf16_to_f32(cudaStream_t st, float *y, const bf16 *x, size_t n);
/* LayerNorm: F32 statistics and affine, one rounding. */
void qvl_k_layernorm(cudaStream_t st, bf16 *y, const bf16 *x, const bf16 *w, const bf16 *b, int rows, int dim,
                     float eps);
/* x = bf16(x + r) (residual), then y = LayerNorm(x); y may be r (a row is read before written). */
void qvl_k_add_layernorm(cudaStream_t st, bf16 *y, bf16 *x, const bf16 *r, const bf16 *w, const bf16 *b, int rows,
                         int dim, float eps);
/* RMSNorm, HF order: bf16(x * rsqrt(mean(x^2) + eps)) then * w rounded again. */
void qvl_k_rmsnorm(cudaStream_t st, bf16 *y, const bf16 *x, const bf16 *w, int rows, int dim, float eps);
/* x = bf16(x + r) (residual), then y = RMSNorm(x). */
void qvl_k_add_rmsnorm(cudaStream_t st, bf16 *y, bf16 *x, const bf16 *r, const bf16 *w, int rows, int dim,
                       float eps);
void qvl_k_add(cudaStream_t st, bf16 *x, const bf16 *y, size_t n);          /* x = bf16(x + y) */
void qvl_k_gelu_tanh(cudaStream_t st, bf16 *x, size_t n);
void qvl_k_gelu_erf(cudaStream_t st, bf16 *x, size_t n);
/* gu rows hold [gate | up] (2I values); out[i, j] = bf16(bf16(silu(gate)) * up). */
void qvl_k_silu_mul(cudaStream_t st, bf16 *out, const bf16 *gu, int rows, int I);

/* Vision: x += bilinear position table (bf16 products and sums, spec 4.2), merge-block order. */
void qvl_k_vision_pos_embed(cudaStream_t st, bf16 *x, const bf16 *table, int G, int Dv, int grid_t, int grid_h,
                            int grid_w, int M);
/* Vision 2D rotary on q and k of qkv rows [n, 3*Dv] (F32 rotation, one rounding). */
void qvl_k_vision_rope(cudaStream_t st, bf16 *qkv, const float *inv_freq, int n, int Dv, int H, int hd,
                       int grid_h, int grid_w, int M);

/* Text: per token of qkv rows [n, Hq*hd + 2*Hkv*hd]: q/k per-head RMSNorm, interleaved MRoPE in
 * bf16 arithmetic (spec 8.9); q -> q_out rows at q_stride (may be qkv itself, in place), k and v ->
 * caches at rows p0.. (kv_dim each).
 * pos: T, H, W rows at pos_stride (device), or NULL: all three = pos_scalar + i.
 * step (device, or NULL): {cache length, rope delta} overriding p0 = step[0] and pos_scalar =
 * step[0] + step[1], so that a captured decode graph needs no new arguments per token. */
typedef struct {
    int Hq, Hkv, hd, sec[3], interleaved;
    float eps;
} qvl_rope_desc;
void qvl_k_qk_norm_rope(cudaStream_t st, const qvl_rope_desc *d, bf16 *q_out, int q_stride, bf16 *k_cache, bf16 *v_cache,
                        const bf16 *qkv, const bf16 *q_norm, const bf16 *k_norm, const float *inv_freq, int n,
                        int p0, const int32_t *pos, int pos_stride, int pos_scalar, const int32_t *step);
void qvl_k_step_advance(cudaStream_t st, int32_t *step); /* step[0] += 1 */
/* The same for a batch: row i's key and value go to cache row slots[i] (a KV pool row; none where
 * slots[i] < 0: padding rows), its positions are pos[i], pos[pos_stride + i], pos[2 pos_stride + i]. */
void qvl_k_qk_norm_rope_slots(cudaStream_t st, const qvl_rope_desc *d, bf16 *q_out, int q_stride, bf16 *k_cache,
                              bf16 *v_cache, const bf16 *qkv, const bf16 *q_norm, const bf16 *k_norm,
                              const float *inv_freq, int n, const int32_t *pos, int pos_stride, const int32_t *slots);

/* ---- paged KV (cuda_paged.cu): a pool of blocks of `block` rows of kv values per layer; a
 * sequence's key j sits in pool row table[j / block] * block + j % block. */
/* Attention of single rows over their sequence's paged keys 0 .. kv_len[r] - 1 (split-key; rows[i]
 * the batch rows, seq[r] their sequences, tables: blocks_per_seq entries per sequence). splits > 1
 * needs partial: n_rows * Hq * splits * (hd + 2) floats. hd 32, 64 or 128; Hq / Hkv <= 8. */
int qvl_attention_paged_ok(int Hq, int Hkv, int hd);
void qvl_attention_paged(cudaStream_t st, bf16 *out, int out_stride, const bf16 *q, int q_stride, const bf16 *k_pool,
                         const bf16 *v_pool, int kv_stride, const int32_t *rows, int n_rows, const int32_t *seq,
                         const int32_t *kv_len, const int32_t *tables, int blocks_per_seq, int block, int Hq, int Hkv,
                         int hd, int splits, float *partial);
/* k_dst, v_dst rows 0 .. n-1 = the sequence's keys and values 0 .. n-1 (table: its blocks). */
void qvl_k_kv_gather(cudaStream_t st, bf16 *k_dst, bf16 *v_dst, const bf16 *k_pool, const bf16 *v_pool, int kv,
                     const int32_t *table, int block, int n);
/* FP8 KV pool (--kv-dtype fp8: e4m3 bytes, cuda_kv_fp8.cuh): the same operations over byte pools.
 * The attention upcasts each element to F32 as it loads it; the gather writes BF16 rows (exact). */
void qvl_attention_paged_fp8(cudaStream_t st, bf16 *out, int out_stride, const bf16 *q, int q_stride,
                             const uint8_t *k_pool, const uint8_t *v_pool, int kv_stride, const int32_t *rows, int n_rows,
                             const int32_t *seq, const int32_t *kv_len, const int32_t *tables, int blocks_per_seq,
                             int block, int Hq, int Hkv, int hd, int splits, float *partial);
void qvl_k_kv_gather_fp8(cudaStream_t st, bf16 *k_dst, bf16 *v_dst, const uint8_t *k_pool, const uint8_t *v_pool, int kv,
                         const int32_t *table, int block, int n);
/* qvl_k_qk_norm_rope_slots writing e4m3 keys and values (each BF16 result rounded once more). */
void qvl_k_qk_norm_rope_slots_fp8(cudaStream_t st, const qvl_rope_desc *d, bf16 *q_out, int q_stride, uint8_t *k_cache,
                                  uint8_t *v_cache, const bf16 *qkv, const bf16 *q_norm, const bf16 *k_norm,
                                  const float *inv_freq, int n, const int32_t *pos, int pos_stride, const int32_t *slots);
/* The element conversions themselves, n values (tests: against backend/cpu/kv_fp8.c bit for bit). */
void qvl_k_kv_fp8_encode(cudaStream_t st, uint8_t *dst, const float *src, size_t n);
void qvl_k_kv_fp8_decode(cudaStream_t st, float *dst, const uint8_t *src, size_t n);
/* dst[i] = src[rows[i]] (rows of D values), for i < n. */
void qvl_k_gather_rows(cudaStream_t st, bf16 *dst, const bf16 *src, const int32_t *rows, int n, int D);

/* x[i] = vis_row[i] >= 0 ? img[vis_row[i]] : embed[ids[i]] (vis_row may be NULL). */
void qvl_k_embed(cudaStream_t st, bf16 *x, const bf16 *embed, const int32_t *ids, const int32_t *vis_row,
                 const bf16 *img, int n, int D);
/* x[i] = bf16(x[i] + ds[vis_row[i]]) for image rows. */
void qvl_k_deepstack_add(cudaStream_t st, bf16 *x, const int32_t *vis_row, const bf16 *ds, int n, int D);
/* out[r] = argmax of row r of logits [rows, V] (bf16 values; lowest id on ties). One row runs over
 * many blocks and merges in sync (the caller's own, see qvl_sync). */
void qvl_k_argmax(cudaStream_t st, int32_t *out, const bf16 *logits, int rows, int V, qvl_sync *sync);

/* ---- next-token picking (cuda_sample.cu): engine/sampler.c's semantics on the device ---- */
extern "C" {
#include "model/model_cuda.h"
}
typedef struct {
    qvl_cuda_pick_params p;
    int32_t n_uniforms;   /* uniforms available to this request */
    int32_t counter;      /* sampled picks made so far (the next uniform's index) */
} qvl_pick_state;         /* at most QVL_PLAN_PICK_STATE bytes (the memory plan reserves that) */
/* Clears flags[V] (bit 0 seen, bit 1 generated) and marks ids[n] (device) as seen. */
void qvl_k_pick_prompt(cudaStream_t st, uint8_t *flags, int V, const int32_t *ids, int n);
/* If mark_out, first marks *out (the id just generated) as seen and generated; then picks from
 * logits[V] with state's parameters (work[V]: scratch for the processed logits;
 * uniforms[state->counter] drawn when sampling) into *out. Arguments never change per token, so
 * a graph replays it. path: 1 (always, in the model) the many-block fast path with the one-block
 * kernel where it cannot pick exactly; 0, 2, 3, 4 for tests and timing (qvl_cuda_picker_set_path). */
void qvl_k_pick(cudaStream_t st, int32_t *out, const bf16 *logits, int V, qvl_pick_state *state, uint8_t *flags,
                float *work, const double *uniforms, int mark_out, int path);

#endif
