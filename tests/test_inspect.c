/* Checkpoint check and `qvl inspect` on real-shaped sparse checkpoints (2B, 4B single file; 8B
 * sharded). Expected parameter counts are computed here from the spec's shape formulas, not from
 * src/model/tensor_check.c. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/safetensors.h"
#include "model/config.h"
#include "model/tensor_check.h"
#include "sparse_ckpt.h"
#include "test.h"
#include "util/error.h"

typedef struct {
    const char *name;
    int64_t d, i, layers, heads, tie, dv, iv, depth;
} size_row;

static const size_row sizes[] = {
    {"2b", 2048, 6144, 28, 16, 1, 1024, 4096, 24},
    {"4b", 2560, 9728, 36, 32, 1, 1024, 4096, 24},
    {"8b", 4096, 12288, 36, 32, 0, 1152, 4304, 27},
};

/* Parameter counts straight from spec 1.3. */
static void expected_params(const size_row *s, int64_t g[5]) {
    int64_t V = 151936, D = s->d, Dv = s->dv, Iv = s->iv, q = s->heads * 128, kv = 1024;
    g[0] = Dv * 3 * 2 * 16 * 16 + Dv + 2304 * Dv +
           s->depth * (4 * Dv + (3 * Dv * Dv + 3 * Dv) + (Dv * Dv + Dv) + (Iv * Dv + Iv) + (Dv * Iv + Dv));
    g[1] = 2 * Dv + (16 * Dv * Dv + 4 * Dv) + (D * 4 * Dv + D);
    g[2] = 3 * (2 * 4 * Dv + (16 * Dv * Dv + 4 * Dv) + (D * 4 * Dv + D));
    g[3] = V * D + s->layers * (2 * D + q * D + 2 * kv * D + D * q + 2 * 128 + 3 * s->i * D) + D;
    g[4] = s->tie ? 0 : V * D;
}

static char *mkdir_tmp(const char *name) {
    static char buf[8][512];
    static int k;
    char *p = buf[k++ % 8];
    snprintf(p, 512, "%s/%s", test_tmpdir(), name);
    return p;
}

TEST(inspect_params_match_spec_formulas) {
    int64_t g[5];
    expected_params(&sizes[2], g);
    CHECK_INT(g[0] + g[1] + g[2] + g[3] + g[4], 8767123696LL); /* the released 8B: 8.77e9 */
    for (int s = 0; s < 3; s++) {
        char src[256];
        snprintf(src, sizeof src, "tests/fixtures/configs/%s", sizes[s].name);
        qvl_config cfg;
        CHECK_INT(qvl_config_load(src, &cfg), 0);
        qvl_param_counts pc;
        CHECK_INT(qvl_param_count(&cfg, &pc), 0);
        expected_params(&sizes[s], g);
        int64_t total = 0;
        for (int k = 0; k < 5; k++) {
            CHECK_INT(pc.group[k], g[k]);
            total += g[k];
        }
        CHECK_INT(pc.total, total);
    }
}

