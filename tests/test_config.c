/* config.json / preprocessor_config.json / generation_config.json loading and validation. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "model/config.h"
#include "sparse_ckpt.h"
#include "test.h"
#include "util/error.h"
#include "util/file.h"

static qvl_config cfg; /* large; static keeps it off the test stack */

static void save_json(const char *path, const cJSON *j) {
    char *s = cJSON_Print(j);
    CHECK_INT(write_text(path, s), 0);
    free(s);
}

/* Makes tmp/NAME holding the 8B fixture's config.json edited by `edit` (preprocessor and
 * generation files are copied only if `with_others`). Returns the folder. */
static const char *variant(const char *name, void (*edit)(cJSON *root), int with_others) {
    static char dirs[4][512];
    static int k;
    char *dir = dirs[k++ % 4];
    snprintf(dir, 512, "%s/cfg-%s", test_tmpdir(), name);
    mkdir(dir, 0755);
    char p[600];
    cJSON *j = test_read_json("tests/fixtures/configs/8b/config.json");
    if (edit) edit(j);
    snprintf(p, sizeof p, "%s/config.json", dir);
    save_json(p, j);
    cJSON_Delete(j);
    if (with_others) {
        const char *files[] = {"preprocessor_config.json", "generation_config.json"};
        for (int i = 0; i < 2; i++) {
            char src[256];
            snprintf(src, sizeof src, "tests/fixtures/configs/8b/%s", files[i]);
            char *t = qvl_read_file(src, NULL);
            snprintf(p, sizeof p, "%s/%s", dir, files[i]);
            CHECK_INT(write_text(p, t), 0);
            free(t);
        }
    }
    return dir;
}

static cJSON *tc(cJSON *r) { return cJSON_GetObjectItem(r, "text_config"); }
static cJSON *vc(cJSON *r) { return cJSON_GetObjectItem(r, "vision_config"); }

