/* The Qwen3-VL forward pass on the CPU: the vision tower for one image and the text decoder for
 * a chunk of tokens with a KV cache. Read vision.c and text.c top to bottom next to
 * transformers' modeling_qwen3_vl.py; every stage is dumped under the names of the reference
 * fixtures (tests/fixtures/tiny/ref) into dump_dir when one is given (qvl_tuning.dump_dir). */
#ifndef QVL_CPU_FORWARD_H
#define QVL_CPU_FORWARD_H
#include <stdint.h>

#include "backend/cpu/ops.h"
#include "backend/cpu/pool.h"
#include "model/config.h"
#include "model/model.h"
#include "model/weights.h"

/* pixels: [grid_t*grid_h*grid_w, C*Tp*P*P] rows in merge-block order (spec 2.1 step 6).
 * embeds: [n/4, D]; deepstack[j]: [n/4, D] for j < n_deepstack. Returns 0 or -1 + qvl_error. */
int qvl_cpu_vision_forward(qvl_pool *pool, const qvl_config *cfg, const qvl_vision_w *w, const float *pixels,
                           int grid_t, int grid_h, int grid_w, float *embeds, float *const *deepstack,
                           const char *dump_dir);

/* Several images in one pass (attention within each frame of each image): the same features as one
 * pass per image, bit for bit. Dumps (dump_dir) only when n_img == 1. */
typedef struct {
    const float *pixels;
    int grid_t, grid_h, grid_w;
    float *embeds;
    float *const *deepstack;
} qvl_cpu_vision_image;
int qvl_cpu_vision_forward_many(qvl_pool *pool, const qvl_config *cfg, const qvl_vision_w *w,
                                const qvl_cpu_vision_image *img, int n_img, const char *dump_dir);

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

/* ---- many sequences in one pass (the CPU backend's run_batch) ----
 * The KV cache lives in blocks of block_tokens rows: block b holds [K: layers][block_tokens][kv]
 * then [V: layers][block_tokens][kv] elements, float32, or e4m3 bytes with fp8 (kv_fp8.h: each new
 * K and V row is rounded to e4m3 as it is written, before any query reads it, its own included).
 * Every stage runs over all rows at once; attention runs per sequence over its own blocks (segs).
 * A row's results depend only on that row and its sequence's cache: with the float32 cache the
 * same bits as running the sequence alone (qvl_cpu_text_forward). */
typedef struct {
    void *const *blocks;
    int block_tokens;
    int fp8;                            /* 1: e4m3 elements */
} qvl_cpu_kv_blocks;

typedef struct {
    int n;                              /* rows */
    const int32_t *ids;                 /* [n] */
    const int32_t *pos[3];              /* T, H, W positions, each [n] */
    const float *const *image_embed;    /* [n] the vision row of an image pad, else NULL */
    const float *const *image_deepstack[QVL_MAX_DEEPSTACK]; /* [n_deepstack][n] (image rows only) */
    int n_deepstack;
    const int32_t *kv_block, *kv_row;   /* [n] where each row's K and V go */
    qvl_attn_seg *segs;                 /* one per sequence: its rows (row0, n_q), causal_pos0 = the first
                                           row's cache index, n_kv, table */
    int n_segs;
    const int *pick_rows;               /* [n_pick] rows whose logits are wanted, in order */
    int n_pick;
} qvl_cpu_batch_rows;

/* Activations for max_rows rows, max_picks logits rows, attention over at most max_kv keys. */
typedef struct {
    int max_rows, max_picks, max_kv;
    float *x, *y, *q, *att, *gate, *up, *k_new, *v_new, *cos, *sin, *inv_freq, *scores, *last;
    qvl_attn_seg *segs;                 /* [max_rows] room for the caller's segments */
    float *arena;
} qvl_cpu_batch_state;

int qvl_cpu_batch_state_init(qvl_cpu_batch_state *s, const qvl_config *cfg, int max_rows, int max_picks, int max_kv,
                             int threads);
void qvl_cpu_batch_state_free(qvl_cpu_batch_state *s);
/* logits: [n_pick][vocab]. dump: as qvl_cpu_text_forward (a suffix, or NULL for none). */
void qvl_cpu_text_forward_batch(qvl_pool *pool, const qvl_config *cfg, const qvl_text_w *w, qvl_cpu_batch_state *s,
                                const qvl_cpu_kv_blocks *kvb, const qvl_cpu_batch_rows *b, float *logits,
                                const char *dump, const char *dump_dir);

#endif
