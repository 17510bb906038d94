/* The one list of Qwen3-VL tensor names and shapes (spec 1.3). A name is the role's scope prefix
 * (which block, merger or layer) followed by its suffix. LayerNorms (vision) carry a bias, RMSNorms
 * (text) do not; no text Linear has a bias. */
#include "model/tensor_names.h"

#include <stdio.h>
#include <string.h>

static void set(qvl_tensor_spec *s, const char *prefix, const char *suffix, const int64_t *shape, int ndim) {
    snprintf(s->name, sizeof s->name, "%s%s", prefix, suffix);
    s->ndim = ndim;
    memcpy(s->shape, shape, (size_t)ndim * sizeof *shape);
}

#define SPEC(suffix, ...) \
    set(s, prefix, suffix, (const int64_t[]){__VA_ARGS__}, (int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)))

void qvl_tensor_role_spec(const qvl_config *cfg, qvl_tensor_role role, int index, qvl_tensor_spec *s) {
    const qvl_vision_config *v = &cfg->vision;
    const qvl_text_config *t = &cfg->text;
    int64_t dv = v->hidden_size, iv = v->intermediate_size, d = t->hidden_size;
    int64_t dm = dv * v->spatial_merge_size * v->spatial_merge_size; /* merged width 4*D_v */
    int64_t hd = t->head_dim, q = t->num_heads * hd, kv = t->num_kv_heads * hd, it = t->intermediate_size;
    memset(s, 0, sizeof *s);

    char prefix[64];
    if (role < QVL_TN_VB_FIRST) {
        snprintf(prefix, sizeof prefix, "model.visual.");
        s->group = QVL_GROUP_VISION;
    } else if (role <= QVL_TN_VB_LAST) {
        snprintf(prefix, sizeof prefix, "model.visual.blocks.%d.", index);
        s->group = QVL_GROUP_VISION;
    } else if (role <= QVL_TN_MG_LAST && index < 0) {
        snprintf(prefix, sizeof prefix, "model.visual.merger.");
        s->group = QVL_GROUP_MERGER;
    } else if (role <= QVL_TN_MG_LAST) {
        snprintf(prefix, sizeof prefix, "model.visual.deepstack_merger_list.%d.", index);
        s->group = QVL_GROUP_DEEPSTACK;
    } else if (role >= QVL_TN_TL_FIRST && role <= QVL_TN_TL_LAST) {
        snprintf(prefix, sizeof prefix, "model.language_model.layers.%d.", index);
        s->group = QVL_GROUP_TEXT;
    } else if (role == QVL_TN_LM_HEAD) {
        prefix[0] = '\0';
        s->group = QVL_GROUP_LM_HEAD;
    } else {
        snprintf(prefix, sizeof prefix, "model.language_model.");
        s->group = QVL_GROUP_TEXT;
    }

    switch (role) {
    case QVL_TN_PATCH_W:
        SPEC("patch_embed.proj.weight", dv, v->in_channels, v->temporal_patch_size, v->patch_size, v->patch_size);
        break;
    case QVL_TN_PATCH_B: SPEC("patch_embed.proj.bias", dv); break;
    case QVL_TN_POS_EMBED: SPEC("pos_embed.weight", v->num_position_embeddings, dv); break;

    case QVL_TN_VB_NORM1_W: SPEC("norm1.weight", dv); break;
    case QVL_TN_VB_NORM1_B: SPEC("norm1.bias", dv); break;
    case QVL_TN_VB_NORM2_W: SPEC("norm2.weight", dv); break;
    case QVL_TN_VB_NORM2_B: SPEC("norm2.bias", dv); break;
    case QVL_TN_VB_QKV_W: SPEC("attn.qkv.weight", 3 * dv, dv); break;
    case QVL_TN_VB_QKV_B: SPEC("attn.qkv.bias", 3 * dv); break;
    case QVL_TN_VB_PROJ_W: SPEC("attn.proj.weight", dv, dv); break;
    case QVL_TN_VB_PROJ_B: SPEC("attn.proj.bias", dv); break;
    case QVL_TN_VB_FC1_W: SPEC("mlp.linear_fc1.weight", iv, dv); break;
    case QVL_TN_VB_FC1_B: SPEC("mlp.linear_fc1.bias", iv); break;
    case QVL_TN_VB_FC2_W: SPEC("mlp.linear_fc2.weight", dv, iv); break;
    case QVL_TN_VB_FC2_B: SPEC("mlp.linear_fc2.bias", dv); break;

    /* the main merger normalizes each patch, a deepstack merger each merged token */
    case QVL_TN_MG_NORM_W: SPEC("norm.weight", index < 0 ? dv : dm); break;
    case QVL_TN_MG_NORM_B: SPEC("norm.bias", index < 0 ? dv : dm); break;
    case QVL_TN_MG_FC1_W: SPEC("linear_fc1.weight", dm, dm); break;
    case QVL_TN_MG_FC1_B: SPEC("linear_fc1.bias", dm); break;
    case QVL_TN_MG_FC2_W: SPEC("linear_fc2.weight", d, dm); break;
    case QVL_TN_MG_FC2_B: SPEC("linear_fc2.bias", d); break;

    case QVL_TN_EMBED: SPEC("embed_tokens.weight", t->vocab_size, d); break;
    case QVL_TN_TL_IN_NORM: SPEC("input_layernorm.weight", d); break;
    case QVL_TN_TL_POST_NORM: SPEC("post_attention_layernorm.weight", d); break;
    case QVL_TN_TL_Q: SPEC("self_attn.q_proj.weight", q, d); break;
    case QVL_TN_TL_K: SPEC("self_attn.k_proj.weight", kv, d); break;
    case QVL_TN_TL_V: SPEC("self_attn.v_proj.weight", kv, d); break;
    case QVL_TN_TL_O: SPEC("self_attn.o_proj.weight", d, q); break;
    case QVL_TN_TL_Q_NORM: SPEC("self_attn.q_norm.weight", hd); break;
    case QVL_TN_TL_K_NORM: SPEC("self_attn.k_norm.weight", hd); break;
    case QVL_TN_TL_GATE: SPEC("mlp.gate_proj.weight", it, d); break;
    case QVL_TN_TL_UP: SPEC("mlp.up_proj.weight", it, d); break;
    case QVL_TN_TL_DOWN: SPEC("mlp.down_proj.weight", d, it); break;
    case QVL_TN_NORM: SPEC("norm.weight", d); break;
    case QVL_TN_LM_HEAD: SPEC("lm_head.weight", t->vocab_size, d); break;
    default: break; /* QVL_TN_COUNT: no tensor, empty name */
    }
}

int64_t qvl_tensor_spec_numel(const qvl_tensor_spec *s) {
    int64_t n = 1;
    for (int k = 0; k < s->ndim; k++) n *= s->shape[k];
    return n;
}
