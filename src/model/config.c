/* Qwen3-VL model folder configuration. config.json comes in two layouts: transformers 4.57
 * (text_config.rope_theta + text_config.rope_scaling) and 5.x (text_config.rope_parameters); both
 * are read. Every field the engine relies on is checked here, so later code can trust cfg. */
#include "model/config.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "model/quant.h"
#include "util/error.h"
#include "util/file.h"

/* ---- small typed getters: each names "<file>: <section.>key: <problem>" on failure ----------- */

typedef struct {
    const char *file;
    const char *section; /* "text_config." or "" */
} jloc;

static const cJSON *item(const cJSON *obj, const char *key) {
    return obj ? cJSON_GetObjectItemCaseSensitive(obj, key) : NULL;
}

/* An integer field. required: missing is an error; else *out = def. */
static int get_int(jloc l, const cJSON *obj, const char *key, int required, int def, int *out) {
    const cJSON *v = item(obj, key);
    if (!v || cJSON_IsNull(v)) {
        if (required) return qvl_errorf("%s: %s%s: missing", l.file, l.section, key);
        *out = def;
        return 0;
    }
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || fabs(v->valuedouble) > 2147483647.0)
        return qvl_errorf("%s: %s%s: must be an integer", l.file, l.section, key);
    *out = (int)v->valuedouble;
    return 0;
}

static int get_pos_int(jloc l, const cJSON *obj, const char *key, int required, int def, int *out) {
    if (get_int(l, obj, key, required, def, out) != 0) return -1;
    if (*out <= 0) return qvl_errorf("%s: %s%s: must be positive (got %d)", l.file, l.section, key, *out);
    return 0;
}

static int get_long(jloc l, const cJSON *obj, const char *key, long def, long *out) {
    const cJSON *v = item(obj, key);
    if (!v || cJSON_IsNull(v)) {
        *out = def;
        return 0;
    }
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble <= 0 || v->valuedouble > 9e15)
        return qvl_errorf("%s: %s%s: must be a positive integer", l.file, l.section, key);
    *out = (long)v->valuedouble;
    return 0;
}

static int get_double(jloc l, const cJSON *obj, const char *key, int required, double def, double *out) {
    const cJSON *v = item(obj, key);
    if (!v || cJSON_IsNull(v)) {
        if (required) return qvl_errorf("%s: %s%s: missing", l.file, l.section, key);
        *out = def;
        return 0;
    }
    if (!cJSON_IsNumber(v)) return qvl_errorf("%s: %s%s: must be a number", l.file, l.section, key);
    *out = v->valuedouble;
    return 0;
}

/* A boolean; -1 in *out when absent (callers decide the default). */
static int get_bool(jloc l, const cJSON *obj, const char *key, int *out) {
    const cJSON *v = item(obj, key);
    *out = -1;
    if (!v || cJSON_IsNull(v)) return 0;
    if (!cJSON_IsBool(v)) return qvl_errorf("%s: %s%s: must be true or false", l.file, l.section, key);
    *out = cJSON_IsTrue(v);
    return 0;
}

static int get_str(jloc l, const cJSON *obj, const char *key, char *dst, size_t cap) {
    const cJSON *v = item(obj, key);
    if (!v || cJSON_IsNull(v)) return 0;
    if (!cJSON_IsString(v)) return qvl_errorf("%s: %s%s: must be a string", l.file, l.section, key);
    if (strlen(v->valuestring) >= cap) return qvl_errorf("%s: %s%s: too long", l.file, l.section, key);
    strcpy(dst, v->valuestring);
    return 0;
}

