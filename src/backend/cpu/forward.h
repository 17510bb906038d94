/* The Qwen3-VL forward pass on the CPU: the vision tower for one image and the text decoder for
 * a chunk of tokens with a KV cache. Read vision.c and text.c top to bottom next to
 * transformers' modeling_qwen3_vl.py; every stage is dumped under the names of the reference
 * fixtures (tests/fixtures/tiny/ref) into dump_dir when one is given (qvl_tuning.dump_dir). */
#ifndef QVL_CPU_FORWARD_H
#define QVL_CPU_FORWARD_H
#include <stdint.h>

#include "backend/cpu/pool.h"
#include "model/config.h"
#include "model/model.h"
#include "model/weights.h"

/* pixels: [grid_t*grid_h*grid_w, C*Tp*P*P] rows in merge-block order (spec 2.1 step 6).
 * embeds: [n/4, D]; deepstack[j]: [n/4, D] for j < n_deepstack. Returns 0 or -1 + qvl_error. */
int qvl_cpu_vision_forward(qvl_pool *pool, const qvl_config *cfg, const qvl_vision_w *w, const float *pixels,
                           int grid_t, int grid_h, int grid_w, float *embeds, float *const *deepstack,
                           const char *dump_dir);

/* Decoder state of one sequence: the KV cache and the activations of one chunk of tokens,
 * planned once from the config (no allocation while generating). */
typedef struct {
    int max_len, chunk, kv_dim;
    float *k_cache, *v_cache;     /* [layers][max_len][kv_dim] (keys after q/k-norm and RoPE) */
    float *x, *y, *q, *att;       /* [chunk][D], [chunk][D], [chunk][Hq*hd], [chunk][Hq*hd] */
    float *gate, *up;             /* [chunk][I] */
    float *cos, *sin;             /* [chunk][hd] */
    float *inv_freq;              /* [hd/2] */
    float *scores;                /* attention scratch: qvl_cpu_attention_scratch(threads, max_len) */
    float *arena;
} qvl_cpu_text_state;

int qvl_cpu_text_state_init(qvl_cpu_text_state *s, const qvl_config *cfg, int max_len, int chunk, int threads);
void qvl_cpu_text_state_free(qvl_cpu_text_state *s);

/* Runs n <= chunk tokens at cache indices p0..p0+n-1. pos: T, H, W rows, each [n] (pos_stride apart).
 * vis_row[i] >= 0 marks an image token taking row vis_row[i] of the images' concatenated rows
 * (embeds replace the token embedding; deepstack[l] is added after layer l); NULL = all text.
 * logits: [vocab] for the last token, or NULL. dump: NULL = no dumps, else a suffix for the names
 * of the stages written into dump_dir (NULL: none). */
void qvl_cpu_text_forward(qvl_pool *pool, const qvl_config *cfg, const qvl_text_w *w, qvl_cpu_text_state *s,
                          const int32_t *ids, int n, int p0, const int32_t *pos, int pos_stride,
                          const int32_t *vis_row, const qvl_vision_out *images, int n_images, float *logits,
                          const char *dump, const char *dump_dir);

#endif