TEST(config_released_sizes) {
    struct {
        const char *dir;
        int d, i, layers, heads, tie, dv, iv, depth, ds0;
    } want[] = {
        {"tests/fixtures/configs/2b", 2048, 6144, 28, 16, 1, 1024, 4096, 24, 5},
        {"tests/fixtures/configs/4b", 2560, 9728, 36, 32, 1, 1024, 4096, 24, 5},
        {"tests/fixtures/configs/8b", 4096, 12288, 36, 32, 0, 1152, 4304, 27, 8},
        {"tests/fixtures/configs/8b-tf5", 4096, 12288, 36, 32, 0, 1152, 4304, 27, 8},
    };
    for (int s = 0; s < 4; s++) {
        CHECK_INT(qvl_config_load(want[s].dir, &cfg), 0);
        CHECK_STR(cfg.model_type, "qwen3_vl");
        CHECK_STR(cfg.dtype, "bfloat16");
        CHECK_STR(cfg.quant_method, "");
        CHECK_STR(cfg.model_dir, want[s].dir);
        CHECK_INT(cfg.text.hidden_size, want[s].d);
        CHECK_INT(cfg.text.intermediate_size, want[s].i);
        CHECK_INT(cfg.text.num_layers, want[s].layers);
        CHECK_INT(cfg.text.num_heads, want[s].heads);
        CHECK_INT(cfg.text.num_kv_heads, 8);
        CHECK_INT(cfg.text.head_dim, 128);
        CHECK_INT(cfg.text.vocab_size, 151936);
        CHECK_INT(cfg.text.max_position_embeddings, 262144);
        CHECK_NEAR(cfg.text.rms_norm_eps, 1e-6, 0);
        CHECK_NEAR(cfg.text.rope_theta, 5e6, 0);
        CHECK_INT(cfg.text.mrope_section[0], 24);
        CHECK_INT(cfg.text.mrope_section[1], 20);
        CHECK_INT(cfg.text.mrope_section[2], 20);
        CHECK_INT(cfg.text.mrope_interleaved, 1);
        CHECK_INT(cfg.text.tie_word_embeddings, want[s].tie);
        CHECK_INT(cfg.vision.depth, want[s].depth);
        CHECK_INT(cfg.vision.hidden_size, want[s].dv);
        CHECK_INT(cfg.vision.intermediate_size, want[s].iv);
        CHECK_INT(cfg.vision.num_heads, 16);
        CHECK_INT(cfg.vision.out_hidden_size, want[s].d);
        CHECK_INT(cfg.vision.patch_size, 16);
        CHECK_INT(cfg.vision.temporal_patch_size, 2);
        CHECK_INT(cfg.vision.spatial_merge_size, 2);
        CHECK_INT(cfg.vision.in_channels, 3);
        CHECK_INT(cfg.vision.num_position_embeddings, 2304);
        CHECK_INT(cfg.vision.n_deepstack, 3);
        CHECK_INT(cfg.vision.deepstack_indexes[0], want[s].ds0);
        CHECK_INT(cfg.vision.deepstack_indexes[2], want[s].ds0 == 5 ? 17 : 24);
        CHECK_STR(cfg.vision.hidden_act, "gelu_pytorch_tanh");
        CHECK_INT(cfg.image_token_id, 151655);
        CHECK_INT(cfg.video_token_id, 151656);
        CHECK_INT(cfg.vision_start_token_id, 151652);
        CHECK_INT(cfg.vision_end_token_id, 151653);
        CHECK_INT(cfg.bos_token_id, 151643);
        CHECK_INT(cfg.eos_token_id, 151645);
        CHECK_INT(cfg.pad_token_id, 151643);
        CHECK_INT(cfg.preproc.min_pixels, 65536);
        CHECK_INT(cfg.preproc.max_pixels, 16777216);
        CHECK_INT(cfg.preproc.patch_size, 16);
        CHECK_INT(cfg.preproc.merge_size, 2);
        CHECK_INT(cfg.preproc.temporal_patch_size, 2);
        CHECK_NEAR(cfg.preproc.image_mean[1], 0.5, 0);
        CHECK_NEAR(cfg.preproc.image_std[2], 0.5, 0);
        CHECK_NEAR(cfg.preproc.rescale_factor, 1.0 / 255, 1e-15);
        CHECK_INT(cfg.gen.do_sample, 1);
        CHECK_NEAR(cfg.gen.temperature, 0.7, 0);
        CHECK_NEAR(cfg.gen.top_p, 0.8, 0);
        CHECK_INT(cfg.gen.top_k, 20);
        CHECK_NEAR(cfg.gen.repetition_penalty, 1.0, 0);
        CHECK_INT(cfg.gen.n_eos, 2);
        CHECK_INT(cfg.gen.eos_ids[0], 151645);
        CHECK_INT(cfg.gen.eos_ids[1], 151643);
    }
}

TEST(config_defaults_when_side_files_absent) {
    const char *d = variant("bare", NULL, 0);
    CHECK_INT(qvl_config_load(d, &cfg), 0);
    CHECK_INT(cfg.preproc.min_pixels, 65536);
    CHECK_INT(cfg.preproc.max_pixels, 16777216);
    CHECK_INT(cfg.preproc.patch_size, 16);
    CHECK_NEAR(cfg.preproc.image_mean[0], 0.5, 0);
    CHECK_INT(cfg.gen.do_sample, 1);
    CHECK_NEAR(cfg.gen.temperature, 0.7, 0);
    CHECK_NEAR(cfg.gen.top_p, 0.8, 0);
    CHECK_INT(cfg.gen.top_k, 20);
    CHECK_INT(cfg.gen.n_eos, 2);
    CHECK_INT(cfg.gen.eos_ids[0], 151645);
    CHECK_INT(cfg.gen.eos_ids[1], 151643);
}

