/* Weight binding: walks the tensor roles of tensor_names.h twice, first to size the single
 * float32 buffer, then to convert each tensor into it and point the structs at it. */
#include "model/weights.h"

#include <stdlib.h>
#include <string.h>

#include "model/quant.h"
#include "model/tensor_names.h"
#include "util/error.h"

typedef struct {
    const qvl_config *cfg;
    const qvl_safetensors *st;
    float *data;        /* NULL while counting */
    size_t used;
    int failed;
    qvl_weights *w;     /* receives the packed Linears (model/quant.h) */
    int n_q;
} binder;

/* Points *dst at role's tensor (of block, merger or layer index) converted to float32. */
static void bind(binder *b, const float **dst, qvl_tensor_role role, int index) {
    if (b->failed) return;
    qvl_tensor_spec s;
    qvl_tensor_role_spec(b->cfg, role, index, &s);
    if (qvl_quant_linear_stored(b->cfg, b->st, &s)) { /* stays packed; dequantized per tile when used */
        if (b->data) {
            qvl_qweight *q = qvl_qweight_load(b->cfg, b->st, &s);
            if (!q) {
                b->failed = 1;
                return;
            }
            b->w->qw[b->w->n_qw++] = q;
            *dst = (const float *)(const void *)q;
        }
        b->n_q++;
        return;
    }
    const qvl_tensor *t = qvl_st_find(b->st, s.name);
    if (!t) {
        b->failed = 1;
        qvl_errorf("%s: missing tensor %s", qvl_st_path(b->st), s.name);
        return;
    }
    size_t n = (size_t)qvl_tensor_numel(t);
    if (b->data) {
        if (qvl_tensor_to_f32(t, b->data + b->used) != 0) {
            b->failed = 1;
            return;
        }
        *dst = b->data + b->used;
    }
    b->used += n;
}

/* index -1: the main merger; k >= 0: deepstack merger k. */
static void bind_merger(binder *b, qvl_merger_w *m, int index) {
    bind(b, &m->norm_w, QVL_TN_MG_NORM_W, index);
    bind(b, &m->norm_b, QVL_TN_MG_NORM_B, index);
    bind(b, &m->fc1_w, QVL_TN_MG_FC1_W, index);
    bind(b, &m->fc1_b, QVL_TN_MG_FC1_B, index);
    bind(b, &m->fc2_w, QVL_TN_MG_FC2_W, index);
    bind(b, &m->fc2_b, QVL_TN_MG_FC2_B, index);
}

static void bind_all(binder *b, qvl_weights *w) {
    const qvl_config *cfg = b->cfg;
    qvl_vision_w *v = &w->vision;
    bind(b, &v->patch_w, QVL_TN_PATCH_W, 0);
    bind(b, &v->patch_b, QVL_TN_PATCH_B, 0);
    bind(b, &v->pos_embed, QVL_TN_POS_EMBED, 0);
    for (int i = 0; i < cfg->vision.depth; i++) {
        qvl_vision_block_w *k = &v->blocks[i];
        bind(b, &k->norm1_w, QVL_TN_VB_NORM1_W, i);
        bind(b, &k->norm1_b, QVL_TN_VB_NORM1_B, i);
        bind(b, &k->qkv_w, QVL_TN_VB_QKV_W, i);
        bind(b, &k->qkv_b, QVL_TN_VB_QKV_B, i);
        bind(b, &k->proj_w, QVL_TN_VB_PROJ_W, i);
        bind(b, &k->proj_b, QVL_TN_VB_PROJ_B, i);
        bind(b, &k->norm2_w, QVL_TN_VB_NORM2_W, i);
        bind(b, &k->norm2_b, QVL_TN_VB_NORM2_B, i);
        bind(b, &k->fc1_w, QVL_TN_VB_FC1_W, i);
        bind(b, &k->fc1_b, QVL_TN_VB_FC1_B, i);
        bind(b, &k->fc2_w, QVL_TN_VB_FC2_W, i);
        bind(b, &k->fc2_b, QVL_TN_VB_FC2_B, i);
    }
    bind_merger(b, &v->merger, -1);
    for (int j = 0; j < cfg->vision.n_deepstack; j++) bind_merger(b, &v->deepstack[j], j);
    qvl_text_w *t = &w->text;
    bind(b, &t->embed, QVL_TN_EMBED, 0);
    for (int l = 0; l < cfg->text.num_layers; l++) {
        qvl_text_layer_w *L = &t->layers[l];
        bind(b, &L->in_norm, QVL_TN_TL_IN_NORM, l);
        bind(b, &L->q_w, QVL_TN_TL_Q, l);
        bind(b, &L->k_w, QVL_TN_TL_K, l);
        bind(b, &L->v_w, QVL_TN_TL_V, l);
        bind(b, &L->o_w, QVL_TN_TL_O, l);
        bind(b, &L->q_norm, QVL_TN_TL_Q_NORM, l);
        bind(b, &L->k_norm, QVL_TN_TL_K_NORM, l);
        bind(b, &L->post_norm, QVL_TN_TL_POST_NORM, l);
        bind(b, &L->gate_w, QVL_TN_TL_GATE, l);
        bind(b, &L->up_w, QVL_TN_TL_UP, l);
        bind(b, &L->down_w, QVL_TN_TL_DOWN, l);
    }
    bind(b, &t->norm, QVL_TN_NORM, 0);
    if (cfg->text.tie_word_embeddings)
        t->lm_head = t->embed;
    else
        bind(b, &t->lm_head, QVL_TN_LM_HEAD, 0);
}

int qvl_weights_load(qvl_weights *w, const qvl_config *cfg, const qvl_safetensors *st) {
    memset(w, 0, sizeof *w);
    w->vision.blocks = calloc((size_t)cfg->vision.depth, sizeof *w->vision.blocks);
    w->text.layers = calloc((size_t)cfg->text.num_layers, sizeof *w->text.layers);
    if (!w->vision.blocks || !w->text.layers) {
        qvl_weights_free(w);
        return qvl_errorf("%s: out of memory for the weight tables", qvl_st_path(st));
    }
    binder count = {cfg, st, NULL, 0, 0, w, 0};
    bind_all(&count, w);
    if (count.failed) {
        qvl_weights_free(w);
        return -1;
    }
    w->data = malloc(count.used * sizeof(float));
    w->qw = calloc((size_t)count.n_q + 1, sizeof *w->qw);
    if (!w->data || !w->qw) {
        qvl_weights_free(w);
        return qvl_errorf("%s: out of memory converting %zu weights to float32", qvl_st_path(st), count.used);
    }
    w->n_floats = count.used;
    binder fill = {cfg, st, w->data, 0, 0, w, 0};
    bind_all(&fill, w);
    if (fill.failed) {
        qvl_weights_free(w);
        return -1;
    }
    return 0;
}

void qvl_weights_free(qvl_weights *w) {
    for (int i = 0; i < w->n_qw; i++) qvl_qweight_free(w->qw[i]);
    free(w->qw);
    free(w->data);
    free(w->vision.blocks);
    free(w->text.layers);
    memset(w, 0, sizeof *w);
}