/* An integer array of 1..cap entries; returns its length or -1. */
static int get_int_array(jloc l, const cJSON *obj, const char *key, int *dst, int cap) {
    const cJSON *v = item(obj, key);
    if (!cJSON_IsArray(v)) return qvl_errorf("%s: %s%s: missing or not an array", l.file, l.section, key);
    int n = cJSON_GetArraySize(v);
    if (n > cap) return qvl_errorf("%s: %s%s: %d entries (at most %d)", l.file, l.section, key, n, cap);
    for (int i = 0; i < n; i++) {
        const cJSON *e = cJSON_GetArrayItem(v, i);
        if (!cJSON_IsNumber(e) || e->valuedouble != floor(e->valuedouble) || fabs(e->valuedouble) > 2147483647.0)
            return qvl_errorf("%s: %s%s[%d]: must be an integer", l.file, l.section, key, i);
        dst[i] = (int)e->valuedouble;
    }
    return n;
}

static cJSON *parse_json_file(const char *path) {
    size_t len;
    char *text = qvl_read_file(path, &len);
    if (!text) return NULL;
    cJSON *root = cJSON_ParseWithLength(text, len);
    free(text);
    if (!root) {
        qvl_errorf("%s: not valid JSON", path);
        return NULL;
    }
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        qvl_errorf("%s: not a JSON object", path);
        return NULL;
    }
    return root;
}

/* ---- config.json ------------------------------------------------------------------------------ */

static int load_text(const char *path, const cJSON *root, const cJSON *tc, qvl_config *cfg) {
    jloc l = {path, "text_config."};
    qvl_text_config *t = &cfg->text;
    if (get_pos_int(l, tc, "hidden_size", 1, 0, &t->hidden_size) || get_pos_int(l, tc, "intermediate_size", 1, 0, &t->intermediate_size) ||
        get_pos_int(l, tc, "num_hidden_layers", 1, 0, &t->num_layers) || get_pos_int(l, tc, "num_attention_heads", 1, 0, &t->num_heads) ||
        get_pos_int(l, tc, "num_key_value_heads", 0, t->num_heads, &t->num_kv_heads) ||
        get_pos_int(l, tc, "vocab_size", 1, 0, &t->vocab_size) ||
        get_pos_int(l, tc, "max_position_embeddings", 0, 262144, &t->max_position_embeddings) ||
        get_double(l, tc, "rms_norm_eps", 0, 1e-6, &t->rms_norm_eps))
        return -1;
    if (t->hidden_size % t->num_heads != 0 && !item(tc, "head_dim"))
        return qvl_errorf("%s: text_config.hidden_size %d is not divisible by num_attention_heads %d (and no head_dim)",
                          path, t->hidden_size, t->num_heads);
    if (get_pos_int(l, tc, "head_dim", 0, t->hidden_size / t->num_heads, &t->head_dim)) return -1;
    if (t->head_dim % 2) return qvl_errorf("%s: text_config.head_dim %d must be even", path, t->head_dim);
    if (t->num_heads % t->num_kv_heads)
        return qvl_errorf("%s: text_config.num_attention_heads %d is not a multiple of num_key_value_heads %d", path,
                          t->num_heads, t->num_kv_heads);
    if (!(t->rms_norm_eps > 0 && t->rms_norm_eps < 1))
        return qvl_errorf("%s: text_config.rms_norm_eps must be in (0, 1)", path);
    int bias;
    if (get_bool(l, tc, "attention_bias", &bias)) return -1;
    if (bias == 1) return qvl_errorf("%s: text_config.attention_bias: true is not supported (Qwen3-VL has none)", path);

    /* RoPE: 5.x rope_parameters, else 4.57 rope_theta + rope_scaling. */
    const cJSON *rp = item(tc, "rope_parameters");
    const char *rp_name = "rope_parameters";
    if (!cJSON_IsObject(rp)) {
        rp = item(tc, "rope_scaling");
        rp_name = "rope_scaling";
    }
    if (!cJSON_IsObject(rp))
        return qvl_errorf("%s: text_config.rope_parameters (or rope_scaling): missing; Qwen3-VL needs mrope_section", path);
    char sect[64];
    snprintf(sect, sizeof sect, "text_config.%s.", rp_name);
    jloc lr = {path, sect};
    if (item(rp, "rope_theta")) {
        if (get_double(lr, rp, "rope_theta", 1, 0, &t->rope_theta)) return -1;
    } else if (get_double(l, tc, "rope_theta", 1, 0, &t->rope_theta))
        return -1;
    if (!(t->rope_theta > 0)) return qvl_errorf("%s: text_config.rope_theta must be positive", path);
    char rope_type[32] = "default";
    if (get_str(lr, rp, "rope_type", rope_type, sizeof rope_type)) return -1;
    if (strcmp(rope_type, "default") != 0)
        return qvl_errorf("%s: %srope_type: '%s' is not supported (only 'default')", path, sect, rope_type);
    int n = get_int_array(lr, rp, "mrope_section", t->mrope_section, 3);
    if (n < 0) return -1;
    if (n != 3) return qvl_errorf("%s: %smrope_section: needs 3 entries (T, H, W), got %d", path, sect, n);
    int sum = 0;
    for (int i = 0; i < 3; i++) {
        if (t->mrope_section[i] <= 0) return qvl_errorf("%s: %smrope_section[%d] must be positive", path, sect, i);
        sum += t->mrope_section[i];
    }
    if (sum != t->head_dim / 2)
        return qvl_errorf("%s: %smrope_section sums to %d but head_dim/2 is %d", path, sect, sum, t->head_dim / 2);
    int inter;
    if (get_bool(lr, rp, "mrope_interleaved", &inter)) return -1;
    t->mrope_interleaved = inter == 1;

    /* tie_word_embeddings: read in text_config (transformers 4.57 ties on the text config) and at
     * top level; they must not disagree. Qwen3VLConfig's default is false. */
    int tie_top, tie_text;
    jloc lt = {path, ""};
    if (get_bool(lt, root, "tie_word_embeddings", &tie_top) || get_bool(l, tc, "tie_word_embeddings", &tie_text)) return -1;
    if (tie_top >= 0 && tie_text >= 0 && tie_top != tie_text)
        return qvl_errorf("%s: tie_word_embeddings is %s at top level but %s in text_config", path,
                          tie_top ? "true" : "false", tie_text ? "true" : "false");
    t->tie_word_embeddings = tie_text >= 0 ? tie_text : tie_top == 1;
    return 0;
}