TEST(inspect_expected_tensor_list) {
    qvl_config cfg;
    CHECK_INT(qvl_config_load("tests/fixtures/configs/8b", &cfg), 0);
    int n = 0;
    qvl_tensor_spec *s = qvl_expected_tensors(&cfg, &n);
    /* vision 3 + 27*12, merger 6, deepstack 3*6, text 1 + 36*11 + 1, lm_head 1 */
    CHECK_INT(n, 3 + 27 * 12 + 6 + 18 + 1 + 36 * 11 + 1 + 1);
    CHECK_STR(s[0].name, "model.visual.patch_embed.proj.weight");
    CHECK_INT(s[0].ndim, 5);
    CHECK_INT(s[0].shape[0], 1152);
    CHECK_INT(s[0].shape[4], 16);
    CHECK_STR(s[n - 1].name, "lm_head.weight");
    int found = 0;
    for (int i = 0; i < n; i++)
        if (!strcmp(s[i].name, "model.language_model.layers.35.self_attn.q_proj.weight")) {
            found += 1;
            CHECK_INT(s[i].shape[0], 4096);
            CHECK_INT(s[i].shape[1], 4096);
            CHECK_INT(s[i].group, QVL_GROUP_TEXT);
        } else if (!strcmp(s[i].name, "model.visual.deepstack_merger_list.2.norm.weight")) {
            found += 10;
            CHECK_INT(s[i].shape[0], 4 * 1152);
            CHECK_INT(s[i].group, QVL_GROUP_DEEPSTACK);
        } else if (!strcmp(s[i].name, "model.visual.merger.linear_fc2.weight")) {
            found += 100;
            CHECK_INT(s[i].shape[0], 4096);
            CHECK_INT(s[i].shape[1], 4608);
        }
    CHECK_INT(found, 111);
    free(s);
    /* 4B is tied: no lm_head.weight expected. */
    CHECK_INT(qvl_config_load("tests/fixtures/configs/4b", &cfg), 0);
    s = qvl_expected_tensors(&cfg, &n);
    CHECK_INT(n, 3 + 24 * 12 + 6 + 18 + 1 + 36 * 11 + 1);
    CHECK_STR(s[n - 1].name, "model.language_model.norm.weight");
    free(s);
}

/* Builds a sparse checkpoint of SIZE in tmp/NAME and runs the check; returns its rc. */
static int check_dir(const char *dir) {
    qvl_config cfg;
    if (qvl_config_load(dir, &cfg) != 0) return -2;
    qvl_safetensors *st = qvl_st_open(dir);
    if (!st) return -3;
    int rc = qvl_checkpoint_check(&cfg, st);
    qvl_st_close(st);
    return rc;
}

TEST(inspect_check_real_shaped_checkpoints) {
    const char *names[] = {"2b", "4b", "8b"};
    for (int s = 0; s < 3; s++) {
        char src[256], dir[512];
        snprintf(src, sizeof src, "tests/fixtures/configs/%s", names[s]);
        snprintf(dir, sizeof dir, "%s/ok-%s", test_tmpdir(), names[s]);
        CHECK_INT(sparse_model_dir(dir, src, s == 2 ? 4 : 1, NULL), 0);
        CHECK_INT(check_dir(dir), 0);
    }
    /* the 8B set is sharded: 4 files behind the index */
    qvl_safetensors *st = qvl_st_open(mkdir_tmp("ok-8b"));
    CHECK(st != NULL);
    if (st) {
        CHECK_INT(qvl_st_file_count(st), 4);
        CHECK_INT(qvl_st_count(st), 3 + 27 * 12 + 6 + 18 + 1 + 36 * 11 + 1 + 1);
        const qvl_tensor *t = qvl_st_find(st, "lm_head.weight");
        CHECK(t != NULL);
        if (t) {
            CHECK_CONTAINS(t->file, "model-00004-of-00004.safetensors");
            CHECK_INT(t->nbytes, 151936LL * 4096 * 2);
        }
        CHECK_INT(qvl_st_data_bytes(st), 8767123696LL * 2);
        qvl_st_close(st);
    }
}

static int drop_q_proj_7(qvl_tensor_spec *s, int n) {
    for (int i = 0; i < n; i++)
        if (!strcmp(s[i].name, "model.language_model.layers.7.self_attn.q_proj.weight")) {
            memmove(&s[i], &s[i + 1], (size_t)(n - i - 1) * sizeof *s);
            return n - 1;
        }
    return n;
}

static int transpose_fc2(qvl_tensor_spec *s, int n) {
    for (int i = 0; i < n; i++)
        if (!strcmp(s[i].name, "model.visual.blocks.3.mlp.linear_fc2.weight")) {
            int64_t a = s[i].shape[0];
            s[i].shape[0] = s[i].shape[1];
            s[i].shape[1] = a;
        }
    return n;
}

