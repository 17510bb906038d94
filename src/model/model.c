/* The model API of model.h on the CPU reference backend: load + check + convert the checkpoint,
 * run the vision tower per image, and keep per-sequence decoder state (KV cache, MRoPE offset). */
#include "model/model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/forward.h"
#include "backend/cpu/pool.h"
#include "io/safetensors.h"
#include "model/tensor_check.h"
#include "model/weights.h"
#include "util/error.h"

enum { DEFAULT_PREFILL_CHUNK = 256 };

struct qvl_model {
    qvl_config cfg;
    qvl_weights w;
    qvl_pool *pool;
    const char *dump_dir; /* qvl_model_set_dump_dir */
};

struct qvl_seq {
    qvl_cpu_text_state st;
    int max_len, len, rope_delta;
    int32_t *pos;       /* [3][max_len] scratch for a prompt's MRoPE positions */
    int32_t *vis_row;   /* [max_len] image row of each prompt token, -1 for text */
};

/* What the forward pass needs beyond qvl_config_load's validation (which already checks the head
 * layouts, mrope_section, the square position table, out_hidden_size and the deepstack indexes):
 * a position table of at least 2 x 2, for the bilinear interpolation. */
static int check_dims(const qvl_config *c) {
    int n = c->vision.num_position_embeddings;
    if (n < 4)
        return qvl_errorf("%s/config.json: vision num_position_embeddings %d is below the 2 x 2 minimum", c->model_dir,
                          n);
    return 0;
}

void qvl_model_set_dump_dir(qvl_model *m, const char *dir) { m->dump_dir = dir && dir[0] ? dir : NULL; }

qvl_model *qvl_model_open(const char *model_dir, int threads) {
    qvl_model *m = calloc(1, sizeof *m);
    if (!m) {
        qvl_errorf("%s: out of memory", model_dir);
        return NULL;
    }
    qvl_safetensors *st = NULL;
    if (qvl_config_load(model_dir, &m->cfg) != 0 || check_dims(&m->cfg) != 0) goto fail;
    if (!(st = qvl_st_open(model_dir))) goto fail;
    if (qvl_checkpoint_check(&m->cfg, st) != 0) goto fail;
    if (qvl_weights_load(&m->w, &m->cfg, st) != 0) goto fail;
    qvl_st_close(st); /* everything is float32 in m->w now */
    st = NULL;
    if (!(m->pool = qvl_pool_new(threads))) goto fail;
    return m;
fail:
    qvl_st_close(st);
    qvl_model_close(m);
    return NULL;
}

void qvl_model_close(qvl_model *m) {
    if (!m) return;
    qvl_pool_free(m->pool);
    qvl_weights_free(&m->w);
    free(m);
}

const qvl_config *qvl_model_config(const qvl_model *m) { return &m->cfg; }

int qvl_model_threads(const qvl_model *m) { return qvl_pool_threads(m->pool); }

/* Checks one image's pixel rows against the model and allocates its output. */
static int vision_out_init(const qvl_config *cfg, const qvl_pixel_values *pv, qvl_vision_out *out) {
    const qvl_vision_config *vc = &cfg->vision;
    const int M = vc->spatial_merge_size, D = cfg->text.hidden_size;
    const int row_len = vc->in_channels * vc->temporal_patch_size * vc->patch_size * vc->patch_size;
    memset(out, 0, sizeof *out);
    if (!pv || !pv->data) return qvl_errorf("image: no pixel values");
    if (pv->row_len != row_len)
        return qvl_errorf("image: pixel rows of %d values, the model expects %d", pv->row_len, row_len);
    if (pv->grid_t < 1 || pv->grid_h < M || pv->grid_w < M || pv->grid_h % M || pv->grid_w % M ||
        pv->num_patches != pv->grid_t * pv->grid_h * pv->grid_w)
        return qvl_errorf("image: patch grid %dx%dx%d (%d patches) is not a multiple of the %dx%d merge", pv->grid_t,
                          pv->grid_h, pv->grid_w, pv->num_patches, M, M);
    int n_tok = pv->num_patches / (M * M);
    out->n_tokens = n_tok;
    out->n_deepstack = vc->n_deepstack;
    out->grid_t = pv->grid_t;
    out->grid_h = pv->grid_h;
    out->grid_w = pv->grid_w;
    out->embeds = malloc((size_t)n_tok * D * sizeof(float));
    int ok = out->embeds != NULL;
    for (int j = 0; j < vc->n_deepstack; j++) ok = ok && (out->deepstack[j] = malloc((size_t)n_tok * D * sizeof(float)));
    if (!ok) {
        qvl_vision_out_free(out);
        return qvl_errorf("image: out of memory for %d vision tokens", n_tok);
    }
    return 0;
}

int qvl_model_encode_images(qvl_model *m, const qvl_pixel_values *const *pv, int n, qvl_vision_out *out) {
    if (n < 1) return 0;
    qvl_cpu_vision_image *im = calloc((size_t)n, sizeof *im);
    if (!im) return qvl_errorf("image: out of memory");
    int i = 0;
    for (; i < n; i++) {
        if (vision_out_init(&m->cfg, pv[i], &out[i])) break;
        im[i] = (qvl_cpu_vision_image){pv[i]->data, pv[i]->grid_t, pv[i]->grid_h, pv[i]->grid_w, out[i].embeds,
                                       out[i].deepstack};
    }
    int rc = i < n ? -1 : qvl_cpu_vision_forward_many(m->pool, &m->cfg, &m->w.vision, im, n, m->dump_dir);
    if (rc)
        for (int k = 0; k < n && k <= i; k++) qvl_vision_out_free(&out[k]);
    free(im);
    return rc;
}

