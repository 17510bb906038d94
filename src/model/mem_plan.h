/* The GPU memory plan: every device allocation of a run, derived up front from the config, the
 * context length and the largest image admitted. `qvl mem` prints it; `--gpu-mem` is checked
 * against it before anything is allocated. All figures in MiB (2^20 bytes).
 *
 * weights + kv_cache + vision_activations + workspace - cuda_runtime is the CUDA backend's arena
 * to the byte (the plan walks the same buffers as cuda_model.cu's layout_buffers; a GPU test checks
 * it). The process's device memory as the driver reports it (NVML) is that arena plus the CUDA
 * context plus what the CUDA runtime allocates after the context on its own (cuda_runtime: the
 * cuBLASLt handle, the decode graph, kernels loaded on first use). */
#ifndef QVL_MODEL_MEM_PLAN_H
#define QVL_MODEL_MEM_PLAN_H

#include "model/config.h"

/* Tokens reserved beside the image for the template, the question and the answer when the
 * plan sizes the largest image that fits the context. */
enum { QVL_PLAN_TEXT_RESERVE = 256, QVL_PLAN_PREFILL_CHUNK = 2048 };
/* Sizes the CUDA backend uses: its cuBLASLt workspace (cuda_model.cu GEMM_WS) and the decode
 * attention scratch shape (cuda_ops.h QVL_ATT_MAX_SPLITS x QVL_ATT_BQ rows). */
enum { QVL_PLAN_GEMM_WORKSPACE = 32 << 20, QVL_PLAN_ATT_SPLITS = 64, QVL_PLAN_ATT_ROWS = 32 };
/* The device sampler's state (cuda_sample.cu qvl_pick_state: parameters and the uniform counter). */
enum { QVL_PLAN_PICK_STATE = 64 };
/* The instance's device counters and partial results of the kernels whose last block to finish
 * merges the others' work (cuda_ops.h qvl_sync: decode attention's split counts, the one-row
 * argmax): per model, never process-wide, so that two engines or streams do not mix them. */
enum { QVL_PLAN_SYNC_BYTES = 1536 };

typedef struct {
    double cuda_context;      /* measured on a GPU, else an estimate */
    int cuda_context_measured;
    double weights, kv_cache, vision_activations;
    double workspace;         /* prefill buffers, logits, ids, attention scratch, cuBLASLt workspace,
                                 the device sampler's buffers, and cuda_runtime */
    double cuda_runtime;      /* part of workspace: the runtime's own allocations after the context */
    double total;
    long max_model_len;
    long max_image_pixels;    /* the largest image area (after resize) the plan admits */
    long max_image_tokens;
    long vision_mlp_chunk;    /* patches per vision MLP chunk (the hidden buffer's rows) */
    int kv_dtype;             /* QVL_PLAN_KV_* */
    int sequences;
    /* Batched plans (qvl_plan_inputs.kv_blocks > 0; all 0 for the one-sequence plan): */
    long kv_blocks;           /* blocks in the KV pool */
    int kv_block_tokens;      /* tokens per block */
    int token_budget;         /* rows per forward pass */
    long vision_tokens;       /* image tokens per vision pass */
    long image_cache_tokens;  /* image feature rows kept at once */
} qvl_mem_plan;