static int drop_lm_head(qvl_tensor_spec *s, int n) { return strcmp(s[n - 1].name, "lm_head.weight") ? n : n - 1; }

TEST(inspect_check_names_missing_and_wrong_tensors) {
    const char *src8 = "tests/fixtures/configs/8b";
    char *d = mkdir_tmp("miss-q");
    CHECK_INT(sparse_model_dir(d, src8, 3, drop_q_proj_7), 0);
    CHECK_INT(check_dir(d), -1);
    CHECK_CONTAINS(qvl_error(), "model.safetensors.index.json: missing tensor model.language_model.layers.7.self_attn.q_proj.weight");
    CHECK_CONTAINS(qvl_error(), "expected shape [4096, 4096]");

    d = mkdir_tmp("bad-fc2");
    CHECK_INT(sparse_model_dir(d, src8, 3, transpose_fc2), 0);
    CHECK_INT(check_dir(d), -1);
    CHECK_CONTAINS(qvl_error(), "model-00001-of-00003.safetensors: tensor model.visual.blocks.3.mlp.linear_fc2.weight "
                                "has shape [4304, 1152], expected [1152, 4304]");

    d = mkdir_tmp("no-lm-head");
    CHECK_INT(sparse_model_dir(d, src8, 1, drop_lm_head), 0);
    CHECK_INT(check_dir(d), -1);
    CHECK_CONTAINS(qvl_error(), "model.safetensors: missing tensor lm_head.weight");

    /* a tied model with an extra lm_head.weight is fine; one with an int tensor is not */
    d = mkdir_tmp("int-norm");
    CHECK_INT(sparse_model_dir(d, "tests/fixtures/configs/2b", 1, NULL), 0);
    char path[600];
    snprintf(path, sizeof path, "%s/model.safetensors", d);
    CHECK_INT(sparse_write_raw(path,
                               "{\"model.visual.patch_embed.proj.weight\":{\"dtype\":\"I8\",\"shape\":[1024,3,2,16,16],"
                               "\"data_offsets\":[0,1572864]}}",
                               -1, 1572864),
              0);
    CHECK_INT(check_dir(d), -1);
    CHECK_CONTAINS(qvl_error(), "tensor model.visual.patch_embed.proj.weight has dtype I8, expected BF16, F16 or F32");
}

/* A quantization_config qvl cannot run is refused at load with one line naming the field, by the
 * library and by `qvl inspect` (exit 1). */
TEST(inspect_check_refuses_unsupported_quantization) {
    char *d = mkdir_tmp("awq");
    CHECK_INT(sparse_model_dir(d, "tests/fixtures/configs/4b", 1, NULL), 0);
    char path[600];
    snprintf(path, sizeof path, "%s/config.json", d);
    size_t n;
    FILE *f = fopen(path, "rb");
    char buf[8192];
    n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *brace = strrchr(buf, '}');
    strcpy(brace, ",\"quantization_config\":{\"quant_method\":\"compressed-tensors\",\"format\":\"pack-quantized\"}}\n");
    CHECK_INT(write_text(path, buf), 0);
    CHECK_INT(check_dir(d), -2);
    char want[700];
    snprintf(want, sizeof want, "%s/config.json: quantization_config.config_groups: missing or empty", d);
    CHECK_STR(qvl_error(), want);

    char *out = NULL, *err = NULL;
    CHECK_INT(test_qvl(&out, &err, "inspect --json %s", d), 1);
    CHECK_CONTAINS(err, "quantization_config.config_groups: missing or empty");
    free(out);
    free(err);
}

