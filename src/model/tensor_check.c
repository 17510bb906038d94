/* Expected Qwen3-VL tensors (spec 1.3). Linear weights are [out, in]; LayerNorms (vision) carry a
 * bias, RMSNorms (text) do not; no text Linear has a bias. */
#include "model/tensor_check.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/error.h"

static const char *group_names[QVL_GROUP_COUNT] = {"vision", "merger", "deepstack", "text", "lm_head"};

const char *qvl_param_group_name(qvl_param_group g) { return (unsigned)g < QVL_GROUP_COUNT ? group_names[g] : "?"; }

typedef struct {
    qvl_tensor_spec *v;
    int n, cap;
    int oom;
} spec_list;

static void add(spec_list *l, qvl_param_group g, int ndim, const int64_t *shape, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static void add(spec_list *l, qvl_param_group g, int ndim, const int64_t *shape, const char *fmt, ...) {
    if (l->oom) return;
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 512;
        qvl_tensor_spec *p = realloc(l->v, (size_t)cap * sizeof *p);
        if (!p) {
            l->oom = 1;
            return;
        }
        l->v = p;
        l->cap = cap;
    }
    qvl_tensor_spec *s = &l->v[l->n++];
    memset(s, 0, sizeof *s);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->name, sizeof s->name, fmt, ap);
    va_end(ap);
    s->ndim = ndim;
    memcpy(s->shape, shape, (size_t)ndim * sizeof *shape);
    s->group = g;
}

#define SHAPE(...) (const int64_t[]){__VA_ARGS__}
#define ADD1(l, g, a, ...) add(l, g, 1, SHAPE(a), __VA_ARGS__)
#define ADD2(l, g, a, b, ...) add(l, g, 2, SHAPE(a, b), __VA_ARGS__)

/* Linear [out, in] with bias [out]. */
static void linear_bias(spec_list *l, qvl_param_group g, int64_t out, int64_t in, const char *prefix) {
    ADD2(l, g, out, in, "%s.weight", prefix);
    ADD1(l, g, out, "%s.bias", prefix);
}

static void layer_norm(spec_list *l, qvl_param_group g, int64_t d, const char *prefix) {
    ADD1(l, g, d, "%s.weight", prefix);
    ADD1(l, g, d, "%s.bias", prefix);
}

qvl_tensor_spec *qvl_expected_tensors(const qvl_config *cfg, int *n) {
    const qvl_vision_config *v = &cfg->vision;
    const qvl_text_config *t = &cfg->text;
    spec_list l = {0};
    char p[96];
    int64_t dv = v->hidden_size, iv = v->intermediate_size, d = t->hidden_size;
    int64_t m2 = (int64_t)v->spatial_merge_size * v->spatial_merge_size, dm = dv * m2; /* merged width 4*D_v */

    add(&l, QVL_GROUP_VISION, 5,
        SHAPE(dv, v->in_channels, v->temporal_patch_size, v->patch_size, v->patch_size),
        "model.visual.patch_embed.proj.weight");
    ADD1(&l, QVL_GROUP_VISION, dv, "model.visual.patch_embed.proj.bias");
    ADD2(&l, QVL_GROUP_VISION, v->num_position_embeddings, dv, "model.visual.pos_embed.weight");
    for (int i = 0; i < v->depth; i++) {
        snprintf(p, sizeof p, "model.visual.blocks.%d.norm1", i);
        layer_norm(&l, QVL_GROUP_VISION, dv, p);
        snprintf(p, sizeof p, "model.visual.blocks.%d.norm2", i);
        layer_norm(&l, QVL_GROUP_VISION, dv, p);
        snprintf(p, sizeof p, "model.visual.blocks.%d.attn.qkv", i);
        linear_bias(&l, QVL_GROUP_VISION, 3 * dv, dv, p);
        snprintf(p, sizeof p, "model.visual.blocks.%d.attn.proj", i);
        linear_bias(&l, QVL_GROUP_VISION, dv, dv, p);
        snprintf(p, sizeof p, "model.visual.blocks.%d.mlp.linear_fc1", i);
        linear_bias(&l, QVL_GROUP_VISION, iv, dv, p);
        snprintf(p, sizeof p, "model.visual.blocks.%d.mlp.linear_fc2", i);
        linear_bias(&l, QVL_GROUP_VISION, dv, iv, p);
    }
    layer_norm(&l, QVL_GROUP_MERGER, dv, "model.visual.merger.norm"); /* pre-shuffle: per patch */
    linear_bias(&l, QVL_GROUP_MERGER, dm, dm, "model.visual.merger.linear_fc1");
    linear_bias(&l, QVL_GROUP_MERGER, d, dm, "model.visual.merger.linear_fc2");
    for (int k = 0; k < v->n_deepstack; k++) {
        snprintf(p, sizeof p, "model.visual.deepstack_merger_list.%d.norm", k);
        layer_norm(&l, QVL_GROUP_DEEPSTACK, dm, p); /* post-shuffle: per merged token */
        snprintf(p, sizeof p, "model.visual.deepstack_merger_list.%d.linear_fc1", k);
        linear_bias(&l, QVL_GROUP_DEEPSTACK, dm, dm, p);
        snprintf(p, sizeof p, "model.visual.deepstack_merger_list.%d.linear_fc2", k);
        linear_bias(&l, QVL_GROUP_DEEPSTACK, d, dm, p);
    }

    int64_t q = (int64_t)t->num_heads * t->head_dim, kv = (int64_t)t->num_kv_heads * t->head_dim, it = t->intermediate_size;
    ADD2(&l, QVL_GROUP_TEXT, t->vocab_size, d, "model.language_model.embed_tokens.weight");
    for (int i = 0; i < t->num_layers; i++) {
        const char *pre = "model.language_model.layers";
        ADD1(&l, QVL_GROUP_TEXT, d, "%s.%d.input_layernorm.weight", pre, i);
        ADD1(&l, QVL_GROUP_TEXT, d, "%s.%d.post_attention_layernorm.weight", pre, i);
        ADD2(&l, QVL_GROUP_TEXT, q, d, "%s.%d.self_attn.q_proj.weight", pre, i);
        ADD2(&l, QVL_GROUP_TEXT, kv, d, "%s.%d.self_attn.k_proj.weight", pre, i);
        ADD2(&l, QVL_GROUP_TEXT, kv, d, "%s.%d.self_attn.v_proj.weight", pre, i);
        ADD2(&l, QVL_GROUP_TEXT, d, q, "%s.%d.self_attn.o_proj.weight", pre, i);
        ADD1(&l, QVL_GROUP_TEXT, t->head_dim, "%s.%d.self_attn.q_norm.weight", pre, i);
        ADD1(&l, QVL_GROUP_TEXT, t->head_dim, "%s.%d.self_attn.k_norm.weight", pre, i);
        ADD2(&l, QVL_GROUP_TEXT, it, d, "%s.%d.mlp.gate_proj.weight", pre, i);
        ADD2(&l, QVL_GROUP_TEXT, it, d, "%s.%d.mlp.up_proj.weight", pre, i);
        ADD2(&l, QVL_GROUP_TEXT, d, it, "%s.%d.mlp.down_proj.weight", pre, i);
    }
    ADD1(&l, QVL_GROUP_TEXT, d, "model.language_model.norm.weight");
    if (!t->tie_word_embeddings) ADD2(&l, QVL_GROUP_LM_HEAD, t->vocab_size, d, "lm_head.weight");

    if (l.oom) {
        free(l.v);
        qvl_errorf("%s: out of memory listing tensors", cfg->model_dir[0] ? cfg->model_dir : "config");
        return NULL;
    }
    *n = l.n;
    return l.v;
}

