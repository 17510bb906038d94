/* CPU reference kernels, all float32. Row-major; a "row" is one token or patch. Linear weights
 * are PyTorch's [out, in]. Every function is the plain definition of the operation in the
 * reference (docs/model.md sections 4, 5 and 8), written so a reader can check it. */
#ifndef QVL_CPU_OPS_H
#define QVL_CPU_OPS_H
#include <stddef.h>
#include <stdint.h>

#include "backend/cpu/pool.h"

/* For the hot loops (matmul, attention): GCC compiles AVX-512, AVX2 and baseline clones and picks
 * one at run time on x86-64 (left off under ASan and with clang). */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_ADDRESS__)
#define SIMD_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define SIMD_CLONES
#endif

/* y[M,N] = x[M,K] @ w[N,K]^T (+ b[N] if b). Threads split the output columns. y must not alias x.
 * w may stand for a packed quantized Linear (model/quant.h): then qvl_cpu_matmul_q runs. */
void qvl_cpu_matmul(qvl_pool *pool, float *y, const float *x, const float *w, const float *b, int M, int K,
                    int N);
struct qvl_qweight;
/* The same over packed weights (matmul_q.c), dequantized 16 rows at a time (fp8: the input quantized
 * per token first, as the reference does). */
void qvl_cpu_matmul_q(qvl_pool *pool, float *y, const float *x, const struct qvl_qweight *w, const float *b, int M,
                      int K, int N);

/* The next five split their rows / elements over pool (NULL: run inline); results never depend
 * on the split. LayerNorm over each row of dim: (x - mean) / sqrt(var + eps) * w + b (biased
 * variance). RMSNorm: x * rsqrt(mean(x^2) + eps) * w. y may be x. */
void qvl_cpu_layernorm(qvl_pool *pool, float *y, const float *x, const float *w, const float *b, int rows, int dim,
                       float eps);
void qvl_cpu_rmsnorm(qvl_pool *pool, float *y, const float *x, const float *w, int rows, int dim, float eps);
/* torch's CPU float32 sum of x[0..n) (of x[i]^2 each rounded to float32 when square), in the order of
 * its AVX-512 reduction kernel: the value x.sum(-1) / x.pow(2).sum(-1) gives on a contiguous row. */
float qvl_cpu_torch_sum(const float *x, int n, int square);

void qvl_cpu_gelu_tanh(qvl_pool *pool, float *x, size_t n);          /* gelu_pytorch_tanh (vision block MLP) */
void qvl_cpu_gelu_erf(qvl_pool *pool, float *x, size_t n);           /* nn.GELU() exact (patch mergers) */
void qvl_cpu_silu_mul(qvl_pool *pool, float *gate, const float *up, size_t n); /* gate = silu(gate) * up */
void qvl_cpu_add(float *x, const float *y, size_t n);     /* x += y */

/* Rotary embedding of one head of hd values, NeoX half-split pairs (d, d + hd/2):
 * x' = x * cos + rotate_half(x) * sin, rotate_half(x) = concat(-x[hd/2:], x[:hd/2]). cos/sin have hd. */
void qvl_cpu_rope_half(float *x, const float *cos, const float *sin, int hd);

/* Scaled dot-product attention, softmax in float32.
 * Query i (row i of q, head h) attends keys j of head h / (n_heads / n_kv_heads) (GQA), for
 * j < n_kv if causal_pos0 < 0 (bidirectional), else j <= causal_pos0 + i (causal with a cache:
 * query i sits at cache index causal_pos0 + i). q/out rows hold n_heads*hd values at their strides;
 * k/v rows hold n_kv_heads*hd at kv_stride. scratch: qvl_cpu_attention_scratch(threads, n_kv) floats. */
void qvl_cpu_attention(qvl_pool *pool, float *out, int out_stride, const float *q, int q_stride, const float *k,
                       const float *v, int kv_stride, int n_q, int n_kv, int n_heads, int n_kv_heads, int hd,
                       int causal_pos0, float *scratch);
size_t qvl_cpu_attention_scratch(int threads, int n_kv);

/* Many attentions in one parallel loop: segment i's queries are rows row0 .. row0+n_q-1 of q/out
 * (each with its own keys, bidirectional or causal as above), so a batch of sequences or all frames
 * of several images run together with the results of running each alone. Keys are the segment's
 * contiguous k/v rows, or (table != NULL) rows of the paged KV cache: key j lives in block
 * table[j / block_tokens] at row j % block_tokens. scratch: qvl_cpu_attention_scratch(threads,
 * scratch_kv) floats with scratch_kv >= every segment's n_kv. task0 is set here. */
typedef struct {
    int row0, n_q, n_kv, causal_pos0;
    const float *k, *v;
    const int32_t *table;
    int task0;
} qvl_attn_seg;
typedef struct {
    void *const *blocks;    /* each pool block's memory: floats, or e4m3 bytes when fp8 */
    size_t k_off, v_off;    /* elements from a block's start to the K / V rows of the layer */
    int block_tokens;       /* rows of kv_stride elements per block */
    int fp8;                /* 1: elements are e4m3 bytes (backend/cpu/kv_fp8.h), upcast to float32 as they are
                               read (head_dim <= QVL_ATTN_FP8_MAX_HD); 0: float32 */
} qvl_attn_paged;
enum { QVL_ATTN_FP8_MAX_HD = 512 };
void qvl_cpu_attention_segs(qvl_pool *pool, float *out, int out_stride, const float *q, int q_stride,
                            int kv_stride, qvl_attn_seg *segs, int n_segs, const qvl_attn_paged *paged, int n_heads,
                            int n_kv_heads, int hd, float *scratch, int scratch_kv);

#endif
