/* A Qwen3-VL model on the CPU reference backend: weights bound from the checkpoint (computed in
 * F32 whatever the stored dtype), the vision tower, and the text decoder with a KV cache.
 * Reference: docs/model.md sections 4-5. The forward pass reads top to bottom in src/backend/cpu/. */
#ifndef QVL_MODEL_H
#define QVL_MODEL_H
#include <stddef.h>
#include <stdint.h>

#include "image/image.h"
#include "model/config.h"
#include "model/weights.h"

typedef struct qvl_model qvl_model;

/* Loads DIR (config + safetensors), checks every tensor the model needs (name, shape, dtype),
 * refuses quantized checkpoints ("not supported yet"). threads: 0 = all cores. A model runs one
 * call at a time (its worker threads are shared by encode/prefill/decode). */
qvl_model *qvl_model_open(const char *model_dir, int threads);
void qvl_model_close(qvl_model *m);
/* Parity: every stage of later forward passes written as DIR/<name>.npy (qvl_tuning.dump_dir; the
 * string must outlive the model); NULL: no dumps. */
void qvl_model_set_dump_dir(qvl_model *m, const char *dir);
const qvl_config *qvl_model_config(const qvl_model *m);
/* Worker threads the model computes with. */
int qvl_model_threads(const qvl_model *m);

/* For backends built on the CPU model (backend/cpu/cpu_backend.c): the F32 weights, the worker
 * threads and the dump folder. */
struct qvl_pool;
const qvl_weights *qvl_model_weights(const qvl_model *m);
struct qvl_pool *qvl_model_pool(const qvl_model *m);
const char *qvl_model_dump_dir(const qvl_model *m);

/* Vision tower output for one image: merged tokens in <|image_pad|> order. */
typedef struct {
    float *embeds;                              /* [n_tokens, text hidden] */
    float *deepstack[QVL_MAX_DEEPSTACK];        /* n_deepstack x [n_tokens, text hidden] */
    int n_deepstack;
    int n_tokens;
    int grid_t, grid_h, grid_w;                 /* in patches */
} qvl_vision_out;

int qvl_model_encode_image(qvl_model *m, const qvl_pixel_values *pv, qvl_vision_out *out);
/* n images through the vision tower in one pass (attention within each image): out[i] is what
 * qvl_model_encode_image gives for pv[i], bit for bit. On failure nothing is kept (out zeroed).
 * Dumps only for n == 1. */
int qvl_model_encode_images(qvl_model *m, const qvl_pixel_values *const *pv, int n, qvl_vision_out *out);
void qvl_vision_out_free(qvl_vision_out *v);

/* MRoPE position ids (get_rope_index, spec 5.4) for a prompt: pos is [3][n] (T row, H row, W row).
 * grids holds (t, h, w) in patches for each image in order of appearance. Returns 0 or -1 + error
 * (pad count not matching the grids). */
int qvl_mrope_positions(const int32_t *ids, int n, int image_token_id, const int (*grids)[3],
                        int n_images, int merge_size, int32_t *pos, int *rope_delta);

/* One sequence being generated: KV cache for max_len tokens, position bookkeeping. */
typedef struct qvl_seq qvl_seq;
qvl_seq *qvl_seq_new(qvl_model *m, int max_len);
/* Same, with prompts run through the decoder `chunk` tokens at a time (qvl_seq_new: 256); the
 * activation memory scales with chunk, the KV cache with max_len. Results do not depend on it. */
qvl_seq *qvl_seq_new_chunked(qvl_model *m, int max_len, int chunk);
void qvl_seq_free(qvl_seq *s);
int qvl_seq_len(const qvl_seq *s);
/* Empties the sequence (a new prompt reuses its KV cache memory). */
void qvl_seq_reset(qvl_seq *s);
/* MRoPE offset of the next token: the token at cache index p has position p + rope_delta. */
int qvl_seq_rope_delta(const qvl_seq *s);

/* Runs the prompt; image-pad tokens take the rows of images[0..n_images) in order (with their
 * deepstack features). logits (NULL: not computed) receives [vocab] float32 lm_head outputs for
 * the last prompt token, i.e. the scores of the next token (computed in F32 throughout; no bf16
 * rounding). A prompt that does not fit max_len, ids outside the vocabulary or pad counts not
 * matching the images are errors. A later prefill on a non-empty sequence continues it (e.g. the
 * next turn of a chat): its positions resume after the cached tokens, as if the whole
 * conversation were one prompt.
 * With a dump folder set (qvl_model_set_dump_dir), every stage is written under the reference fixture names (text.embed,
 * text.layer<l>.in/.out, text.norm; prompts longer than one chunk get "@<first index>" suffixes);
 * qvl_model_encode_image dumps vision.* the same way (the last image encoded wins). */
int qvl_seq_prefill(qvl_model *m, qvl_seq *s, const int32_t *ids, int n, const qvl_vision_out *images,
                    int n_images, float *logits);
/* Appends one token to the cache and writes the [vocab] float32 logits of the token after it. */
int qvl_seq_decode(qvl_model *m, qvl_seq *s, int32_t id, float *logits);

#endif