TEST(config_side_file_variants) {
    const char *d = variant("side", NULL, 0);
    char p[600];
    snprintf(p, sizeof p, "%s/preprocessor_config.json", d);
    CHECK_INT(write_text(p, "{\"min_pixels\": 3136, \"max_pixels\": 12845056, \"image_mean\": [0.48, 0.45, 0.4],"
                            "\"image_std\": [0.26, 0.26, 0.27], \"patch_size\": 16}"), 0);
    snprintf(p, sizeof p, "%s/generation_config.json", d);
    CHECK_INT(write_text(p, "{\"eos_token_id\": 151645, \"temperature\": 0.1}"), 0);
    CHECK_INT(qvl_config_load(d, &cfg), 0);
    CHECK_INT(cfg.preproc.min_pixels, 3136);
    CHECK_INT(cfg.preproc.max_pixels, 12845056);
    CHECK_NEAR(cfg.preproc.image_mean[2], 0.4f, 0);
    CHECK_NEAR(cfg.preproc.image_std[0], 0.26f, 0);
    CHECK_INT(cfg.gen.n_eos, 1);
    CHECK_INT(cfg.gen.eos_ids[0], 151645);
    CHECK_NEAR(cfg.gen.temperature, 0.1, 0);
    /* keys absent from a present file take transformers' GenerationConfig defaults */
    CHECK_INT(cfg.gen.do_sample, 0);
    CHECK_NEAR(cfg.gen.top_p, 1.0, 0);
    CHECK_INT(cfg.gen.top_k, 50);

    /* size.* wins over top-level min/max_pixels, as in the released file */
    snprintf(p, sizeof p, "%s/preprocessor_config.json", d);
    CHECK_INT(write_text(p, "{\"min_pixels\": 3136, \"size\": {\"shortest_edge\": 4096, \"longest_edge\": 1003520}}"), 0);
    snprintf(p, sizeof p, "%s/generation_config.json", d);
    CHECK_INT(write_text(p, "{}"), 0);
    CHECK_INT(qvl_config_load(d, &cfg), 0);
    CHECK_INT(cfg.preproc.min_pixels, 4096);
    CHECK_INT(cfg.preproc.max_pixels, 1003520);
    CHECK_INT(cfg.gen.n_eos, 1); /* falls back to config.json's eos */
    CHECK_INT(cfg.gen.eos_ids[0], 151645);
}

static void e_quant(cJSON *r) {
    cJSON *q = cJSON_AddObjectToObject(r, "quantization_config");
    cJSON_AddStringToObject(q, "quant_method", "fp8");
    cJSON_AddStringToObject(q, "fmt", "e4m3");
}
static void e_top_level_ids(cJSON *r) { /* bos/eos at top level, tie only in text_config, dtype as torch_dtype */
    cJSON_DeleteItemFromObject(tc(r), "bos_token_id");
    cJSON_DeleteItemFromObject(tc(r), "eos_token_id");
    cJSON_DeleteItemFromObject(tc(r), "dtype");
    cJSON_DeleteItemFromObject(r, "tie_word_embeddings");
    cJSON_AddNumberToObject(r, "bos_token_id", 7);
    cJSON_AddItemToObject(r, "eos_token_id", cJSON_CreateIntArray((const int[]){9, 8}, 2));
    cJSON_AddStringToObject(r, "torch_dtype", "float16");
}

TEST(config_layout_variants) {
    CHECK_INT(qvl_config_load(variant("quant", e_quant, 1), &cfg), 0);
    CHECK_STR(cfg.quant_method, "fp8");
    CHECK_INT(qvl_config_load(variant("ids", e_top_level_ids, 0), &cfg), 0);
    CHECK_INT(cfg.bos_token_id, 7);
    CHECK_INT(cfg.eos_token_id, 9);
    CHECK_INT(cfg.pad_token_id, 7);
    CHECK_STR(cfg.dtype, "float16");
    CHECK_INT(cfg.text.tie_word_embeddings, 0);
    CHECK_INT(cfg.gen.eos_ids[0], 151645); /* side file absent: spec defaults */
}

/* ---- errors: each names the file and the field ------------------------------------------------ */