static int load_vision(const char *path, const cJSON *root, const cJSON *vc, qvl_config *cfg) {
    jloc l = {path, "vision_config."};
    qvl_vision_config *v = &cfg->vision;
    if (get_pos_int(l, vc, "depth", 1, 0, &v->depth) || get_pos_int(l, vc, "hidden_size", 1, 0, &v->hidden_size) ||
        get_pos_int(l, vc, "intermediate_size", 1, 0, &v->intermediate_size) ||
        get_pos_int(l, vc, "num_heads", 1, 0, &v->num_heads) || get_pos_int(l, vc, "out_hidden_size", 1, 0, &v->out_hidden_size) ||
        get_pos_int(l, vc, "patch_size", 0, 16, &v->patch_size) ||
        get_pos_int(l, vc, "temporal_patch_size", 0, 2, &v->temporal_patch_size) ||
        get_pos_int(l, vc, "spatial_merge_size", 0, 2, &v->spatial_merge_size) ||
        get_pos_int(l, vc, "in_channels", 0, 3, &v->in_channels) ||
        get_pos_int(l, vc, "num_position_embeddings", 0, 2304, &v->num_position_embeddings))
        return -1;
    strcpy(v->hidden_act, "gelu_pytorch_tanh");
    if (get_str(l, vc, "hidden_act", v->hidden_act, sizeof v->hidden_act)) return -1;
    if (strcmp(v->hidden_act, "gelu_pytorch_tanh") != 0)
        return qvl_errorf("%s: vision_config.hidden_act: '%s' is not supported (gelu_pytorch_tanh)", path, v->hidden_act);
    if (v->hidden_size % v->num_heads)
        return qvl_errorf("%s: vision_config.hidden_size %d is not divisible by num_heads %d", path, v->hidden_size, v->num_heads);
    if ((v->hidden_size / v->num_heads) % 4)
        return qvl_errorf("%s: vision_config head dim %d (hidden_size/num_heads) must be a multiple of 4 for the 2D rotary",
                          path, v->hidden_size / v->num_heads);
    int side = (int)lround(sqrt((double)v->num_position_embeddings));
    if (side * side != v->num_position_embeddings)
        return qvl_errorf("%s: vision_config.num_position_embeddings %d is not a square", path, v->num_position_embeddings);
    if (v->out_hidden_size != cfg->text.hidden_size)
        return qvl_errorf("%s: vision_config.out_hidden_size %d differs from text_config.hidden_size %d", path,
                          v->out_hidden_size, cfg->text.hidden_size);
    /* deepstack_visual_indexes lives in vision_config; accept it at top level too. */
    const cJSON *holder = item(vc, "deepstack_visual_indexes") ? vc : root;
    jloc ld = {path, holder == vc ? "vision_config." : ""};
    if (!item(holder, "deepstack_visual_indexes"))
        return qvl_errorf("%s: vision_config.deepstack_visual_indexes: missing", path);
    int n = get_int_array(ld, holder, "deepstack_visual_indexes", v->deepstack_indexes, QVL_MAX_DEEPSTACK);
    if (n < 0) return -1;
    v->n_deepstack = n;
    for (int i = 0; i < n; i++) {
        int d = v->deepstack_indexes[i];
        if (d < 0 || d >= v->depth)
            return qvl_errorf("%s: %sdeepstack_visual_indexes[%d] = %d is outside 0..depth-1 (depth %d)", path, ld.section, i,
                              d, v->depth);
        if (i && d <= v->deepstack_indexes[i - 1])
            return qvl_errorf("%s: %sdeepstack_visual_indexes must be increasing", path, ld.section);
    }
    if (n > cfg->text.num_layers)
        return qvl_errorf("%s: %d deepstack_visual_indexes but only %d text layers", path, n, cfg->text.num_layers);
    return 0;
}