TEST(inspect_cli_json_8b_sharded) {
    char *d = mkdir_tmp("cli-8b");
    CHECK_INT(sparse_model_dir(d, "tests/fixtures/configs/8b", 4, NULL), 0);
    char *out = NULL, *err = NULL;
    CHECK_INT(test_qvl(&out, &err, "inspect %s --json", d), 0);
    cJSON *j = cJSON_Parse(out);
    CHECK(j != NULL);
    if (j) {
        CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(j, "model_type")), "qwen3_vl");
        CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(j, "dtype")), "bfloat16");
        CHECK(cJSON_IsNull(cJSON_GetObjectItem(j, "quantization")));
        cJSON *t = cJSON_GetObjectItem(j, "text"), *v = cJSON_GetObjectItem(j, "vision"), *p = cJSON_GetObjectItem(j, "params");
        CHECK_INT(cJSON_GetNumberValue(cJSON_GetObjectItem(t, "hidden_size")), 4096);
        CHECK_INT(cJSON_GetNumberValue(cJSON_GetObjectItem(t, "num_hidden_layers")), 36);
        CHECK(cJSON_IsFalse(cJSON_GetObjectItem(t, "tie_word_embeddings")));
        CHECK_INT(cJSON_GetNumberValue(cJSON_GetObjectItem(v, "depth")), 27);
        CHECK_INT(cJSON_GetArraySize(cJSON_GetObjectItem(v, "deepstack_visual_indexes")), 3);
        int64_t g[5];
        expected_params(&sizes[2], g);
        const char *keys[] = {"vision", "merger", "deepstack", "text", "lm_head"};
        for (int k = 0; k < 5; k++) CHECK_INT((int64_t)cJSON_GetNumberValue(cJSON_GetObjectItem(p, keys[k])), g[k]);
        CHECK_INT((int64_t)cJSON_GetNumberValue(cJSON_GetObjectItem(p, "total")), 8767123696LL);
        CHECK_INT((int64_t)cJSON_GetNumberValue(cJSON_GetObjectItem(j, "weight_bytes")), 2 * 8767123696LL);
        cJSON_Delete(j);
    }
    free(out);
    free(err);
}

TEST(inspect_cli_human_and_errors) {
    char *d = mkdir_tmp("cli-2b");
    CHECK_INT(sparse_model_dir(d, "tests/fixtures/configs/2b", 1, NULL), 0);
    char *out = NULL, *err = NULL;
    CHECK_INT(test_qvl(&out, &err, "inspect %s", d), 0);
    CHECK_CONTAINS(out, "28 layers, hidden 2048");
    CHECK_CONTAINS(out, "total 2.128B (2127532032)");
    CHECK_CONTAINS(out, "tied lm_head");
    free(out);
    free(err);

    CHECK_INT(test_qvl(&out, &err, "inspect"), 2); /* usage */
    CHECK_CONTAINS(err, "qvl: inspect: missing MODEL_DIR");
    free(out);
    free(err);
    CHECK_INT(test_qvl(&out, &err, "inspect %s --bogus", d), 2);
    free(out);
    free(err);
    CHECK_INT(test_qvl(&out, &err, "inspect %s/nowhere", test_tmpdir()), 1);
    CHECK_CONTAINS(err, "nowhere: not a folder");
    free(out);
    free(err);
    /* config only, no weights */
    CHECK_INT(test_qvl(&out, &err, "inspect tests/fixtures/configs/4b --json"), 1);
    CHECK_CONTAINS(err, "qvl: tests/fixtures/configs/4b: no model.safetensors or model.safetensors.index.json");
    CHECK_STR(out, "");
    free(out);
    free(err);
    /* a truncated weights file: one error line naming file and tensor, exit 1 */
    d = mkdir_tmp("cli-trunc");
    CHECK_INT(sparse_model_dir(d, "tests/fixtures/configs/4b", 1, NULL), 0);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "truncate -s -2 %s/model.safetensors", d);
    CHECK_INT(system(cmd), 0);
    CHECK_INT(test_qvl(&out, &err, "inspect %s", d), 1);
    CHECK_CONTAINS(err, "model.safetensors: tensor model.language_model.norm.weight: data_offsets");
    CHECK_CONTAINS(err, "run past the end of the data");
    CHECK_INT(strchr(err, '\n') - err, (long)strlen(err) - 1);
    CHECK_STR(out, "");
    free(out);
    free(err);
    /* missing tensor: error, nothing on stdout */
    d = mkdir_tmp("cli-miss");
    CHECK_INT(sparse_model_dir(d, "tests/fixtures/configs/8b", 2, drop_q_proj_7), 0);
    CHECK_INT(test_qvl(&out, &err, "inspect --json %s", d), 1);
    CHECK_CONTAINS(err, "missing tensor model.language_model.layers.7.self_attn.q_proj.weight");
    CHECK_STR(out, "");
    free(out);
    free(err);
}