static void e_hidden_missing(cJSON *r) { cJSON_DeleteItemFromObject(tc(r), "hidden_size"); }
static void e_hidden_str(cJSON *r) { cJSON_ReplaceItemInObject(tc(r), "hidden_size", cJSON_CreateString("4096")); }
static void e_layers_zero(cJSON *r) { cJSON_ReplaceItemInObject(tc(r), "num_hidden_layers", cJSON_CreateNumber(0)); }
static void e_vision_indivisible(cJSON *r) { cJSON_ReplaceItemInObject(vc(r), "num_heads", cJSON_CreateNumber(17)); }
static void e_kv_heads(cJSON *r) { cJSON_ReplaceItemInObject(tc(r), "num_key_value_heads", cJSON_CreateNumber(5)); }
static void e_mrope_sum(cJSON *r) {
    cJSON *rs = cJSON_GetObjectItem(tc(r), "rope_scaling");
    cJSON_ReplaceItemInObject(rs, "mrope_section", cJSON_CreateIntArray((const int[]){24, 20, 24}, 3));
}
static void e_mrope_len(cJSON *r) {
    cJSON *rs = cJSON_GetObjectItem(tc(r), "rope_scaling");
    cJSON_ReplaceItemInObject(rs, "mrope_section", cJSON_CreateIntArray((const int[]){32, 32}, 2));
}
static void e_no_rope(cJSON *r) { cJSON_DeleteItemFromObject(tc(r), "rope_scaling"); }
static void e_no_theta(cJSON *r) { cJSON_DeleteItemFromObject(tc(r), "rope_theta"); }
static void e_rope_type(cJSON *r) {
    cJSON_ReplaceItemInObject(cJSON_GetObjectItem(tc(r), "rope_scaling"), "rope_type", cJSON_CreateString("yarn"));
}
static void e_deepstack_depth(cJSON *r) {
    cJSON_ReplaceItemInObject(vc(r), "deepstack_visual_indexes", cJSON_CreateIntArray((const int[]){8, 16, 27}, 3));
}
static void e_deepstack_missing(cJSON *r) { cJSON_DeleteItemFromObject(vc(r), "deepstack_visual_indexes"); }
static void e_out_hidden(cJSON *r) { cJSON_ReplaceItemInObject(vc(r), "out_hidden_size", cJSON_CreateNumber(2560)); }
static void e_tie_conflict(cJSON *r) { cJSON_ReplaceItemInObject(r, "tie_word_embeddings", cJSON_CreateTrue()); }
static void e_model_type(cJSON *r) { cJSON_ReplaceItemInObject(r, "model_type", cJSON_CreateString("qwen2_5_vl")); }
static void e_no_model_type(cJSON *r) { cJSON_DeleteItemFromObject(r, "model_type"); }
static void e_no_text(cJSON *r) { cJSON_DeleteItemFromObject(r, "text_config"); }
static void e_vision_array(cJSON *r) { cJSON_ReplaceItemInObject(r, "vision_config", cJSON_CreateArray()); }
static void e_image_token_vocab(cJSON *r) { cJSON_ReplaceItemInObject(r, "image_token_id", cJSON_CreateNumber(200000)); }
static void e_no_image_token(cJSON *r) { cJSON_DeleteItemFromObject(r, "image_token_id"); }
static void e_pos_square(cJSON *r) { cJSON_ReplaceItemInObject(vc(r), "num_position_embeddings", cJSON_CreateNumber(2300)); }
static void e_attn_bias(cJSON *r) { cJSON_ReplaceItemInObject(tc(r), "attention_bias", cJSON_CreateTrue()); }
static void e_eps_str(cJSON *r) { cJSON_ReplaceItemInObject(tc(r), "rms_norm_eps", cJSON_CreateString("1e-6")); }
static void e_interleaved_str(cJSON *r) {
    cJSON_ReplaceItemInObject(cJSON_GetObjectItem(tc(r), "rope_scaling"), "mrope_interleaved", cJSON_CreateString("yes"));
}
/* transformers 5.x layout with a bad section inside rope_parameters */
static void e_tf5_bad(cJSON *r) {
    cJSON *t = tc(r);
    cJSON_DeleteItemFromObject(t, "rope_scaling");
    cJSON_DeleteItemFromObject(t, "rope_theta");
    cJSON *rp = cJSON_AddObjectToObject(t, "rope_parameters");
    cJSON_AddStringToObject(rp, "rope_type", "default");
    cJSON_AddNumberToObject(rp, "rope_theta", 5e6);
    cJSON_AddItemToObject(rp, "mrope_section", cJSON_CreateIntArray((const int[]){16, 24, 24}, 3));
}

