/* The CUDA model's internals, shared by cuda_model.cu (open, weights, vision, the one-sequence
 * text path) and cuda_batch.cu (the batched text path of the backend table). C++ (nvcc) only. */
#ifndef QVL_BACKEND_CUDA_MODEL_IMPL_H
#define QVL_BACKEND_CUDA_MODEL_IMPL_H
#include "backend/cuda/cuda_ops.h"
#include "backend/cuda/cuda_quant.h"
extern "C" {
#include "model/mem_plan.h"
#include "model/model_cuda.h"
#include "util/error.h"
}

enum { DEFAULT_MAX_LEN = 8192, GEMM_WS = 32 << 20, MAX_IMAGES = 64 };

typedef struct {
    bf16 *norm1_w, *norm1_b, *qkv_w, *qkv_b, *proj_w, *proj_b, *norm2_w, *norm2_b, *fc1_w, *fc1_b, *fc2_w, *fc2_b;
} vblock;
typedef struct {
    bf16 *norm_w, *norm_b, *fc1_w, *fc1_b, *fc2_w, *fc2_b;
} merger;
typedef struct {
    bf16 *in_norm, *qkv_w, *q_norm, *k_norm, *o_w, *post_norm, *gu_w, *down_w; /* qkv_w: q|k|v rows, gu_w: gate|up */
} tlayer;

struct qvl_cuda_model {
    qvl_config cfg;
    qvl_mem_plan plan;
    char device[64];
    long max_len, max_patches, max_tokens;
    long hid_rows;      /* rows of vhid: the vision MLP runs in chunks of at most this many patches */
    int chunk;
    cudaStream_t st;
    qvl_gemm *gemm;
    char *arena;
    size_t arena_bytes;
    double peak_mib;
    /* weights */
    bf16 *patch_w, *patch_b, *pos_embed, *embed, *norm, *lm_head;
    vblock *vb;
    merger mg, ds[QVL_MAX_DEEPSTACK];
    tlayer *tl;
    float *vis_inv_freq, *txt_inv_freq;
    /* vision activations (max_patches rows) and outputs (max_tokens rows per feature) */
    bf16 *vx, *vy, *vqkv, *vhid; /* vhid: hid_rows x Iv */
    bf16 *img[1 + QVL_MAX_DEEPSTACK]; /* merger output, then deepstack features */
    /* text */
    bf16 *k_cache, *v_cache; /* [layers][max_len][kv] (batched: [layers][pool rows][kv]; e4m3 bytes when kv_fp8) */
    int kv_fp8;              /* --kv-dtype fp8 (batched only): the pool holds e4m3 bytes (cuda_kv_fp8.cuh) */
    bf16 *x, *y, *qkv, *att, *gu, *h, *logits;
    int32_t *d_ids, *d_pos, *d_vis, *d_next;
    int32_t *d_step;                 /* {cache length, rope delta} for graph decoding */
    cudaGraphExec_t decode_graph;    /* one decode step, captured at open (NULL: tuning.no_cuda_graphs) */
    /* next-token picking on the device (qvl_cuda_set_picking): the request's state, flags (seen /
     * generated ids), processed logits and uniforms; the decode graph with the pick kernel */
    qvl_pick_state *pick_state;
    uint8_t *pick_flags;
    float *pick_work;
    double *pick_uniforms;
    cudaGraphExec_t pick_graph;
    int picking;                     /* this request: 0 plain argmax, 1 the pick kernel */
    int pick_mode;                   /* what lm_head enqueues: 0 argmax, 1 pick, 2 mark the input id + pick */
    qvl_pick_state h_pick;
    float *att_partial;
    qvl_sync *sync;                  /* this model's kernel counters (QVL_BUF_SYNC; zeroed at open) */
    void *gemm_ws;
    /* host state */
    int n_images, img_tokens, grids[MAX_IMAGES][3];
    int len, rope_delta, next_id;
    int32_t *h_pos, *h_vis;
    int32_t h_step[2];
    char gemv_report[1024];
    int gelu_epilogue; /* vision fc1 GELU in the cuBLASLt epilogue (0 where cuBLASLt refuses it: separate kernel) */
    qvl_tuning tuning; /* the open options' kernel choices (dump_dir points into the caller's memory) */
    double prepare_ms;  /* open: cuBLASLt shapes prepared for every row-count bucket */
    /* BF16 pixel staging (none if pinned memory is refused): pinned HOST memory for the largest admitted
     * image's pixel rows, so that the upload is one asynchronous DMA; not part of the device plan.
     * pix_done marks the end of the last upload from it (the host waits before rewriting it). */
    uint16_t *pix_stage;
    size_t pix_stage_bytes;
    cudaEvent_t pix_done;
    int pix_pending;
    /* Packed Linears (cuda_quant.h): the weight pointers of the layout that stand for a packed form,
     * the dequantization scratch of their many-rows products, and (while opening) the checkpoint. */
    struct qlin_entry {
        const bf16 *w;
        qvl_cuda_qlin d;
    } *qlin;
    int n_qlin, cap_qlin;
    bf16 *qscratch;
    size_t qscratch_elems;
    /* A quantized checkpoint's untied input embedding (only gathered from) lives in mapped pinned host
     * memory, not in the arena: embed points at it (1.2 GB less on the device at 8B). */
    bf16 *embed_host;
    void *embed_pinned;
    int embed_on_host;
    const qvl_safetensors *ckpt;
    /* batched mode (qvl_cuda_opts.batched): the plan's inputs, the KV pool, the per-pass inputs */
    int batched;
    qvl_plan_inputs pin;
    bf16 *gather_k, *gather_v;  /* one sequence's KV rows, gathered for prefill attention */
    int32_t *batch_in;          /* qvl_plan_batch_in_ints values */
};