/* The tiny checkpoints written by transformers 5.17 (tools/gen_tiny_models.py): real HF naming,
 * header layout and config layout pass the check, and the counts match the file. */
TEST(inspect_check_hf_written_tiny_models) {
    const char *dirs[] = {"tests/fixtures/tiny/tied", "tests/fixtures/tiny/untied"};
    for (int i = 0; i < 2; i++) {
        qvl_config c;
        CHECK_INT(qvl_config_load(dirs[i], &c), 0);
        CHECK_INT(c.text.tie_word_embeddings, i == 0);
        qvl_safetensors *st = qvl_st_open(dirs[i]);
        CHECK(st != NULL);
        if (!st) continue;
        CHECK_INT(qvl_checkpoint_check(&c, st), 0);
        int n = 0;
        qvl_tensor_spec *s = qvl_expected_tensors(&c, &n);
        CHECK_INT(qvl_st_count(st), n); /* nothing extra, nothing missing */
        qvl_param_counts pc;
        CHECK_INT(qvl_param_count(&c, &pc), 0);
        CHECK_INT(qvl_st_data_bytes(st), 2 * pc.total); /* BF16 */
        free(s);
        /* RMSNorm weights are initialised by the generator to values around 1: a sanity check that
         * BF16 conversion reads the real bytes */
        const qvl_tensor *t = qvl_st_find(st, "model.language_model.norm.weight");
        CHECK(t != NULL);
        if (t) {
            float *w = malloc(sizeof(float) * (size_t)qvl_tensor_numel(t));
            CHECK_INT(qvl_tensor_to_f32(t, w), 0);
            double sum = 0;
            for (int64_t k = 0; k < qvl_tensor_numel(t); k++) sum += w[k];
            CHECK(isfinite(sum) && sum != 0);
            free(w);
        }
        qvl_st_close(st);
    }
}

/* Writes [N, K] into every *.weight_shape tensor of DIR/model.safetensors (whose data the sparse
 * writer left as zeros), N and K from the config's Linear shapes. 0 or -1. */
static int write_weight_shapes(const char *dir, const qvl_config *c) {
    char path[700];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    FILE *f = fopen(path, "r+b");
    if (!f) return -1;
    uint64_t hlen = 0;
    int rc = fread(&hlen, 8, 1, f) == 1 ? 0 : -1;
    char *h = rc ? NULL : calloc(hlen + 1, 1);
    if (!h || fread(h, 1, hlen, f) != hlen) rc = -1;
    cJSON *j = rc ? NULL : cJSON_Parse(h);
    int n = 0;
    qvl_tensor_spec *s = qvl_expected_tensors(c, &n);
    for (cJSON *e = j ? j->child : NULL; e && !rc; e = e->next) {
        size_t L = strlen(e->string);
        if (L < 13 || strcmp(e->string + L - 13, ".weight_shape")) continue;
        int64_t v[2] = {0, 0};
        for (int i = 0; i < n; i++)
            if (!strncmp(s[i].name, e->string, L - 13) && !strcmp(s[i].name + L - 13, ".weight")) v[0] = s[i].shape[0], v[1] = s[i].shape[1];
        long off = (long)(8 + hlen + (uint64_t)cJSON_GetNumberValue(cJSON_GetArrayItem(cJSON_GetObjectItem(e, "data_offsets"), 0)));
        if (fseek(f, off, SEEK_SET) || fwrite(v, 8, 2, f) != 2) rc = -1;
    }
    free(s);
    cJSON_Delete(j);
    free(h);
    if (fclose(f)) rc = -1;
    return rc;
}