int qvl_config_load_main(const char *path, qvl_config *cfg) {
    char dir[sizeof cfg->model_dir];
    memcpy(dir, cfg->model_dir, sizeof dir);
    memset(cfg, 0, sizeof *cfg);
    memcpy(cfg->model_dir, dir, sizeof dir);
    cJSON *root = parse_json_file(path);
    if (!root) return -1;
    int rc = -1;
    jloc l = {path, ""};
    const cJSON *tc = item(root, "text_config"), *vc = item(root, "vision_config");
    char mt[32] = "";
    if (get_str(l, root, "model_type", mt, sizeof mt)) goto done;
    if (!mt[0]) {
        qvl_errorf("%s: model_type: missing", path);
        goto done;
    }
    if (strcmp(mt, "qwen3_vl") != 0) {
        qvl_errorf("%s: model_type: '%s' is not supported (expected qwen3_vl)", path, mt);
        goto done;
    }
    strcpy(cfg->model_type, mt);
    if (!cJSON_IsObject(tc)) {
        qvl_errorf("%s: text_config: missing or not an object", path);
        goto done;
    }
    if (!cJSON_IsObject(vc)) {
        qvl_errorf("%s: vision_config: missing or not an object", path);
        goto done;
    }
    /* dtype: 5.x writes "dtype", 4.x "torch_dtype"; the released files put it in text_config. */
    jloc lt = {path, "text_config."};
    if (get_str(l, root, "torch_dtype", cfg->dtype, sizeof cfg->dtype) || get_str(l, root, "dtype", cfg->dtype, sizeof cfg->dtype))
        goto done;
    if (!cfg->dtype[0] && (get_str(lt, tc, "torch_dtype", cfg->dtype, sizeof cfg->dtype) ||
                           get_str(lt, tc, "dtype", cfg->dtype, sizeof cfg->dtype)))
        goto done;
    const cJSON *q = item(root, "quantization_config");
    if (q && !cJSON_IsNull(q)) {
        if (!cJSON_IsObject(q)) {
            qvl_errorf("%s: quantization_config: not an object", path);
            goto done;
        }
        if (qvl_quant_config_parse(path, q, cfg)) goto done;
    }
    if (load_text(path, root, tc, cfg) || load_vision(path, root, vc, cfg)) goto done;

    /* Token ids: top level (image/video/vision_start/end); bos/eos in text_config or top level. */
    if (get_int(l, root, "image_token_id", 1, 0, &cfg->image_token_id) ||
        get_int(l, root, "video_token_id", 0, 151656, &cfg->video_token_id) ||
        get_int(l, root, "vision_start_token_id", 1, 0, &cfg->vision_start_token_id) ||
        get_int(l, root, "vision_end_token_id", 1, 0, &cfg->vision_end_token_id))
        goto done;
    const cJSON *ids = item(tc, "bos_token_id") ? tc : root;
    if (get_int(ids == tc ? lt : l, ids, "bos_token_id", 0, 151643, &cfg->bos_token_id)) goto done;
    ids = item(tc, "eos_token_id") ? tc : root;
    const cJSON *eos = item(ids, "eos_token_id");
    if (cJSON_IsArray(eos)) { /* some exports write a list here; the first is the chat stop token */
        int tmp[QVL_MAX_EOS];
        int n = get_int_array(ids == tc ? lt : l, ids, "eos_token_id", tmp, QVL_MAX_EOS);
        if (n < 0) goto done;
        if (n == 0) {
            qvl_errorf("%s: eos_token_id: empty list", path);
            goto done;
        }
        cfg->eos_token_id = tmp[0];
    } else if (get_int(ids == tc ? lt : l, ids, "eos_token_id", 0, 151645, &cfg->eos_token_id))
        goto done;
    ids = item(tc, "pad_token_id") ? tc : root;
    if (get_int(ids == tc ? lt : l, ids, "pad_token_id", 0, cfg->bos_token_id, &cfg->pad_token_id)) goto done;
    const struct {
        const char *name;
        int v;
    } tok[] = {{"image_token_id", cfg->image_token_id},   {"video_token_id", cfg->video_token_id},
               {"vision_start_token_id", cfg->vision_start_token_id}, {"vision_end_token_id", cfg->vision_end_token_id},
               {"bos_token_id", cfg->bos_token_id},       {"eos_token_id", cfg->eos_token_id},
               {"pad_token_id", cfg->pad_token_id}};
    for (size_t i = 0; i < sizeof tok / sizeof tok[0]; i++)
        if (tok[i].v < 0 || tok[i].v >= cfg->text.vocab_size) {
            qvl_errorf("%s: %s %d is outside the vocabulary (vocab_size %d)", path, tok[i].name, tok[i].v, cfg->text.vocab_size);
            goto done;
        }
    rc = 0;
done:
    cJSON_Delete(root);
    return rc;
}

