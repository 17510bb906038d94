/* The one interface every backend implements (CPU reference, CUDA). The engine above it never asks
 * which device it runs on: it opens a backend through the table of the device chosen, then calls
 * these operations. A build without CUDA simply has no CUDA backend registered (see
 * qvl_backend_find).
 *
 * Model vs. state: the backend holds the loaded model (read-only weights) and a pool of
 * max_seqs sequence slots; a slot's state is its KV blocks (the engine's block table, passed to the
 * backend), its image features and its picking state (sampling settings and random stream). The
 * KV cache is a pool of fixed-size blocks carved from the backend's planned memory; the engine's
 * kv_pool decides which blocks a sequence owns.
 *
 * How the engine drives it (engine/scheduler.c), for one request on slot s:
 *   seq_begin(s, pick params, uniforms, prompt)   once, when the request is admitted
 *   seq_blocks(s, table, n)                        whenever its block table grows (the whole table)
 *   encode_images(pv[], seqs[], n)                 its images, in prompt order, before the first
 *                                                  batch that holds one of its image pads
 *   run_batch(...)                                 prefill chunks, then one decode row per step
 *   seq_drop_images(s)                             after its last prompt row ran (features unused)
 *   seq_free(s)                                    finished, failed or cancelled
 * Slot numbers are 0 .. limits.max_seqs-1; a freed slot is reused by a later request. Only one
 * thread uses a backend at a time (the thread inside qvl_step). */
#ifndef QVL_ENGINE_BACKEND_H
#define QVL_ENGINE_BACKEND_H
#include <stdint.h>

#include "engine/batch.h"
#include "image/image.h"
#include "model/config.h"
#include "model/mem_plan.h"
#include "qvl.h"

typedef struct qvl_backend qvl_backend;

/* Tokens per KV block unless the options say otherwise. */
enum { QVL_KV_BLOCK_TOKENS = 64 };

/* What the engine asks of a backend at open. Zero / negative fields: the backend chooses. */
typedef struct {
    const char *model_dir;
    int threads;              /* CPU worker threads (> 0: the engine resolved it) */
    long max_model_len;       /* longest sequence (prompt + answer), already resolved by the engine */
    long max_pixels;          /* largest image area admitted (the vision activations are planned for it) */
    long plan_image_tokens;   /* > 0: plan the vision activations for images of at most this many tokens
                                 (qvl_engine_opts.plan_image_tokens); else from max_pixels */
    int max_seqs;             /* sequence slots; <= 0: chosen from the memory plan */
    int kv_block_tokens;      /* tokens per KV block; <= 0: QVL_KV_BLOCK_TOKENS */
    int token_budget;         /* most tokens in one run_batch (prefill chunks + decodes); <= 0: backend's */
    long vision_tokens;       /* most image tokens (after the 2x2 merge) in one encode_images pass; <= 0:
                                 backend's choice (at least one image of the largest admitted size) */
    long image_cache_tokens;  /* image feature rows kept at once (>= vision_tokens); <= 0: backend's */
    long gpu_mem_mib;         /* hard cap on everything the backend allocates; <= 0: none */
    int kv_dtype;             /* QVL_KV_BF16 / QVL_KV_FP8 */
    qvl_tuning tuning;        /* kernel choices; tuning.dump_dir: parity dumps (CPU and CUDA) */
    int kv_blocks;            /* > 0: at most this many KV blocks in the pool (tests: a pool that fits one
                                 sequence); <= 0: from the memory plan */
} qvl_backend_opts;

/* The limits in force after open (every field resolved, > 0). The engine never exceeds them. */
typedef struct {
    int max_seqs;             /* sequence slots */
    int kv_blocks;            /* blocks in the KV pool (block ids 0 .. kv_blocks-1) */
    int kv_block_tokens;      /* tokens per block */
    int token_budget;         /* rows per run_batch */
    long max_model_len;       /* tokens per sequence (its block table holds at most
                                 ceil(max_model_len / kv_block_tokens) blocks) */
    long vision_tokens;       /* image tokens per encode_images pass; one image of the largest
                                 admitted size always fits alone */
    long image_cache_tokens;  /* image feature rows kept at once over all slots (from encode_images
                                 until seq_drop_images / seq_free); >= vision_tokens */
    long max_image_tokens;    /* the largest single image the plan admits, tokens */
} qvl_backend_limits;