/* What a plan is sized for (the plan's inputs; the buffers it walks are the CUDA backend's). */
typedef struct {
    long max_model_len;       /* KV cache tokens per sequence */
    long max_pixels;          /* the largest image area admitted (tokens = max_pixels / 1024, capped so that
                                 QVL_PLAN_TEXT_RESERVE tokens stay free); used when max_image_tokens <= 0 */
    long max_image_tokens;    /* > 0: the vision activations are sized for exactly this many image tokens
                                 (the data's largest image), capped only at max_model_len - 1 */
    int kv_dtype;             /* QVL_PLAN_KV_BF16 (default) or QVL_PLAN_KV_FP8: bytes per KV element 2 / 1 */
    int sequences;            /* sequences in flight (<= 0: 1) */
    int vision_mlp_chunk;     /* patches per vision MLP chunk; <= 0: QVL_PLAN_VISION_MLP_CHUNK (tests use
                                 small chunks to compare against one chunk) */
    int prefill_chunk;        /* one-sequence plan: tokens per prefill step; <= 0: QVL_PLAN_PREFILL_CHUNK */
    /* Batched (many sequences in flight; kv_blocks > 0 selects it): the KV cache is a pool of
     * kv_blocks blocks of kv_block_tokens tokens, a forward pass holds at most token_budget rows of
     * at most `sequences` sequences, a vision pass at most vision_tokens image tokens (several
     * images), and image features of at most image_cache_tokens rows are kept at once. */
    long kv_blocks;
    int kv_block_tokens;      /* <= 0: QVL_PLAN_KV_BLOCK_TOKENS */
    int token_budget;         /* <= 0: QVL_PLAN_TOKEN_BUDGET */
    long vision_tokens;       /* <= 0: max(largest image, QVL_PLAN_VISION_TOKENS) */
    long image_cache_tokens;  /* <= 0: 2 x vision_tokens */
} qvl_plan_inputs;
enum { QVL_PLAN_KV_BLOCK_TOKENS = 64, QVL_PLAN_TOKEN_BUDGET = 4096, QVL_PLAN_VISION_TOKENS = 4096,
       QVL_PLAN_MAX_SEQS = 128, QVL_PLAN_DEC_SPLITS = 16 };
/* Without a budget, the batched plan is what one request at a time took plus the slots of this many
 * sequences (a few MiB each: block tables, logits rows, decode partials); the KV pool stays one whole
 * context, which the sequences share, so they run together while their prompts are small. */
enum { QVL_PLAN_DEFAULT_SEQS = 64 };
enum { QVL_PLAN_KV_BF16 = 0, QVL_PLAN_KV_FP8 = 1 };   /* = QVL_KV_BF16 / QVL_KV_FP8 of qvl.h */

/* The vision MLP's hidden activations (patches x intermediate) are computed in chunks of at most
 * this many patches, so that the one term of the vision activations that is wider than the
 * residual stream stays bounded: 4096 patches x 4096 (2B/4B; 4304 on 8B) BF16 = 32 MiB (34.4 on 8B)
 * instead of 512 MiB at a 16384-token image. 4096 rows keep each GEMM at several waves of
 * 128x256 tiles on 132 SMs (fc1: 4096x4096 outputs = 512 tiles), and OCRBench's images mostly take
 * fewer patches than that, so most images run in one chunk as before. */
enum { QVL_PLAN_VISION_MLP_CHUNK = 4096 };

int qvl_mem_plan_compute_inputs(const qvl_config *cfg, double weight_bytes, const qvl_plan_inputs *in,
                                double cuda_context_mib, qvl_mem_plan *out);

/* Plans for cfg with BF16 weights (weight_bytes: the checkpoint's tensor bytes as BF16, or <= 0 to
 * derive them from the config), max_model_len tokens of KV cache and images of at most max_pixels
 * (also capped so their tokens fit the context). cuda_context_mib < 0 means "not measured". */
int qvl_mem_plan_compute(const qvl_config *cfg, double weight_bytes, long max_model_len, long max_pixels,
                         double cuda_context_mib, qvl_mem_plan *out);

/* The device buffers after the weights, in the order the CUDA backend lays them out in its arena:
 * the plan's figures are these buffers added up (256-byte aligned pieces), and the backend's
 * allocation walks the same list (cuda_model.cu layout_buffers), so the two cannot drift apart.
 * Which buffers exist depends on the plan (one sequence, or batched). */