/* ---- preprocessor_config.json ------------------------------------------------------------------- */

static void preproc_defaults(qvl_config *cfg) {
    qvl_preproc_config *p = &cfg->preproc;
    p->min_pixels = 65536;
    p->max_pixels = 16777216;
    p->patch_size = cfg->vision.patch_size;
    p->temporal_patch_size = cfg->vision.temporal_patch_size;
    p->merge_size = cfg->vision.spatial_merge_size;
    for (int i = 0; i < 3; i++) p->image_mean[i] = p->image_std[i] = 0.5f;
    p->rescale_factor = 1.0 / 255.0;
}

static int get_float3(const char *path, const cJSON *root, const char *key, float *dst) {
    const cJSON *v = item(root, key);
    if (!v || cJSON_IsNull(v)) return 0;
    if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) != 3)
        return qvl_errorf("%s: %s: must be a list of 3 numbers", path, key);
    for (int i = 0; i < 3; i++) {
        const cJSON *e = cJSON_GetArrayItem(v, i);
        if (!cJSON_IsNumber(e)) return qvl_errorf("%s: %s[%d]: must be a number", path, key, i);
        dst[i] = (float)e->valuedouble;
    }
    return 0;
}

int qvl_preproc_load(const char *path, qvl_config *cfg) {
    preproc_defaults(cfg);
    if (access(path, F_OK) != 0) return 0;
    cJSON *root = parse_json_file(path);
    if (!root) return -1;
    qvl_preproc_config *p = &cfg->preproc;
    jloc l = {path, ""}, ls = {path, "size."};
    int rc = -1;
    const cJSON *size = item(root, "size");
    /* Pixel bounds: size.{shortest,longest}_edge (they are areas, spec 2), or min/max_pixels. */
    if (get_long(l, root, "min_pixels", p->min_pixels, &p->min_pixels) ||
        get_long(l, root, "max_pixels", p->max_pixels, &p->max_pixels))
        goto done;
    if (size && !cJSON_IsNull(size)) {
        if (!cJSON_IsObject(size)) {
            qvl_errorf("%s: size: must be an object", path);
            goto done;
        }
        if (get_long(ls, size, "shortest_edge", p->min_pixels, &p->min_pixels) ||
            get_long(ls, size, "longest_edge", p->max_pixels, &p->max_pixels))
            goto done;
    }
    if (get_pos_int(l, root, "patch_size", 0, p->patch_size, &p->patch_size) ||
        get_pos_int(l, root, "temporal_patch_size", 0, p->temporal_patch_size, &p->temporal_patch_size) ||
        get_pos_int(l, root, "merge_size", 0, p->merge_size, &p->merge_size) ||
        get_float3(path, root, "image_mean", p->image_mean) || get_float3(path, root, "image_std", p->image_std) ||
        get_double(l, root, "rescale_factor", 0, p->rescale_factor, &p->rescale_factor))
        goto done;
    if (p->min_pixels > p->max_pixels) {
        qvl_errorf("%s: min pixels %ld (size.shortest_edge) is above max pixels %ld (size.longest_edge)", path,
                   p->min_pixels, p->max_pixels);
        goto done;
    }
    if (p->patch_size != cfg->vision.patch_size || p->merge_size != cfg->vision.spatial_merge_size ||
        p->temporal_patch_size != cfg->vision.temporal_patch_size) {
        qvl_errorf("%s: patch_size/merge_size/temporal_patch_size %d/%d/%d differ from config.json's vision_config %d/%d/%d",
                   path, p->patch_size, p->merge_size, p->temporal_patch_size, cfg->vision.patch_size,
                   cfg->vision.spatial_merge_size, cfg->vision.temporal_patch_size);
        goto done;
    }
    for (int i = 0; i < 3; i++)
        if (!(p->image_std[i] > 0)) {
            qvl_errorf("%s: image_std[%d]: must be positive", path, i);
            goto done;
        }
    if (!(p->rescale_factor > 0)) {
        qvl_errorf("%s: rescale_factor: must be positive", path);
        goto done;
    }
    /* The image pipeline fuses rescale into normalize exactly as the reference does for 1/255
     * (src/image/preprocess.c); any other factor would be silently wrong, so refuse it. */
    if (fabs(p->rescale_factor * 255.0 - 1.0) > 1e-9) {
        qvl_errorf("%s: rescale_factor: %g is not supported (only 1/255)", path, p->rescale_factor);
        goto done;
    }
    rc = 0;
done:
    cJSON_Delete(root);
    return rc;
}