/* How the next token of a sequence is picked (engine/sampler.c semantics on every backend). */
typedef struct {
    int do_sample;
    float temperature;
    int top_k;
    float top_p;
    float repetition_penalty;
    float presence_penalty;
} qvl_pick_params;

typedef struct {
    const char *name;                              /* "cpu", "cuda" */
    /* Usable devices of this kind (the CPU: 1). The engine's QVL_DEVICE_AUTO takes "cuda" when it
     * reports > 0. Creates no context. */
    int (*devices)(void);
    /* Loads the model and plans memory; NULL + error (QVL_ERR_NO_MEMORY when the plan does not fit). */
    qvl_backend *(*open)(const qvl_backend_opts *o);
    void (*close)(qvl_backend *b);
    const qvl_config *(*config)(const qvl_backend *b);
    /* The plan in force (sequences resolved, KV blocks counted); CPU: host figures. */
    const qvl_mem_plan *(*plan)(const qvl_backend *b);
    void (*limits)(const qvl_backend *b, qvl_backend_limits *out);

    /* A sequence slot starts a request: its picking settings, its random stream (uniforms, one per
     * sampled pick in order; copied; n_uniforms <= max_model_len) and the prompt ids (seen by the
     * repetition penalty). Each id the backend picks for the slot counts as generated from then on
     * (penalties), as qvl_sampler_accept does. Returns 0 or -1 + error. */
    int (*seq_begin)(qvl_backend *b, int seq, const qvl_pick_params *p, const double *uniforms, int n_uniforms,
                     const int32_t *prompt, int n_prompt);
    /* The KV blocks of a sequence, in order (the whole block table, which only grows while the
     * sequence lives; blocks from the engine's pool). */
    int (*seq_blocks)(qvl_backend *b, int seq, const int32_t *blocks, int n_blocks);
    /* The sequence's image features are no longer needed (its prompt has run): their room in the
     * image cache is free again. */
    void (*seq_drop_images)(qvl_backend *b, int seq);
    /* Ends a sequence: its image features and picking state are dropped (its KV blocks are the
     * engine's to hand out again). */
    void (*seq_free)(qvl_backend *b, int seq);

    /* Runs the vision tower on n images together (attention stays within each image) and keeps
     * their features for sequence seqs[i] (appended to that sequence's image rows in order). The
     * features must equal those of encoding each image alone (CPU: bit for bit). Returns 0, or -1
     * + error (nothing kept: the engine encodes the images again one by one to find a bad one). */
    int (*encode_images)(qvl_backend *b, const qvl_pixel_values *const *pv, const int *seqs, int n);

    /* One forward pass over the batch; picked[j] receives the next id of the j-th row with pick = 1
     * (in row order). logits, when not NULL, receives those rows' [vocab] float logits before any
     * penalty (tests). Returns 0, or -1 + error (a device failure: the engine fails every request). */
    int (*run_batch)(qvl_backend *b, const qvl_batch *batch, int32_t *picked, float *logits);

    /* Peak device (or host) memory measured so far, MiB (= memory()->peak_mib). */
    double (*peak_mib)(const qvl_backend *b);
    /* The public memory report (qvl_engine_memory): the plan beside what was measured. The
     * backend samples its meter after open and whenever it chooses (e.g. at seq_free). */
    int (*memory)(const qvl_backend *b, qvl_memory_info *out);
    const char *(*device_name)(const qvl_backend *b);
} qvl_backend_ops;

/* The backends compiled into this build: "cpu" always, "cuda" when built with CUDA. NULL + error
 * (QVL_ERR_UNSUPPORTED) for a name not built in. */
const qvl_backend_ops *qvl_backend_find(const char *name);

#endif