int qvl_param_count(const qvl_config *cfg, qvl_param_counts *out) {
    memset(out, 0, sizeof *out);
    int n;
    qvl_tensor_spec *s = qvl_expected_tensors(cfg, &n);
    if (!s) return -1;
    for (int i = 0; i < n; i++) {
        int64_t e = 1;
        for (int k = 0; k < s[i].ndim; k++) e *= s[i].shape[k];
        out->group[s[i].group] += e;
        out->total += e;
    }
    free(s);
    return 0;
}

void qvl_shape_str(const int64_t *shape, int ndim, char *buf, int cap) {
    int k = snprintf(buf, (size_t)cap, "[");
    for (int i = 0; i < ndim && k < cap; i++)
        k += snprintf(buf + k, (size_t)(cap - k), "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (k < cap) snprintf(buf + k, (size_t)(cap - k), "]");
}

int qvl_checkpoint_check(const qvl_config *cfg, const qvl_safetensors *st) {
    const char *where = cfg->model_dir[0] ? cfg->model_dir : qvl_st_path(st);
    if (cfg->quant_method[0])
        return qvl_errorf("%s: quantized checkpoints (%s) are not supported yet", where, cfg->quant_method);
    int n;
    qvl_tensor_spec *s = qvl_expected_tensors(cfg, &n);
    if (!s) return -1;
    int rc = 0;
    for (int i = 0; i < n && rc == 0; i++) {
        const qvl_tensor *t = qvl_st_find(st, s[i].name);
        char want[128], got[128];
        qvl_shape_str(s[i].shape, s[i].ndim, want, sizeof want);
        if (!t) {
            rc = qvl_errorf("%s: missing tensor %s (expected shape %s)", qvl_st_path(st), s[i].name, want);
            break;
        }
        int same = t->ndim == s[i].ndim;
        for (int k = 0; same && k < t->ndim; k++) same = t->shape[k] == s[i].shape[k];
        if (!same) {
            qvl_shape_str(t->shape, t->ndim, got, sizeof got);
            rc = qvl_errorf("%s: tensor %s has shape %s, expected %s", t->file, t->name, got, want);
        } else if (t->dtype != QVL_BF16 && t->dtype != QVL_F16 && t->dtype != QVL_F32)
            rc = qvl_errorf("%s: tensor %s has dtype %s, expected BF16, F16 or F32", t->file, t->name,
                            qvl_dtype_name(t->dtype));
    }
    free(s);
    return rc;
}
