/* quantization_config of config.json for the three layouts qvl runs (quant.h), and the rule that
 * says which Linear modules a checkpoint keeps in 16 bits. Everything else is refused with one line
 * naming the field, so that an unsupported checkpoint never loads into wrong numbers. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <cjson/cJSON.h>
#include <ctype.h>
#include <math.h>
#include <pcre2.h>
#include <stdio.h>
#include <string.h>

#include "model/quant.h"
#include "util/error.h"

static const cJSON *item(const cJSON *o, const char *key) { return o ? cJSON_GetObjectItemCaseSensitive(o, key) : NULL; }

static int absent(const cJSON *v) { return !v || cJSON_IsNull(v); }

/* An "empty" optional section: absent, null, {} or []. */
static int empty(const cJSON *v) { return absent(v) || ((cJSON_IsObject(v) || cJSON_IsArray(v)) && !v->child); }

static int get_string(const char *path, const char *field, const cJSON *v, char *dst, size_t cap) {
    if (!cJSON_IsString(v)) return qvl_errorf("%s: quantization_config.%s: must be a string", path, field);
    if (strlen(v->valuestring) >= cap) return qvl_errorf("%s: quantization_config.%s: too long", path, field);
    strcpy(dst, v->valuestring);
    return 0;
}

static int get_pos(const char *path, const char *field, const cJSON *v, int *out) {
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < 1 || v->valuedouble > 1e6)
        return qvl_errorf("%s: quantization_config.%s: must be a positive integer", path, field);
    *out = (int)v->valuedouble;
    return 0;
}

/* ignore / modules_to_not_convert: a list of strings (or absent / null). */
static int read_skip(const char *path, const char *field, const cJSON *v, qvl_quant_config *qc) {
    if (absent(v)) return 0;
    if (!cJSON_IsArray(v)) return qvl_errorf("%s: quantization_config.%s: must be a list of module names", path, field);
    size_t used = 0;
    int i = 0;
    for (const cJSON *e = v->child; e; e = e->next, i++) {
        if (!cJSON_IsString(e) || !e->valuestring[0])
            return qvl_errorf("%s: quantization_config.%s[%d]: must be a non-empty string", path, field, i);
        size_t L = strlen(e->valuestring) + 1;
        if (used + L + 1 > sizeof qc->skip)
            return qvl_errorf("%s: quantization_config.%s: more than %zu bytes of names", path, field, sizeof qc->skip);
        memcpy(qc->skip + used, e->valuestring, L);
        used += L;
        qc->n_skip++;
    }
    return 0;
}

