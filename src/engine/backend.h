/* The one interface every backend implements (CPU reference, CUDA). The engine above it never asks
 * which device it runs on: it opens a backend through the table of the device chosen, then calls
 * these operations. A build without CUDA simply has no CUDA backend registered (see
 * qvl_backend_find).
 *
 * Model vs. state: the backend holds the loaded model (read-only weights) and a pool of
 * max_seqs sequence slots; a slot's state is its KV blocks (the engine's block table, passed to the
 * backend), its image features and its picking state (sampling settings and random stream). The
 * KV cache is a pool of fixed-size blocks carved from the backend's planned memory; the engine's
 * kv_pool decides which blocks a sequence owns. */
#ifndef QVL_ENGINE_BACKEND_H
#define QVL_ENGINE_BACKEND_H
#include <stdint.h>

#include "engine/batch.h"
#include "image/image.h"
#include "model/config.h"
#include "model/mem_plan.h"
#include "qvl.h"

typedef struct qvl_backend qvl_backend;

/* What the engine asks of a backend at open. */
typedef struct {
    const char *model_dir;
    int threads;              /* CPU worker threads */
    long max_model_len;       /* longest sequence (prompt + answer) */
    long max_pixels;          /* largest image area admitted (the vision activations are planned for it) */
    int max_seqs;             /* sequence slots; <= 0: chosen from the memory plan */
    int kv_block_tokens;      /* tokens per KV block */
    int token_budget;         /* most tokens in one run_batch (prefill chunks + decodes) */
    long gpu_mem_mib;         /* hard cap on everything the backend allocates; <= 0: none */
    int kv_dtype;             /* QVL_KV_BF16 / QVL_KV_FP8 */
    qvl_tuning tuning;
} qvl_backend_opts;

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
    /* Loads the model and plans memory; NULL + error (QVL_ERR_NO_MEMORY when the plan does not fit). */
    qvl_backend *(*open)(const qvl_backend_opts *o);
    void (*close)(qvl_backend *b);
    const qvl_config *(*config)(const qvl_backend *b);
    /* The plan in force (max_seqs resolved, KV blocks counted). */
    const qvl_mem_plan *(*plan)(const qvl_backend *b);
    int (*kv_blocks)(const qvl_backend *b);        /* blocks in the pool */
    int (*max_seqs)(const qvl_backend *b);

    /* A sequence slot starts a request: its picking settings, its random stream (uniforms, one per
     * sampled pick; copied) and the prompt ids (seen by the repetition penalty). */
    int (*seq_begin)(qvl_backend *b, int seq, const qvl_pick_params *p, const double *uniforms, int n_uniforms,
                     const int32_t *prompt, int n_prompt);
    /* The KV blocks of a sequence, in order (the block table; blocks from the engine's pool). */
    int (*seq_blocks)(qvl_backend *b, int seq, const int32_t *blocks, int n_blocks);
    /* Ends a sequence: its image features and picking state are dropped. */
    void (*seq_free)(qvl_backend *b, int seq);

    /* Runs the vision tower on n images together (attention stays within each image) and keeps
     * their features for sequence seqs[i] (appended to that sequence's image rows in order). */
    int (*encode_images)(qvl_backend *b, const qvl_pixel_values *const *pv, const int *seqs, int n);

    /* One forward pass over the batch; picked[j] receives the next id of the j-th row with pick = 1
     * (in row order). logits, when not NULL, receives those rows' [vocab] float logits (tests). */
    int (*run_batch)(qvl_backend *b, const qvl_batch *batch, int32_t *picked, float *logits);

    /* Peak device (or host) memory measured so far, MiB. */
    double (*peak_mib)(const qvl_backend *b);
    const char *(*device_name)(const qvl_backend *b);
} qvl_backend_ops;

/* The backends compiled into this build: "cpu" always, "cuda" when built with CUDA. NULL + error
 * for a name not built in. */
const qvl_backend_ops *qvl_backend_find(const char *name);

#endif
