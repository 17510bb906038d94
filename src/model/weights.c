/* Weight binding: walks the tensor names of spec section 1.3 twice, first to size the single
 * float32 buffer, then to convert each tensor into it and point the structs at it. */
#include "model/weights.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/error.h"

typedef struct {
    const qvl_safetensors *st;
    float *data;        /* NULL while counting */
    size_t used;
    int failed;
} binder;

static void bind(binder *b, const float **dst, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void bind(binder *b, const float **dst, const char *fmt, ...) {
    if (b->failed) return;
    char name[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    const qvl_tensor *t = qvl_st_find(b->st, name);
    if (!t) {
        b->failed = 1;
        qvl_errorf("%s: missing tensor %s", qvl_st_path(b->st), name);
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

static void bind_merger(binder *b, qvl_merger_w *m, const char *prefix) {
    bind(b, &m->norm_w, "%s.norm.weight", prefix);
    bind(b, &m->norm_b, "%s.norm.bias", prefix);
    bind(b, &m->fc1_w, "%s.linear_fc1.weight", prefix);
    bind(b, &m->fc1_b, "%s.linear_fc1.bias", prefix);
    bind(b, &m->fc2_w, "%s.linear_fc2.weight", prefix);
    bind(b, &m->fc2_b, "%s.linear_fc2.bias", prefix);
}

static void bind_all(binder *b, qvl_weights *w, const qvl_config *cfg) {
    qvl_vision_w *v = &w->vision;
    bind(b, &v->patch_w, "model.visual.patch_embed.proj.weight");
    bind(b, &v->patch_b, "model.visual.patch_embed.proj.bias");
    bind(b, &v->pos_embed, "model.visual.pos_embed.weight");
    for (int i = 0; i < cfg->vision.depth; i++) {
        qvl_vision_block_w *k = &v->blocks[i];
        const char *p = "model.visual.blocks";
        bind(b, &k->norm1_w, "%s.%d.norm1.weight", p, i);
        bind(b, &k->norm1_b, "%s.%d.norm1.bias", p, i);
        bind(b, &k->qkv_w, "%s.%d.attn.qkv.weight", p, i);
        bind(b, &k->qkv_b, "%s.%d.attn.qkv.bias", p, i);
        bind(b, &k->proj_w, "%s.%d.attn.proj.weight", p, i);
        bind(b, &k->proj_b, "%s.%d.attn.proj.bias", p, i);
        bind(b, &k->norm2_w, "%s.%d.norm2.weight", p, i);
        bind(b, &k->norm2_b, "%s.%d.norm2.bias", p, i);
        bind(b, &k->fc1_w, "%s.%d.mlp.linear_fc1.weight", p, i);
        bind(b, &k->fc1_b, "%s.%d.mlp.linear_fc1.bias", p, i);
        bind(b, &k->fc2_w, "%s.%d.mlp.linear_fc2.weight", p, i);
        bind(b, &k->fc2_b, "%s.%d.mlp.linear_fc2.bias", p, i);
    }
    bind_merger(b, &v->merger, "model.visual.merger");
    for (int j = 0; j < cfg->vision.n_deepstack; j++) {
        char prefix[64];
        snprintf(prefix, sizeof prefix, "model.visual.deepstack_merger_list.%d", j);
        bind_merger(b, &v->deepstack[j], prefix);
    }
    qvl_text_w *t = &w->text;
    const char *p = "model.language_model";
    bind(b, &t->embed, "%s.embed_tokens.weight", p);
    for (int l = 0; l < cfg->text.num_layers; l++) {
        qvl_text_layer_w *L = &t->layers[l];
        bind(b, &L->in_norm, "%s.layers.%d.input_layernorm.weight", p, l);
        bind(b, &L->q_w, "%s.layers.%d.self_attn.q_proj.weight", p, l);
        bind(b, &L->k_w, "%s.layers.%d.self_attn.k_proj.weight", p, l);
        bind(b, &L->v_w, "%s.layers.%d.self_attn.v_proj.weight", p, l);
        bind(b, &L->o_w, "%s.layers.%d.self_attn.o_proj.weight", p, l);
        bind(b, &L->q_norm, "%s.layers.%d.self_attn.q_norm.weight", p, l);
        bind(b, &L->k_norm, "%s.layers.%d.self_attn.k_norm.weight", p, l);
        bind(b, &L->post_norm, "%s.layers.%d.post_attention_layernorm.weight", p, l);
        bind(b, &L->gate_w, "%s.layers.%d.mlp.gate_proj.weight", p, l);
        bind(b, &L->up_w, "%s.layers.%d.mlp.up_proj.weight", p, l);
        bind(b, &L->down_w, "%s.layers.%d.mlp.down_proj.weight", p, l);
    }
    bind(b, &t->norm, "%s.norm.weight", p);
    if (cfg->text.tie_word_embeddings)
        t->lm_head = t->embed;
    else
        bind(b, &t->lm_head, "lm_head.weight");
}

int qvl_weights_load(qvl_weights *w, const qvl_config *cfg, const qvl_safetensors *st) {
    memset(w, 0, sizeof *w);
    w->vision.blocks = calloc((size_t)cfg->vision.depth, sizeof *w->vision.blocks);
    w->text.layers = calloc((size_t)cfg->text.num_layers, sizeof *w->text.layers);
    if (!w->vision.blocks || !w->text.layers) {
        qvl_weights_free(w);
        return qvl_errorf("%s: out of memory for the weight tables", qvl_st_path(st));
    }
    binder count = {st, NULL, 0, 0};
    bind_all(&count, w, cfg);
    if (count.failed) {
        qvl_weights_free(w);
        return -1;
    }
    w->data = malloc(count.used * sizeof(float));
    if (!w->data) {
        qvl_weights_free(w);
        return qvl_errorf("%s: out of memory converting %zu weights to float32", qvl_st_path(st), count.used);
    }
    w->n_floats = count.used;
    binder fill = {st, w->data, 0, 0};
    bind_all(&fill, w, cfg);
    if (fill.failed) {
        qvl_weights_free(w);
        return -1;
    }
    return 0;
}

void qvl_weights_free(qvl_weights *w) {
    free(w->data);
    free(w->vision.blocks);
    free(w->text.layers);
    memset(w, 0, sizeof *w);
}