static int parse_ct(const char *path, const cJSON *q, qvl_quant_config *qc) {
    qc->method = QVL_QUANT_CT;
    const cJSON *groups = item(q, "config_groups");
    if (!cJSON_IsObject(groups) || !groups->child)
        return qvl_errorf("%s: quantization_config.config_groups: missing or empty", path);
    if (groups->child->next)
        return qvl_errorf("%s: quantization_config.config_groups: %d groups (qvl runs one int4 scheme)", path,
                          cJSON_GetArraySize(groups));
    const cJSON *g = groups->child;
    const char *gn = g->string ? g->string : "?";
    char fmt[32] = "";
    if (!absent(item(q, "format")) && get_string(path, "format", item(q, "format"), fmt, sizeof fmt)) return -1;
    if (!absent(item(g, "format"))) {
        char f2[32], field[96];
        snprintf(field, sizeof field, "config_groups.%s.format", gn);
        if (get_string(path, field, item(g, "format"), f2, sizeof f2)) return -1;
        if (strcmp(f2, "pack-quantized") != 0)
            return qvl_errorf("%s: quantization_config.%s: '%s' is not supported (pack-quantized)", path, field, f2);
        if (!fmt[0]) strcpy(fmt, f2);
    }
    if (strcmp(fmt, "pack-quantized") != 0)
        return qvl_errorf("%s: quantization_config.format: '%s' is not supported (pack-quantized)", path, fmt);
    strcpy(qc->format, fmt);
    char st[32] = "compressed";
    if (!absent(item(q, "quantization_status")) && get_string(path, "quantization_status", item(q, "quantization_status"), st, sizeof st))
        return -1;
    if (strcmp(st, "compressed") != 0)
        return qvl_errorf("%s: quantization_config.quantization_status: '%s' is not supported (compressed)", path, st);
    if (!empty(item(q, "sparsity_config")))
        return qvl_errorf("%s: quantization_config.sparsity_config: sparse checkpoints are not supported", path);
    if (!empty(item(q, "transform_config")))
        return qvl_errorf("%s: quantization_config.transform_config: transforms are not supported", path);
    if (!absent(item(q, "kv_cache_scheme")))
        return qvl_errorf("%s: quantization_config.kv_cache_scheme: KV-cache quantization is not supported", path);

    char field[128];
    const cJSON *t = item(g, "targets");
    int linear = 0;
    if (cJSON_IsArray(t))
        for (const cJSON *e = t->child; e; e = e->next) linear |= cJSON_IsString(e) && !strcmp(e->valuestring, "Linear");
    if (!linear)
        return qvl_errorf("%s: quantization_config.config_groups.%s.targets: must list \"Linear\"", path, gn);
    const char *acts[] = {"input_activations", "output_activations"};
    for (int i = 0; i < 2; i++)
        if (!absent(item(g, acts[i])))
            return qvl_errorf("%s: quantization_config.config_groups.%s.%s: activation quantization is not supported "
                              "(weight-only int4)", path, gn, acts[i]);
    const cJSON *w = item(g, "weights");
    if (!cJSON_IsObject(w)) return qvl_errorf("%s: quantization_config.config_groups.%s.weights: missing", path, gn);
#define WFIELD(k) (snprintf(field, sizeof field, "config_groups.%s.weights.%s", gn, k), field)
    char type[16] = "int", strategy[16] = "";
    if (!absent(item(w, "type")) && get_string(path, WFIELD("type"), item(w, "type"), type, sizeof type)) return -1;
    if (strcmp(type, "int") != 0)
        return qvl_errorf("%s: quantization_config.%s: '%s' is not supported (int)", path, WFIELD("type"), type);
    if (get_pos(path, WFIELD("num_bits"), item(w, "num_bits"), &qc->bits)) return -1;
    if (qc->bits != 4)
        return qvl_errorf("%s: quantization_config.%s: %d-bit weights are not supported (4)", path, WFIELD("num_bits"), qc->bits);
    if (get_string(path, WFIELD("strategy"), item(w, "strategy"), strategy, sizeof strategy)) return -1;
    if (!strcmp(strategy, "group")) {
        if (get_pos(path, WFIELD("group_size"), item(w, "group_size"), &qc->group_size)) return -1;
        if (qc->group_size % 8)
            return qvl_errorf("%s: quantization_config.%s: %d is not a multiple of 8", path, WFIELD("group_size"), qc->group_size);
    } else if (strcmp(strategy, "channel") != 0)
        return qvl_errorf("%s: quantization_config.%s: '%s' is not supported (group, channel)", path, WFIELD("strategy"), strategy);
    const cJSON *sym = item(w, "symmetric");
    if (!cJSON_IsBool(sym)) return qvl_errorf("%s: quantization_config.%s: must be true or false", path, WFIELD("symmetric"));
    qc->symmetric = cJSON_IsTrue(sym);
    const cJSON *ao = item(w, "actorder");
    if (!absent(ao) && !cJSON_IsFalse(ao))
        return qvl_errorf("%s: quantization_config.%s: activation ordering is not supported", path, WFIELD("actorder"));
    if (!absent(item(w, "dynamic")) && !cJSON_IsFalse(item(w, "dynamic")))
        return qvl_errorf("%s: quantization_config.%s: dynamic weight quantization is not supported", path, WFIELD("dynamic"));
    if (!absent(item(w, "block_structure")))
        return qvl_errorf("%s: quantization_config.%s: block int4 is not supported", path, WFIELD("block_structure"));
#undef WFIELD
    return read_skip(path, "ignore", item(q, "ignore"), qc);
}

static int parse_awq(const char *path, const cJSON *q, qvl_quant_config *qc) {
    qc->method = QVL_QUANT_AWQ;
    const cJSON *v = item(q, "version");
    strcpy(qc->format, "gemm");
    if (!absent(v) && get_string(path, "version", v, qc->format, sizeof qc->format)) return -1;
    for (char *c = qc->format; *c; c++) *c = (char)tolower((unsigned char)*c);
    if (strcmp(qc->format, "gemm") != 0)
        return qvl_errorf("%s: quantization_config.version: '%s' is not supported (gemm)", path, qc->format);
    const char *bk = item(q, "bits") ? "bits" : "w_bit";
    if (get_pos(path, bk, item(q, bk), &qc->bits)) return -1;
    if (qc->bits != 4) return qvl_errorf("%s: quantization_config.%s: %d-bit weights are not supported (4)", path, bk, qc->bits);
    const char *gk = item(q, "group_size") ? "group_size" : "q_group_size";
    if (get_pos(path, gk, item(q, gk), &qc->group_size)) return -1;
    if (qc->group_size % 8)
        return qvl_errorf("%s: quantization_config.%s: %d is not a multiple of 8", path, gk, qc->group_size);
    const cJSON *zp = item(q, "zero_point");
    if (!absent(zp) && !cJSON_IsBool(zp)) return qvl_errorf("%s: quantization_config.zero_point: must be true or false", path);
    if (cJSON_IsFalse(zp)) return qvl_errorf("%s: quantization_config.zero_point: false is not supported (GEMM with zero points)", path);
    qc->symmetric = 0;
    return read_skip(path, "modules_to_not_convert", item(q, "modules_to_not_convert"), qc);
}