int qvl_model_encode_image(qvl_model *m, const qvl_pixel_values *pv, qvl_vision_out *out) {
    memset(out, 0, sizeof *out);
    return qvl_model_encode_images(m, &pv, 1, out);
}

const qvl_weights *qvl_model_weights(const qvl_model *m) { return &m->w; }
struct qvl_pool *qvl_model_pool(const qvl_model *m) { return m->pool; }
const char *qvl_model_dump_dir(const qvl_model *m) { return m->dump_dir; }

void qvl_vision_out_free(qvl_vision_out *v) {
    if (!v) return;
    free(v->embeds);
    for (int j = 0; j < QVL_MAX_DEEPSTACK; j++) free(v->deepstack[j]);
    memset(v, 0, sizeof *v);
}

qvl_seq *qvl_seq_new_chunked(qvl_model *m, int max_len, int chunk) {
    if (max_len < 1 || chunk < 1) {
        qvl_errorf("context: max_len %d and prefill chunk %d must be positive", max_len, chunk);
        return NULL;
    }
    if (chunk > max_len) chunk = max_len;
    qvl_seq *s = calloc(1, sizeof *s);
    if (!s) {
        qvl_errorf("context: out of memory");
        return NULL;
    }
    s->max_len = max_len;
    s->pos = malloc((size_t)3 * max_len * sizeof *s->pos);
    s->vis_row = malloc((size_t)max_len * sizeof *s->vis_row);
    if (!s->pos || !s->vis_row) {
        qvl_errorf("context of %d tokens: out of memory", max_len);
        qvl_seq_free(s);
        return NULL;
    }
    if (qvl_cpu_text_state_init(&s->st, &m->cfg, max_len, chunk, qvl_pool_threads(m->pool)) != 0) {
        qvl_seq_free(s);
        return NULL;
    }
    return s;
}

qvl_seq *qvl_seq_new(qvl_model *m, int max_len) {
    return qvl_seq_new_chunked(m, max_len, DEFAULT_PREFILL_CHUNK);
}

void qvl_seq_free(qvl_seq *s) {
    if (!s) return;
    qvl_cpu_text_state_free(&s->st);
    free(s->pos);
    free(s->vis_row);
    free(s);
}

int qvl_seq_len(const qvl_seq *s) { return s->len; }
int qvl_seq_rope_delta(const qvl_seq *s) { return s->rope_delta; }

void qvl_seq_reset(qvl_seq *s) {
    s->len = 0;
    s->rope_delta = 0;
}

static int check_ids(const qvl_config *c, const int32_t *ids, int n, const char *what) {
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= c->text.vocab_size)
            return qvl_errorf("%s: token id %d at position %d is outside the vocabulary of %d", what, ids[i], i,
                              c->text.vocab_size);
    return 0;
}

int qvl_seq_prefill(qvl_model *m, qvl_seq *s, const int32_t *ids, int n, const qvl_vision_out *images,
                    int n_images, float *logits) {
    const qvl_config *c = &m->cfg;
    if (n < 1) return qvl_errorf("prompt: empty");
    if (s->len + n > s->max_len) {
        if (s->len)
            return qvl_errorf("prompt: %d more tokens after %d exceed the context of %d tokens", n, s->len,
                              s->max_len);
        return qvl_errorf("prompt: %d tokens exceed the context of %d tokens", n, s->max_len);
    }
    if (check_ids(c, ids, n, "prompt") != 0) return -1;
    if (n_images < 0 || (n_images > 0 && !images)) return qvl_errorf("prompt: bad image list");
    int grids[64][3];
    if (n_images > 64) return qvl_errorf("prompt: %d images, at most 64 are supported", n_images);
    for (int i = 0; i < n_images; i++) {
        if (images[i].n_deepstack != c->vision.n_deepstack || !images[i].embeds)
            return qvl_errorf("prompt: image %d was not encoded by this model", i + 1);
        grids[i][0] = images[i].grid_t;
        grids[i][1] = images[i].grid_h;
        grids[i][2] = images[i].grid_w;
    }
    int delta = 0;
    if (qvl_mrope_positions(ids, n, c->image_token_id, (const int(*)[3])grids, n_images,
                            c->vision.spatial_merge_size, s->pos, &delta) != 0)
        return -1;
    int offset = s->len + s->rope_delta; /* a continuation resumes where the cache left off */
    for (int i = 0; i < 3 * n; i++) s->pos[i] += offset;
    for (int i = 0, r = 0; i < n; i++) s->vis_row[i] = ids[i] == c->image_token_id && n_images > 0 ? r++ : -1;

    int chunk = s->st.chunk;
    for (int c0 = 0; c0 < n; c0 += chunk) {
        int cnt = n - c0 < chunk ? n - c0 : chunk;
        char suffix[32] = "";
        if (n > chunk) snprintf(suffix, sizeof suffix, "@%d", c0);
        qvl_cpu_text_forward(m->pool, c, &m->w.text, &s->st, ids + c0, cnt, s->len + c0, s->pos + c0, n,
                             s->vis_row + c0, images, n_images, c0 + cnt == n ? logits : NULL, suffix,
                             m->dump_dir);
    }
    s->len += n;
    s->rope_delta += delta;
    return 0;
}

int qvl_seq_decode(qvl_model *m, qvl_seq *s, int32_t id, float *logits) {
    if (s->len >= s->max_len) return qvl_errorf("generation: the context of %d tokens is full", s->max_len);
    if (check_ids(&m->cfg, &id, 1, "generation") != 0) return -1;
    int32_t p = s->len + s->rope_delta;
    int32_t pos[3] = {p, p, p};
    qvl_cpu_text_forward(m->pool, &m->cfg, &m->w.text, &s->st, &id, 1, s->len, pos, 1, NULL, NULL, 0, logits, NULL,
                         NULL);
    s->len++;
    return 0;
}
