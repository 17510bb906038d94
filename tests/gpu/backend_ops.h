/* The device side of the kernel test harness (tests/gpu/test_backend_ops.c): each function takes
 * host float arrays whose values are BF16-exact, uploads them as BF16, runs one CUDA operation of
 * src/backend/cuda on a stream and downloads the results as float (the BF16 values). Returns 0, or
 * -1 + qvl_error naming the operation and the CUDA error. `off` (0 or 1) shifts every BF16 device
 * buffer by that many elements: 1 makes rows unaligned, so the launchers take their scalar kernels.
 * Implemented in backend_ops_cuda.cu (nvcc); C API. */
#ifndef QVL_TESTS_GPU_BACKEND_OPS_H
#define QVL_TESTS_GPU_BACKEND_OPS_H
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* y = bf16_to_f32(f32_to_bf16(x)) through the two conversion kernels. */
int bo_convert(float *y, const float *x, size_t n);
/* LayerNorm (b != NULL) or RMSNorm (b == NULL) of rows x dim; with r: x = bf16(x + r) first
 * (the add_ variants; x_io gets the updated x back), else x_io is only read. */
int bo_norm(float *y, float *x_io, const float *r, const float *w, const float *b, int rows, int dim, float eps,
            int off);
int bo_add(float *x_io, const float *y, size_t n, int off);
int bo_gelu(float *x_io, size_t n, int erf);
int bo_silu_mul(float *out, const float *gu, int rows, int I, int off);
int bo_vision_pos_embed(float *x_io, const float *table, int G, int Dv, int grid_t, int grid_h, int grid_w, int M);
/* inv_freq: hd/4 floats. */
int bo_vision_rope(float *qkv_io, const float *inv_freq, int n, int Dv, int H, int hd, int grid_h, int grid_w, int M,
                   int off);

typedef struct {
    int Hq, Hkv, hd, sec[3], interleaved;
    float eps;
} bo_rope;
/* qvl_k_qk_norm_rope: q_out [n][q_stride]; caches [cache_rows][Hkv*hd] (in and out: rows other than
 * p0..p0+n-1 must come back unchanged); pos: 3 rows of n (T, H, W) or NULL (pos_scalar + i);
 * use_step: p0 and pos_scalar passed through the device step {p0, pos_scalar - p0} instead;
 * slots (n rows, needs pos): qvl_k_qk_norm_rope_slots, row i's key and value to cache row slots[i]. */
int bo_qk_norm_rope(const bo_rope *d, float *q_out, int q_stride, float *k_cache, float *v_cache, int cache_rows,
                    const float *qkv, const float *q_norm, const float *k_norm, const float *inv_freq, int n, int p0,
                    const int32_t *pos, int pos_scalar, int use_step, const int32_t *slots);
int bo_embed(float *x, const float *embed, int vocab, const int32_t *ids, const int32_t *vis_row, const float *img,
             int img_rows, int n, int D);
int bo_deepstack_add(float *x_io, const int32_t *vis_row, const float *ds, int ds_rows, int n, int D);
int bo_argmax(int32_t *out, const float *logits, int rows, int V);

/* y[M][ldy] = x[M][ldx] @ w[N][K]^T (+ b) (gelu: GELU-tanh epilogue, b required); y's columns
 * past N keep what y held. */
int bo_gemm(float *y, int ldy, const float *x, int ldx, const float *w, const float *b, int M, int K, int N, int gelu,
            int off);
/* One-row product qvl_gemv (mode QVL_GEMV_*: 0 plain, 1 RMSNorm with norm_w, 2 SwiGLU of x = [gate | up]
 * of 2K) with variant 1..5 fixed (0: the fastest, as timed); resid: y_io = bf16(y_io + bf16(product)). */
int bo_gemv(float *y_io, const float *x, const float *w, int K, int N, int mode, const float *norm_w, float eps,
            int resid, int variant);