/* A real-shaped community AWQ 4B checkpoint (compressed-tensors pack-quantized W4A16, group 128,
 * spec 7.1): the 7 text Linears per layer become weight_packed I32 [N, K/8] + weight_scale BF16
 * [N, K/128] + weight_shape I64 [2]; everything else stays BF16 (the vision Linears too, although
 * ignore names only lm_head: they count as 16-bit). inspect reports it and counts the real bytes. */
TEST(inspect_awq_real_shaped) {
    qvl_config c;
    CHECK_INT(qvl_config_load("tests/fixtures/configs/4b", &c), 0);
    int n = 0;
    qvl_tensor_spec *s = qvl_expected_tensors(&c, &n);
    qvl_tensor_spec *q = malloc(sizeof *q * (size_t)n * 3);
    const char **dt = malloc(sizeof *dt * (size_t)n * 3);
    int m = 0;
    int64_t want_bytes = 0;
    for (int i = 0; i < n; i++) {
        const char *nm = s[i].name;
        size_t L = strlen(nm);
        int linear = strstr(nm, "model.language_model.layers.") && L > 12 && !strcmp(nm + L - 12, "_proj.weight");
        if (!linear) {
            q[m] = s[i];
            dt[m++] = "BF16";
            int64_t e = 2;
            for (int k = 0; k < s[i].ndim; k++) e *= s[i].shape[k];
            want_bytes += e;
            continue;
        }
        int64_t N = s[i].shape[0], K = s[i].shape[1];
        char base[80]; /* the longest text linear name without ".weight" is under 60 bytes */
        snprintf(base, sizeof base, "%.*s", (int)(L - 7), nm);
        q[m] = s[i], snprintf(q[m].name, sizeof q[m].name, "%s.weight_packed", base), q[m].shape[1] = K / 8, dt[m++] = "I32";
        q[m] = s[i], snprintf(q[m].name, sizeof q[m].name, "%s.weight_scale", base), q[m].shape[1] = K / 128, dt[m++] = "BF16";
        q[m] = s[i], snprintf(q[m].name, sizeof q[m].name, "%s.weight_shape", base), q[m].ndim = 1, q[m].shape[0] = 2, dt[m++] = "I64";
        want_bytes += N * (K / 8) * 4 + N * (K / 128) * 2 + 16;
    }
    char dir[600];
    snprintf(dir, sizeof dir, "%s/awq-4b", test_tmpdir());
    CHECK_INT(sparse_model_dir(dir, "tests/fixtures/configs/4b", 1, NULL), 0);
    char path[700];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    CHECK_INT(sparse_write_specs_mixed(path, q, dt, "BF16", m), 0);
    snprintf(path, sizeof path, "%s/config.json", dir);
    cJSON *j = NULL;
    {
        FILE *f = fopen(path, "rb");
        char buf[8192];
        size_t k = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[k] = 0;
        j = cJSON_Parse(buf);
    }
    cJSON *qc = cJSON_Parse("{\"quant_method\":\"compressed-tensors\",\"format\":\"pack-quantized\",\"config_groups\":"
                            "{\"group_0\":{\"targets\":[\"Linear\"],\"weights\":{\"num_bits\":4,\"type\":\"int\","
                            "\"strategy\":\"group\",\"group_size\":128,\"symmetric\":true},\"input_activations\":null}},"
                            "\"ignore\":[\"lm_head\"]}");
    cJSON_AddItemToObject(j, "quantization_config", qc);
    char *txt = cJSON_Print(j);
    CHECK_INT(write_text(path, txt), 0);
    free(txt);
    cJSON_Delete(j);

    CHECK_INT(qvl_config_load(dir, &c), 0);
    CHECK_STR(c.quant_method, "compressed-tensors");
    CHECK_STR(c.quant.format, "pack-quantized");
    CHECK_INT(c.quant.bits, 4);
    CHECK_INT(c.quant.group_size, 128);
    CHECK_INT(c.quant.symmetric, 1);
    qvl_safetensors *st = qvl_st_open(dir);
    CHECK(st != NULL);
    if (st) {
        CHECK_INT(qvl_checkpoint_check(&c, st), -1); /* the sparse weight_shape holds zeros, not [N, K] */
        CHECK_CONTAINS(qvl_error(), "model.language_model.layers.0.self_attn.q_proj.weight_shape says [0, 0], expected [4096, 2560]");
        CHECK_INT(qvl_st_count(st), m);
        CHECK_INT(qvl_st_data_bytes(st), want_bytes);
        qvl_st_close(st);
    }
    char *out = NULL, *err = NULL;
    CHECK_INT(test_qvl(&out, &err, "inspect --json %s", dir), 1);
    CHECK_CONTAINS(err, "weight_shape says [0, 0]");
    free(out);
    free(err);
    out = err = NULL;
    /* inspect itself with the check passing: weight_shape values written, see write_weight_shapes */
    CHECK_INT(write_weight_shapes(dir, &c), 0);
    CHECK_INT(test_qvl(&out, &err, "inspect --json %s", dir), 0);
    cJSON *o = cJSON_Parse(out);
    CHECK(o != NULL);
    if (o) {
        CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(o, "quantization")), "compressed-tensors");
        cJSON *d = cJSON_GetObjectItem(o, "quantization_config");
        CHECK_INT(cJSON_GetNumberValue(cJSON_GetObjectItem(d, "bits")), 4);
        CHECK_INT(cJSON_GetNumberValue(cJSON_GetObjectItem(d, "group_size")), 128);
        CHECK_INT((int64_t)cJSON_GetNumberValue(cJSON_GetObjectItem(o, "weight_bytes")), want_bytes);
        /* logical parameter count, from the config, as for the BF16 model */
        CHECK_INT((int64_t)cJSON_GetNumberValue(cJSON_GetObjectItem(cJSON_GetObjectItem(o, "params"), "total")), 4437815808LL);
        cJSON *ql = cJSON_GetObjectItem(d, "quantized_linears");
        CHECK_INT(cJSON_GetNumberValue(cJSON_GetArrayItem(cJSON_GetObjectItem(ql, "text"), 0)), 252);
        CHECK_INT(cJSON_GetNumberValue(cJSON_GetArrayItem(cJSON_GetObjectItem(ql, "vision"), 0)), 0);
        CHECK_INT(cJSON_GetArraySize(cJSON_GetObjectItem(d, "unquantized_linears")), 96 + 2 + 6);
        CHECK(cJSON_IsTrue(cJSON_GetObjectItem(d, "symmetric")));
        cJSON_Delete(o);
    }
    free(out);
    free(err);
    CHECK_INT(test_qvl(&out, &err, "inspect %s", dir), 0);
    CHECK_CONTAINS(out, "quantization compressed-tensors (pack-quantized, 4-bit, group 128, symmetric)");
    CHECK_CONTAINS(out, "all expected tensors present");
    CHECK_CONTAINS(out, "packed: 252 of 356 Linears (vision 0/96, merger 0/2, deepstack 0/6, text 252/252, lm_head 0/0)");
    CHECK_CONTAINS(out, "16-bit Linears: model.visual.blocks.*, model.visual.merger.*, model.visual.deepstack_merger_list.*\n");
    free(out);
    free(err);
    free(q);
    free(dt);
    free(s);
}