/* ---- generation_config.json ------------------------------------------------------------------------ */

int qvl_generation_load(const char *path, qvl_config *cfg) {
    qvl_generation_config *g = &cfg->gen;
    memset(g, 0, sizeof *g);
    if (access(path, F_OK) != 0) { /* absent: the released Qwen3-VL Instruct values (spec 6) */
        g->do_sample = 1;
        g->temperature = 0.7;
        g->top_p = 0.8;
        g->top_k = 20;
        g->repetition_penalty = 1.0;
        g->eos_ids[0] = 151645;
        g->eos_ids[1] = 151643;
        g->n_eos = 2;
        return 0;
    }
    cJSON *root = parse_json_file(path);
    if (!root) return -1;
    jloc l = {path, ""};
    int rc = -1, ds;
    /* Keys missing from a present file take transformers' GenerationConfig defaults. */
    if (get_bool(l, root, "do_sample", &ds) || get_double(l, root, "temperature", 0, 1.0, &g->temperature) ||
        get_double(l, root, "top_p", 0, 1.0, &g->top_p) || get_int(l, root, "top_k", 0, 50, &g->top_k) ||
        get_double(l, root, "repetition_penalty", 0, 1.0, &g->repetition_penalty) ||
        get_double(l, root, "presence_penalty", 0, 0.0, &g->presence_penalty))
        goto done;
    g->do_sample = ds == 1;
    if (g->temperature < 0 || !(g->top_p > 0 && g->top_p <= 1) || g->top_k < 0 || !(g->repetition_penalty > 0)) {
        qvl_errorf("%s: temperature/top_p/top_k/repetition_penalty out of range (%g/%g/%d/%g)", path, g->temperature,
                   g->top_p, g->top_k, g->repetition_penalty);
        goto done;
    }
    const cJSON *eos = item(root, "eos_token_id");
    if (!eos || cJSON_IsNull(eos)) {
        g->eos_ids[0] = cfg->eos_token_id;
        g->n_eos = 1;
    } else if (cJSON_IsArray(eos)) {
        g->n_eos = get_int_array(l, root, "eos_token_id", g->eos_ids, QVL_MAX_EOS);
        if (g->n_eos < 0) goto done;
        if (g->n_eos == 0) {
            qvl_errorf("%s: eos_token_id: empty list", path);
            goto done;
        }
    } else {
        if (get_int(l, root, "eos_token_id", 1, 0, &g->eos_ids[0])) goto done;
        g->n_eos = 1;
    }
    for (int i = 0; i < g->n_eos; i++)
        if (g->eos_ids[i] < 0 || g->eos_ids[i] >= cfg->text.vocab_size) {
            qvl_errorf("%s: eos_token_id %d is outside the vocabulary", path, g->eos_ids[i]);
            goto done;
        }
    rc = 0;
done:
    cJSON_Delete(root);
    return rc;
}