typedef enum {
    QVL_BUF_VIS_INV_FREQ, QVL_BUF_TXT_INV_FREQ,
    QVL_BUF_VX, QVL_BUF_VY, QVL_BUF_VQKV, QVL_BUF_VHID,
    QVL_BUF_IMG,                                  /* merger output, then + 1 + j: deepstack feature j */
    QVL_BUF_K_CACHE = QVL_BUF_IMG + 1 + QVL_MAX_DEEPSTACK, QVL_BUF_V_CACHE,
    QVL_BUF_X, QVL_BUF_Y, QVL_BUF_QKV, QVL_BUF_ATT, QVL_BUF_GU, QVL_BUF_H, QVL_BUF_LOGITS,
    QVL_BUF_IDS, QVL_BUF_POS, QVL_BUF_VIS, QVL_BUF_NEXT, QVL_BUF_STEP,
    QVL_BUF_ATT_PARTIAL, QVL_BUF_GEMM_WS,
    QVL_BUF_PICK_STATE, QVL_BUF_PICK_FLAGS, QVL_BUF_PICK_WORK, QVL_BUF_PICK_UNIFORMS,
    QVL_BUF_SYNC,                                 /* the kernels' counters (QVL_PLAN_SYNC_BYTES, zeroed at open) */
    /* batched only */
    QVL_BUF_GATHER_K, QVL_BUF_GATHER_V,           /* one sequence's KV rows gathered for prefill attention */
    QVL_BUF_BATCH_IN,                             /* the per-pass int32 inputs (qvl_plan_batch_in_ints) */
    QVL_BUF_COUNT
} qvl_buf_id;
enum { QVL_PLAN_CAT_VISION, QVL_PLAN_CAT_KV, QVL_PLAN_CAT_WORKSPACE };
typedef struct {
    int id;                   /* qvl_buf_id */
    int category;             /* QVL_PLAN_CAT_* */
    double bytes;
} qvl_plan_buf;
/* Fills out[QVL_BUF_COUNT] with the buffers of the plan made from in; returns their count, or -1 +
 * error (bad inputs). */
int qvl_mem_plan_buffers(const qvl_config *cfg, const qvl_plan_inputs *in, qvl_plan_buf *out);
/* The int32 values of one batched pass's inputs: per row (token_budget): id, 3 positions, image
 * row, cache slot, KV length, sequence (and the list of single rows); per sequence (sequences):
 * picked row, picked id, last id picked; the block tables (sequences x blocks_per_seq). */
long qvl_plan_batch_in_ints(int token_budget, int sequences, long blocks_per_seq);
long qvl_plan_blocks_per_seq(long max_model_len, int kv_block_tokens);

/* A batched plan within cap_mib (<= 0: the one-sequence plan's total for the same context and
 * images, i.e. no more memory than one request at a time took, plus the slots of
 * QVL_PLAN_DEFAULT_SEQS sequences (or in->sequences) sharing one whole context's pool; no cap at all when both in->sequences and in->kv_blocks are given, as
 * `qvl eval` passes its data plan's batch and pool). in->sequences <= 0: chosen from what the KV pool holds (pool tokens /
 * QVL_PLAN_TEXT_RESERVE, at most QVL_PLAN_MAX_SEQS); in->kv_blocks <= 0: as many as fit. Refuses
 * (-1 + error naming the figures) when not even one sequence of the whole context fits. The
 * resolved inputs are written back to *in. */
int qvl_mem_plan_batched(const qvl_config *cfg, double weight_bytes, qvl_plan_inputs *in, double cuda_context_mib,
                         double cap_mib, qvl_mem_plan *out);

/* The part of the plan that is the CUDA backend's arena (everything but the context and cuda_runtime). */
double qvl_mem_plan_arena_mib(const qvl_mem_plan *p);

/* Estimated CUDA context size when no GPU can be asked (CUDA 12/13 with lazy module loading). */
#define QVL_CUDA_CONTEXT_ESTIMATE_MIB 512.0
/* The CUDA runtime's allocations after the context (cuBLASLt handle and the GEMM shapes prepared at
 * open, the decode graph, kernels loaded on first use): NVML process peak minus the NVML-measured
 * context minus the arena was 8.7 / 9.4 / 10.2 MiB for the 2B / 4B / 8B shapes on an H100 (driver
 * 580, CUDA 13.0; bench/results/2026-11-26-memory-plan-h100), the same after open as after generating. */
#define QVL_CUDA_RUNTIME_ESTIMATE_MIB 10.0

#endif