TEST(config_errors_name_file_and_field) {
    struct {
        const char *name;
        void (*edit)(cJSON *);
        const char *want;
    } cases[] = {
        {"hidden-missing", e_hidden_missing, "config.json: text_config.hidden_size: missing"},
        {"hidden-str", e_hidden_str, "config.json: text_config.hidden_size: must be an integer"},
        {"layers-zero", e_layers_zero, "config.json: text_config.num_hidden_layers: must be positive (got 0)"},
        {"vision-indiv", e_vision_indivisible, "config.json: vision_config.hidden_size 1152 is not divisible by num_heads 17"},
        {"kv-heads", e_kv_heads, "config.json: text_config.num_attention_heads 32 is not a multiple of num_key_value_heads 5"},
        {"mrope-sum", e_mrope_sum, "config.json: text_config.rope_scaling.mrope_section sums to 68 but head_dim/2 is 64"},
        {"mrope-len", e_mrope_len, "config.json: text_config.rope_scaling.mrope_section: needs 3 entries"},
        {"no-rope", e_no_rope, "config.json: text_config.rope_parameters (or rope_scaling): missing"},
        {"no-theta", e_no_theta, "config.json: text_config.rope_theta: missing"},
        {"rope-type", e_rope_type, "config.json: text_config.rope_scaling.rope_type: 'yarn' is not supported"},
        {"ds-depth", e_deepstack_depth, "config.json: vision_config.deepstack_visual_indexes[2] = 27 is outside 0..depth-1 (depth 27)"},
        {"ds-missing", e_deepstack_missing, "config.json: vision_config.deepstack_visual_indexes: missing"},
        {"out-hidden", e_out_hidden, "config.json: vision_config.out_hidden_size 2560 differs from text_config.hidden_size 4096"},
        {"tie", e_tie_conflict, "config.json: tie_word_embeddings is true at top level but false in text_config"},
        {"model-type", e_model_type, "config.json: model_type: 'qwen2_5_vl' is not supported (expected qwen3_vl)"},
        {"no-model-type", e_no_model_type, "config.json: model_type: missing"},
        {"no-text", e_no_text, "config.json: text_config: missing or not an object"},
        {"vision-array", e_vision_array, "config.json: vision_config: missing or not an object"},
        {"image-vocab", e_image_token_vocab, "config.json: image_token_id 200000 is outside the vocabulary"},
        {"no-image-token", e_no_image_token, "config.json: image_token_id: missing"},
        {"pos-square", e_pos_square, "config.json: vision_config.num_position_embeddings 2300 is not a square"},
        {"attn-bias", e_attn_bias, "config.json: text_config.attention_bias: true is not supported"},
        {"eps-str", e_eps_str, "config.json: text_config.rms_norm_eps: must be a number"},
        {"interleaved-str", e_interleaved_str, "config.json: text_config.rope_scaling.mrope_interleaved: must be true or false"},
        {"tf5-bad", e_tf5_bad, "config.json: text_config.rope_parameters.mrope_section sums to 64 but head_dim/2 is 64"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *d = variant(cases[i].name, cases[i].edit, 1);
        qvl_error_clear();
        int rc = qvl_config_load(d, &cfg);
        if (cases[i].edit == e_tf5_bad) { /* [16,24,24] sums to 64: valid, loads */
            CHECK_INT(rc, 0);
            CHECK_INT(cfg.text.mrope_section[0], 16);
            CHECK_NEAR(cfg.text.rope_theta, 5e6, 0);
            continue;
        }
        CHECK_INT(rc, -1);
        CHECK_CONTAINS(qvl_error(), d);
        CHECK_CONTAINS(qvl_error(), cases[i].want);
    }
}

TEST(config_bad_files) {
    char p[600];
    CHECK_INT(qvl_config_load("tests/fixtures/configs/none", &cfg), -1);
    CHECK_CONTAINS(qvl_error(), "tests/fixtures/configs/none: not a folder");
    const char *d = variant("nojson", NULL, 1);
    snprintf(p, sizeof p, "%s/config.json", d);
    CHECK_INT(write_text(p, "model_type = qwen3_vl\n"), 0);
    CHECK_INT(qvl_config_load(d, &cfg), -1);
    CHECK_CONTAINS(qvl_error(), "config.json: not valid JSON");
    CHECK_INT(write_text(p, "[1, 2]"), 0);
    CHECK_INT(qvl_config_load(d, &cfg), -1);
    CHECK_CONTAINS(qvl_error(), "config.json: not a JSON object");
    remove(p);
    CHECK_INT(qvl_config_load(d, &cfg), -1);
    CHECK_CONTAINS(qvl_error(), "config.json: No such file or directory");

    d = variant("badside", NULL, 1);
    snprintf(p, sizeof p, "%s/preprocessor_config.json", d);
    CHECK_INT(write_text(p, "{\"size\": {\"shortest_edge\": 100000, \"longest_edge\": 5000}}"), 0);
    CHECK_INT(qvl_config_load(d, &cfg), -1);
    CHECK_CONTAINS(qvl_error(), "preprocessor_config.json: min pixels 100000 (size.shortest_edge) is above max pixels 5000");
    CHECK_INT(write_text(p, "{\"patch_size\": 14}"), 0);
    CHECK_INT(qvl_config_load(d, &cfg), -1);
    CHECK_CONTAINS(qvl_error(), "preprocessor_config.json: patch_size/merge_size/temporal_patch_size 14/2/2 differ from config.json's");
    CHECK_INT(write_text(p, "{\"image_std\": [0.5, 0, 0.5]}"), 0);
    CHECK_INT(qvl_config_load(d, &cfg), -1);
    CHECK_CONTAINS(qvl_error(), "preprocessor_config.json: image_std[1]: must be positive");
    CHECK_INT(write_text(p, "{\"rescale_factor\": 0.5}"), 0);
    CHECK_INT(qvl_config_load(d, &cfg), -1);
    CHECK_CONTAINS(qvl_error(), "preprocessor_config.json: rescale_factor: 0.5 is not supported (only 1/255)");
    CHECK_INT(write_text(p, "{\"rescale_factor\": 0.00392156862745098}"), 0);
    CHECK_INT(qvl_config_load(d, &cfg), 0);
    CHECK_INT(write_text(p, "{\"image_mean\": [0.5, 0.5]}"), 0);
    CHECK_INT(qvl_config_load(d, &cfg), -1);
    CHECK_CONTAINS(qvl_error(), "preprocessor_config.json: image_mean: must be a list of 3 numbers");
    CHECK_INT(write_text(p, "{\"size\": {\"shortest_edge\": -5}}"), 0);
    CHECK_INT(qvl_config_load(d, &cfg), -1);
    CHECK_CONTAINS(qvl_error(), "preprocessor_config.json: size.shortest_edge: must be a positive integer");
    CHECK_INT(write_text(p, "{\"size\": "), 0);
    CHECK_INT(qvl_config_load(d, &cfg), -1);
    CHECK_CONTAINS(qvl_error(), "preprocessor_config.json: not valid JSON");
    remove(p);

    snprintf(p, sizeof p, "%s/generation_config.json", d);
    CHECK_INT(write_text(p, "{\"eos_token_id\": []}"), 0);
    CHECK_INT(qvl_config_load(d, &cfg), -1);
    CHECK_CONTAINS(qvl_error(), "generation_config.json: eos_token_id: empty list");
    CHECK_INT(write_text(p, "{\"eos_token_id\": [151645, 999999]}"), 0);
    CHECK_INT(qvl_config_load(d, &cfg), -1);
    CHECK_CONTAINS(qvl_error(), "generation_config.json: eos_token_id 999999 is outside the vocabulary");
    CHECK_INT(write_text(p, "{\"eos_token_id\": \"x\"}"), 0);
    CHECK_INT(qvl_config_load(d, &cfg), -1);
    CHECK_CONTAINS(qvl_error(), "generation_config.json: eos_token_id: must be an integer");
    CHECK_INT(write_text(p, "{\"top_p\": 1.5}"), 0);
    CHECK_INT(qvl_config_load(d, &cfg), -1);
    CHECK_CONTAINS(qvl_error(), "generation_config.json: temperature/top_p/top_k/repetition_penalty out of range");
    CHECK_INT(write_text(p, "{\"do_sample\": 1}"), 0);
    CHECK_INT(qvl_config_load(d, &cfg), -1);
    CHECK_CONTAINS(qvl_error(), "generation_config.json: do_sample: must be true or false");
}

static void e_fp8(cJSON *r) {
    cJSON *q = cJSON_Parse("{\"quant_method\":\"fp8\",\"fmt\":\"e4m3\",\"activation_scheme\":\"dynamic\","
                           "\"weight_block_size\":[128,128],\"modules_to_not_convert\":[\"lm_head\"]}");
    cJSON_AddItemToObject(r, "quantization_config", q);
}
static void e_awq(cJSON *r) {
    cJSON *q = cJSON_Parse("{\"quant_method\":\"awq\",\"version\":\"gemm\",\"bits\":4,\"group_size\":128,\"zero_point\":true}");
    cJSON_AddItemToObject(r, "quantization_config", q);
}
static void e_quant_no_method(cJSON *r) { cJSON_AddItemToObject(r, "quantization_config", cJSON_CreateObject()); }
static void e_quant_bad(cJSON *r) { cJSON_AddItemToObject(r, "quantization_config", cJSON_CreateString("awq")); }

TEST(config_quantization_details) {
    CHECK_INT(qvl_config_load(variant("fp8", e_fp8, 1), &cfg), 0);
    CHECK_STR(cfg.quant_method, "fp8");
    CHECK_STR(cfg.quant.format, "e4m3");
    CHECK_INT(cfg.quant.bits, 8);
    CHECK_INT(cfg.quant.block[0], 128);
    CHECK_INT(cfg.quant.block[1], 128);
    CHECK_INT(cfg.quant.symmetric, -1);
    CHECK_INT(qvl_config_load(variant("awq", e_awq, 1), &cfg), 0);
    CHECK_STR(cfg.quant_method, "awq");
    CHECK_STR(cfg.quant.format, "gemm");
    CHECK_INT(cfg.quant.bits, 4);
    CHECK_INT(cfg.quant.group_size, 128);
    CHECK_INT(cfg.quant.symmetric, 0);
    CHECK_INT(qvl_config_load(variant("qnomethod", e_quant_no_method, 1), &cfg), -1);
    CHECK_CONTAINS(qvl_error(), "config.json: quantization_config.quant_method: missing");
    CHECK_INT(qvl_config_load(variant("qbad", e_quant_bad, 1), &cfg), -1);
    CHECK_CONTAINS(qvl_error(), "config.json: quantization_config: not an object");
    /* not quantized: all zero */
    CHECK_INT(qvl_config_load("tests/fixtures/configs/2b", &cfg), 0);
    CHECK_STR(cfg.quant_method, "");
    CHECK_INT(cfg.quant.bits, 0);
}