static int parse_fp8(const char *path, const cJSON *q, qvl_quant_config *qc) {
    qc->method = QVL_QUANT_FP8;
    qc->bits = 8;
    qc->symmetric = -1;
    strcpy(qc->format, "e4m3");
    if (!absent(item(q, "fmt")) && get_string(path, "fmt", item(q, "fmt"), qc->format, sizeof qc->format)) return -1;
    if (strcmp(qc->format, "e4m3") != 0)
        return qvl_errorf("%s: quantization_config.fmt: '%s' is not supported (e4m3)", path, qc->format);
    char act[32] = "dynamic";
    if (!absent(item(q, "activation_scheme")) && get_string(path, "activation_scheme", item(q, "activation_scheme"), act, sizeof act))
        return -1;
    if (strcmp(act, "dynamic") != 0)
        return qvl_errorf("%s: quantization_config.activation_scheme: '%s' is not supported (dynamic)", path, act);
    const cJSON *b = item(q, "weight_block_size");
    qc->block[0] = qc->block[1] = 128; /* transformers' FineGrainedFP8Config default */
    if (absent(b)) return read_skip(path, "modules_to_not_convert", item(q, "modules_to_not_convert"), qc);
    if (!cJSON_IsArray(b) || cJSON_GetArraySize(b) != 2)
        return qvl_errorf("%s: quantization_config.weight_block_size: must be [out, in]", path);
    for (int i = 0; i < 2; i++)
        if (get_pos(path, "weight_block_size", cJSON_GetArrayItem(b, i), &qc->block[i])) return -1;
    if (qc->block[1] % 16)
        return qvl_errorf("%s: quantization_config.weight_block_size: input block %d is not a multiple of 16", path, qc->block[1]);
    return read_skip(path, "modules_to_not_convert", item(q, "modules_to_not_convert"), qc);
}

int qvl_quant_config_parse(const char *path, const cJSON *q, qvl_config *cfg) {
    qvl_quant_config *qc = &cfg->quant;
    memset(qc, 0, sizeof *qc);
    const cJSON *m = item(q, "quant_method");
    if (absent(m)) return qvl_errorf("%s: quantization_config.quant_method: missing", path);
    if (get_string(path, "quant_method", m, cfg->quant_method, sizeof cfg->quant_method)) return -1;
    if (!strcmp(cfg->quant_method, "compressed-tensors")) return parse_ct(path, q, qc);
    if (!strcmp(cfg->quant_method, "awq")) return parse_awq(path, q, qc);
    if (!strcmp(cfg->quant_method, "fp8")) return parse_fp8(path, q, qc);
    return qvl_errorf("%s: quantization_config.quant_method: '%s' is not supported (compressed-tensors, awq, fp8)", path,
                      cfg->quant_method);
}

/* Python's re.match(pattern, name): a match anchored at the start (not necessarily the whole name). */
static int regex_match_start(const char *pattern, const char *name) {
    int err;
    PCRE2_SIZE off;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED, PCRE2_ANCHORED, &err, &off, NULL);
    if (!re) return 0; /* not a regex: only the literal rules apply */
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
    int rc = md ? pcre2_match(re, (PCRE2_SPTR)name, strlen(name), 0, 0, md, NULL) : -1;
    pcre2_match_data_free(md);
    pcre2_code_free(re);
    return rc >= 0;
}

int qvl_quant_wants(const qvl_config *cfg, const char *name) {
    const qvl_quant_config *qc = &cfg->quant;
    if (qc->method == QVL_QUANT_NONE) return 0;
    if (qc->method != QVL_QUANT_CT && !strcmp(name, "lm_head")) return 0;
    const char *e = qc->skip;
    for (int i = 0; i < qc->n_skip; i++, e += strlen(e) + 1) {
        if (!strncmp(e, "re:", 3)) {
            if (regex_match_start(e + 3, name)) return 0;
        } else if (qc->method == QVL_QUANT_CT) {
            if (!strcmp(e, name)) return 0;
        } else if (strstr(name, e) || regex_match_start(e, name))
            return 0;
    }
    return 1;
}

int qvl_quant_role_is_linear(qvl_tensor_role r) {
    switch (r) {
    case QVL_TN_VB_QKV_W: case QVL_TN_VB_PROJ_W: case QVL_TN_VB_FC1_W: case QVL_TN_VB_FC2_W:
    case QVL_TN_MG_FC1_W: case QVL_TN_MG_FC2_W:
    case QVL_TN_TL_Q: case QVL_TN_TL_K: case QVL_TN_TL_V: case QVL_TN_TL_O:
    case QVL_TN_TL_GATE: case QVL_TN_TL_UP: case QVL_TN_TL_DOWN:
    case QVL_TN_LM_HEAD: return 1;
    default: return 0;
    }
}