#define CK(call)                                                                                                \
    do {                                                                                                        \
        cudaError_t e_ = (call);                                                                                \
        if (e_ != cudaSuccess) return qvl_errorf("cuda: %s (%s:%d)", cudaGetErrorString(e_), __FILE__, __LINE__); \
    } while (0)
#define G(call) \
    do { if ((call) != 0) return qvl_errorf("cuda: cuBLASLt matmul failed (%s:%d)", __FILE__, __LINE__); } while (0)

/* ---- packed Linears: a Linear's weight pointer stands for BF16 [N][K] or for its packed form ----
 * Every product with a Linear's weight (qkv, o, gate|up, down, lm_head, vision qkv/proj/fc1/fc2,
 * merger fc1/fc2), in the one-sequence path and the batched one, goes through qvl_cuda_lin (and its
 * cuBLASLt shapes through qvl_cuda_lin_prepare); the fused BF16-only kernels (qvl_gemv, the GELU
 * epilogue, qvl_gemm_tune_m1) are taken only where qvl_cuda_packed says the weight is BF16.
 * FP8 with more than 8 rows rewrites its input x in place: every caller's x is dead after it. */
static inline const qvl_cuda_qlin *qvl_cuda_packed(const qvl_cuda_model *m, const bf16 *w) {
    for (int i = 0; i < m->n_qlin; i++)
        if (m->qlin[i].w == w) return &m->qlin[i].d;
    return NULL;
}
/* y[M, N] = x[M, K] @ w^T (+ b) for a Linear's weight w, packed or BF16. */
static inline int qvl_cuda_lin(qvl_cuda_model *m, cudaStream_t s, bf16 *y, int ldy, const bf16 *x, int ldx, const bf16 *w,
                               const bf16 *b, int M, int K, int N) {
    const qvl_cuda_qlin *d = qvl_cuda_packed(m, w);
    return d ? qvl_cuda_qlin_run(m->gemm, s, y, ldy, x, ldx, d, b, M, m->qscratch, 0)
             : qvl_gemm_run(m->gemm, s, y, ldy, x, ldx, w, b, M, K, N);
}
/* qvl_gemm_prepare of that product for up to M rows, on m's stream. */
static inline int qvl_cuda_lin_prepare(qvl_cuda_model *m, bf16 *y, int ldy, const bf16 *x, int ldx, const bf16 *w,
                                       const bf16 *b, int M, int K, int N) {
    const qvl_cuda_qlin *d = qvl_cuda_packed(m, w);
    return d ? qvl_cuda_qlin_prepare(m->gemm, m->st, y, ldy, x, ldx, d, b, M, m->qscratch)
             : qvl_gemm_prepare(m->gemm, m->st, y, ldy, x, ldx, w, b, M, K, N, 0);
}

/* One vision pass over n images packed row after row (attention within each image, each frame):
 * image i's merger and deepstack rows go to out[j] + its token offset (the images' tokens follow
 * one another from out[j]). Pixels: F32 (px32[i]) or BF16 rows (px16[i]); one of them per image.
 * The images' patches must fit the vision buffers (max_patches). Returns 0 or -1 + error. */
int qvl_cuda_vision_pass(qvl_cuda_model *m, const qvl_pixel_values *const *pv, const float *const *px32,
                         const uint16_t *const *px16, int n, bf16 *const *out);
/* Samples cudaMemGetInfo into the peak. */
void qvl_cuda_sample_peak(qvl_cuda_model *m);

#endif