int qvl_config_load(const char *model_dir, qvl_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    if (!qvl_is_dir(model_dir)) return qvl_errorf("%s: not a folder (expected a model folder with config.json)", model_dir);
    if (strlen(model_dir) >= sizeof cfg->model_dir) return qvl_errorf("%s: path too long", model_dir);
    char *c = qvl_path_join(model_dir, "config.json");
    char *p = qvl_path_join(model_dir, "preprocessor_config.json");
    char *g = qvl_path_join(model_dir, "generation_config.json");
    int rc = (!c || !p || !g) ? qvl_errorf("%s: out of memory", model_dir)
                              : (qvl_config_load_main(c, cfg) || qvl_preproc_load(p, cfg) || qvl_generation_load(g, cfg)) ? -1 : 0;
    free(c);
    free(p);
    free(g);
    if (rc == 0) strcpy(cfg->model_dir, model_dir);
    return rc;
}

qvl_image_params qvl_config_image_params(const qvl_config *cfg) {
    qvl_image_params p = qvl_image_params_default();
    const qvl_preproc_config *pc = &cfg->preproc;
    p.min_pixels = pc->min_pixels;
    p.max_pixels = pc->max_pixels;
    p.patch_size = pc->patch_size;
    p.temporal_patch_size = pc->temporal_patch_size;
    p.merge_size = pc->merge_size;
    for (int c = 0; c < 3; c++) {
        p.image_mean[c] = pc->image_mean[c];
        p.image_std[c] = pc->image_std[c];
    }
    return p;
}