/* qvl_attention: out [n_q][Hq*hd]; impl as qvl_tuning.attention - 1 (-1 auto, 0 FA2, 1 + c wgmma
 * configuration c); split: pass the partial buffer (split-key decoding for short queries). */
int bo_attention(float *out, const float *q, int q_stride, const float *k, const float *v, int kv_stride, int n_q,
                 int n_kv, int Hq, int Hkv, int hd, int causal_pos0, int impl, int split, int off);
/* qvl_attention_decode: one query row over cache rows 0..n_kv-1 (step = n_kv - 1 on the device). */
int bo_attention_decode(float *out, const float *q, const float *k, const float *v, int n_kv, int Hq, int Hkv, int hd);

/* Paged KV (cuda_paged.cu). qvl_attention_paged: q and out [q_rows][Hq*hd] (out in and out: rows not in
 * rows[] must come back unchanged); pools [pool_rows][Hkv*hd]; seq, kv_len per batch row; tables
 * [n_seqs][blocks_per_seq]; splits > 1 with a partial buffer of the documented size. */
int bo_attention_paged_ok(int Hq, int Hkv, int hd);
int bo_attention_paged(float *out, const float *q, int q_rows, const float *k_pool, const float *v_pool, int pool_rows,
                       const int32_t *rows, int n_rows, const int32_t *seq, const int32_t *kv_len, int n_seqs,
                       const int32_t *tables, int blocks_per_seq, int block, int Hq, int Hkv, int hd, int splits);
/* qvl_k_kv_gather: keys and values 0..n-1 of the sequence with block table table[n_blocks]. */
int bo_kv_gather(float *k_dst, float *v_dst, const float *k_pool, const float *v_pool, int pool_rows, int kv,
                 const int32_t *table, int n_blocks, int block, int n);
/* FP8 KV pool (--kv-dtype fp8; pools of e4m3 bytes): qvl_k_kv_fp8_encode of x[n] into codes[n], and
 * qvl_k_kv_fp8_decode of the 256 codes into table[256]. */
int bo_kv_fp8_convert(uint8_t *codes, const float *x, size_t n, float *table);
/* qvl_attention_paged_fp8 / qvl_k_kv_gather_fp8: as above over byte pools. */
int bo_attention_paged_fp8(float *out, const float *q, int q_rows, const uint8_t *k_pool, const uint8_t *v_pool,
                           int pool_rows, const int32_t *rows, int n_rows, const int32_t *seq, const int32_t *kv_len,
                           int n_seqs, const int32_t *tables, int blocks_per_seq, int block, int Hq, int Hkv, int hd,
                           int splits);
int bo_kv_gather_fp8(float *k_dst, float *v_dst, const uint8_t *k_pool, const uint8_t *v_pool, int pool_rows, int kv,
                     const int32_t *table, int n_blocks, int block, int n);
/* qvl_k_qk_norm_rope_slots_fp8: as bo_qk_norm_rope with slots, the caches e4m3 bytes (in and out). */
int bo_qk_norm_rope_fp8(const bo_rope *d, float *q_out, int q_stride, uint8_t *k_cache, uint8_t *v_cache, int cache_rows,
                        const float *qkv, const float *q_norm, const float *k_norm, const float *inv_freq, int n,
                        const int32_t *pos, const int32_t *slots);

/* qvl_k_gather_rows: dst[i] = src[rows[i]]. */
int bo_gather_rows(float *dst, const float *src, int src_rows, const int32_t *rows, int n, int D);

/* Two streams at once: `pairs` launches of op (0 argmax of one row of V logits, 1 attention_decode)
 * on each of two streams over different inputs, every launch into its own output; *wrong: the
 * outputs that differ from the same launch alone on one stream. */
int bo_two_streams(int op, int pairs, long *wrong, long *total);

/* Clears the CUDA runtime's last error (a helper outside the harness may leave one behind). */
void bo_clear_error(void);
/* Frees the harness's stream and handles. */
void bo_release(void);

#ifdef __cplusplus
}
#endif
#endif
