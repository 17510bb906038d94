/* A Qwen3-VL model on one CUDA device (BF16 weights and activations, F32 accumulation; spec
 * sections 4, 5 and 8). Everything lives in one device arena planned at open from the config, the
 * context length and the largest image admitted: weights, KV cache, vision activations, workspace.
 * Nothing is allocated after open; a generation step costs one 4-byte copy (the picked id): the
 * next token is picked on the device, greedy or sampled (qvl_cuda_set_picking).
 * Without the CUDA build every function fails with "cuda: this build has no CUDA backend". */
#ifndef QVL_MODEL_CUDA_H
#define QVL_MODEL_CUDA_H
#include <stdint.h>

#include "image/image.h"
#include "model/config.h"
#include "model/mem_plan.h"
#include "qvl.h"

typedef struct qvl_cuda_model qvl_cuda_model;

typedef struct {
    long max_model_len;   /* KV cache tokens; <= 0: 8192 */
    long max_pixels;      /* largest image area (after resize) admitted; <= 0: preprocessor max_pixels */
    long gpu_mem_mib;     /* hard cap on CUDA context + arena; <= 0: none */
    int prefill_chunk;    /* tokens per prefill step; <= 0: QVL_PLAN_PREFILL_CHUNK */
    long max_image_tokens;/* > 0: vision activations for exactly this many image tokens (the data's largest;
                             qvl_plan_inputs.max_image_tokens), else from max_pixels */
    int kv_dtype;         /* QVL_PLAN_KV_BF16 (0) or QVL_PLAN_KV_FP8 (e4m3 pool; batched only, refused otherwise) */
    int vision_mlp_chunk; /* patches per vision MLP chunk; <= 0: QVL_PLAN_VISION_MLP_CHUNK */
    qvl_tuning tuning;    /* kernel choices (all zeros: the measured best) */
    /* Batched (the backend table of backend/cuda/cuda_backend.c; qvl_cuda_prefill/decode refuse):
     * a KV pool of blocks, many sequences, a token budget per pass, several images per vision pass,
     * planned by qvl_mem_plan_batched within gpu_mem_mib. Zero fields: the plan chooses. */
    int batched;
    int max_seqs;
    long kv_blocks;
    int kv_block_tokens;
    int token_budget;
    long vision_tokens;
    long image_cache_tokens;
} qvl_cuda_opts;

/* Loads DIR, plans the arena and checks it against the cap and the free device memory before
 * allocating (refusal: one line with the plan's breakdown and what to lower). */
qvl_cuda_model *qvl_cuda_model_open(const char *model_dir, const qvl_cuda_opts *o);
void qvl_cuda_model_close(qvl_cuda_model *m);
const qvl_config *qvl_cuda_model_config(const qvl_cuda_model *m);
/* The memory plan (context measured) and the arena actually reserved, MiB. */
const qvl_mem_plan *qvl_cuda_model_plan(const qvl_cuda_model *m);
double qvl_cuda_model_arena_mib(const qvl_cuda_model *m);
/* Device memory in use (cudaMemGetInfo total - free), highest value sampled after open and after
 * every call, MiB. */
double qvl_cuda_model_peak_mib(const qvl_cuda_model *m);
long qvl_cuda_model_max_image_tokens(const qvl_cuda_model *m);
const char *qvl_cuda_model_device_name(const qvl_cuda_model *m);
/* The decode GEMV choice made at open (per shape: cuBLASLt vs own kernel, microseconds). */
const char *qvl_cuda_model_gemv_report(const qvl_cuda_model *m);
/* cuBLASLt heuristic queries so far and their host milliseconds, and the milliseconds open spent
 * preparing every GEMM shape's row-count buckets (so that serving makes no such queries). */
void qvl_cuda_model_gemm_setups(const qvl_cuda_model *m, int *count, double *ms, double *prepare_ms);
/* Starts (on = 1) or stops the CUDA profiler's collection (ncu/nsys --profile-from-start off). */
void qvl_cuda_profiler(int on);

/* Pinned host buffer for BF16 pixel values (qvl_image_params.out_bf16 + bf16_buf): room for the
 * largest admitted image, allocated at open (host memory, outside the device plan), so that
 * qvl_cuda_encode_image uploads it with one asynchronous copy and no conversion kernel. Waits
 * until the last upload from it is done, so the caller may write into it. NULL (*bytes 0) when
 * unavailable (pinned memory refused): pass F32 pixel values then (both give the same result). */
void *qvl_cuda_pixel_staging(qvl_cuda_model *m, size_t *bytes);

/* Images for the next prefill: clear, then encode one or more in prompt order (their vision
 * outputs stay on the device). Returns 0, or -1 + error (too many tokens for the plan, bad grid). */
void qvl_cuda_clear_images(qvl_cuda_model *m);
int qvl_cuda_encode_image(qvl_cuda_model *m, const qvl_pixel_values *pv);
/* The same from BF16 pixel rows (pv's grid; pixels as qvl_image_params.out_bf16 writes them, e.g.
 * into qvl_cuda_pixel_staging): identical results, no conversion on the device. */
int qvl_cuda_encode_image_bf16(qvl_cuda_model *m, const qvl_pixel_values *pv, const uint16_t *pixels);

/* How the next token is picked on the device: the semantics of engine/sampler.c (same logits, same
 * uniforms: same ids). Greedy without penalties takes the plain argmax. */
typedef struct {
    int do_sample;            /* 0: greedy (argmax of the penalized logits, lowest id on ties) */
    float temperature;        /* sampling with temperature <= 0 is greedy */
    int top_k;                /* <= 0 or >= vocab: off */
    float top_p;              /* >= 1: off */
    float repetition_penalty; /* 1: off; "seen" = prompt + picked ids */
    float presence_penalty;   /* 0: off; once per distinct picked id */
} qvl_cuda_pick_params;

/* Sets the picking of the next request (kept until changed; the default is plain greedy).
 * uniforms[n_uniforms]: the request's random stream in [0, 1), one per sampled pick in order
 * (qvl_sampler_uniforms), at most the context length; uploaded once. The next prefill marks the
 * prompt ids as seen; each decode marks the id it is given as generated. Returns 0 or -1 + error. */
int qvl_cuda_set_picking(qvl_cuda_model *m, const qvl_cuda_pick_params *p, const double *uniforms, int n_uniforms);

/* Starts a new sequence with the prompt (image pads take the encoded images' rows in order).
 * Returns the picked next token id (greedy: bf16-rounded logits, lowest id on ties), or -1 + error. */
int qvl_cuda_prefill(qvl_cuda_model *m, const int32_t *ids, int n);
/* Appends id; returns the picked next id, or -1 + error (context full, bad id). */
int qvl_cuda_decode(qvl_cuda_model *m, int32_t id);
int qvl_cuda_seq_len(const qvl_cuda_model *m);
/* The last position's logits (bf16 values as float) into out[vocab]. */
int qvl_cuda_logits(qvl_cuda_model *m, float *out);

#endif
