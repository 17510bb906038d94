/* qvl inspect MODEL_DIR [--json] (docs/cli.md): loads the config files and the safetensors headers,
 * checks every tensor the model needs, and summarizes the checkpoint. Reads no weight data. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "cli/opts.h"
#include "io/safetensors.h"
#include "model/config.h"
#include "model/tensor_check.h"
#include "util/error.h"

static cJSON *text_json(const qvl_text_config *t) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "hidden_size", t->hidden_size);
    cJSON_AddNumberToObject(o, "intermediate_size", t->intermediate_size);
    cJSON_AddNumberToObject(o, "num_hidden_layers", t->num_layers);
    cJSON_AddNumberToObject(o, "num_attention_heads", t->num_heads);
    cJSON_AddNumberToObject(o, "num_key_value_heads", t->num_kv_heads);
    cJSON_AddNumberToObject(o, "head_dim", t->head_dim);
    cJSON_AddNumberToObject(o, "vocab_size", t->vocab_size);
    cJSON_AddNumberToObject(o, "max_position_embeddings", t->max_position_embeddings);
    cJSON_AddNumberToObject(o, "rms_norm_eps", t->rms_norm_eps);
    cJSON_AddNumberToObject(o, "rope_theta", t->rope_theta);
    cJSON_AddItemToObject(o, "mrope_section", cJSON_CreateIntArray(t->mrope_section, 3));
    cJSON_AddBoolToObject(o, "mrope_interleaved", t->mrope_interleaved);
    cJSON_AddBoolToObject(o, "tie_word_embeddings", t->tie_word_embeddings);
    return o;
}

static cJSON *vision_json(const qvl_vision_config *v) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "depth", v->depth);
    cJSON_AddNumberToObject(o, "hidden_size", v->hidden_size);
    cJSON_AddNumberToObject(o, "intermediate_size", v->intermediate_size);
    cJSON_AddNumberToObject(o, "num_heads", v->num_heads);
    cJSON_AddNumberToObject(o, "out_hidden_size", v->out_hidden_size);
    cJSON_AddNumberToObject(o, "patch_size", v->patch_size);
    cJSON_AddNumberToObject(o, "temporal_patch_size", v->temporal_patch_size);
    cJSON_AddNumberToObject(o, "spatial_merge_size", v->spatial_merge_size);
    cJSON_AddNumberToObject(o, "in_channels", v->in_channels);
    cJSON_AddNumberToObject(o, "num_position_embeddings", v->num_position_embeddings);
    cJSON_AddItemToObject(o, "deepstack_visual_indexes", cJSON_CreateIntArray(v->deepstack_indexes, v->n_deepstack));
    cJSON_AddStringToObject(o, "hidden_act", v->hidden_act);
    return o;
}

static int print_json(const qvl_config *c, const qvl_param_counts *pc, const qvl_safetensors *st) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "model_type", c->model_type);
    cJSON_AddItemToObject(o, "text", text_json(&c->text));
    cJSON_AddItemToObject(o, "vision", vision_json(&c->vision));
    cJSON_AddStringToObject(o, "dtype", c->dtype);
    if (c->quant_method[0]) {
        cJSON_AddStringToObject(o, "quantization", c->quant_method);
        cJSON *q = cJSON_AddObjectToObject(o, "quantization_config");
        cJSON_AddStringToObject(q, "method", c->quant_method);
        cJSON_AddStringToObject(q, "format", c->quant.format);
        cJSON_AddNumberToObject(q, "bits", c->quant.bits);
        cJSON_AddNumberToObject(q, "group_size", c->quant.group_size);
        if (c->quant.symmetric >= 0) cJSON_AddBoolToObject(q, "symmetric", c->quant.symmetric);
        else cJSON_AddNullToObject(q, "symmetric");
        if (c->quant.block[0]) cJSON_AddItemToObject(q, "weight_block_size", cJSON_CreateIntArray(c->quant.block, 2));
    } else
        cJSON_AddNullToObject(o, "quantization");
    cJSON *p = cJSON_AddObjectToObject(o, "params");
    for (int g = 0; g < QVL_GROUP_COUNT; g++) cJSON_AddNumberToObject(p, qvl_param_group_name(g), (double)pc->group[g]);
    cJSON_AddNumberToObject(p, "total", (double)pc->total);
    cJSON_AddNumberToObject(o, "weight_bytes", (double)qvl_st_data_bytes(st));
    cJSON_AddNumberToObject(o, "tensors", qvl_st_count(st));
    cJSON_AddNumberToObject(o, "files", qvl_st_file_count(st));
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (!s) {
        fprintf(stderr, "qvl: inspect: out of memory\n");
        return 1;
    }
    printf("%s\n", s);
    free(s);
    return 0;
}

static void print_human(const char *dir, const qvl_config *c, const qvl_param_counts *pc, const qvl_safetensors *st) {
    const qvl_text_config *t = &c->text;
    const qvl_vision_config *v = &c->vision;
    printf("%s: %s, dtype %s, quantization %s", dir, c->model_type, c->dtype[0] ? c->dtype : "(not given)",
           c->quant_method[0] ? c->quant_method : "none");
    if (c->quant_method[0]) {
        const qvl_quant_config *q = &c->quant;
        printf(" (%s%s%d-bit", q->format, q->format[0] ? ", " : "", q->bits);
        if (q->group_size) printf(", group %d", q->group_size);
        if (q->block[0]) printf(", block %dx%d", q->block[0], q->block[1]);
        if (q->symmetric >= 0) printf(", %s", q->symmetric ? "symmetric" : "asymmetric");
        printf(")");
    }
    printf("\n");
    printf("text:   %d layers, hidden %d, mlp %d, heads %d (kv %d, head_dim %d), vocab %d, rope_theta %g, "
           "mrope_section [%d, %d, %d]%s, %s\n",
           t->num_layers, t->hidden_size, t->intermediate_size, t->num_heads, t->num_kv_heads, t->head_dim,
           t->vocab_size, t->rope_theta, t->mrope_section[0], t->mrope_section[1], t->mrope_section[2],
           t->mrope_interleaved ? " interleaved" : "", t->tie_word_embeddings ? "tied lm_head" : "separate lm_head");
    printf("vision: %d blocks, hidden %d, mlp %d, heads %d, patch %d, merge %d, out %d, deepstack [",
           v->depth, v->hidden_size, v->intermediate_size, v->num_heads, v->patch_size, v->spatial_merge_size,
           v->out_hidden_size);
    for (int i = 0; i < v->n_deepstack; i++) printf("%s%d", i ? ", " : "", v->deepstack_indexes[i]);
    printf("]\n");
    printf("pixels: %ld..%ld; eos", c->preproc.min_pixels, c->preproc.max_pixels);
    for (int i = 0; i < c->gen.n_eos; i++) printf(" %d", c->gen.eos_ids[i]);
    printf("\nparams:");
    for (int g = 0; g < QVL_GROUP_COUNT; g++) printf(" %s %.3fM,", qvl_param_group_name(g), pc->group[g] / 1e6);
    if (pc->total >= 1000000000) printf(" total %.3fB (%lld)\n", pc->total / 1e9, (long long)pc->total);
    else printf(" total %.3fM (%lld)\n", pc->total / 1e6, (long long)pc->total);
    size_t wb = qvl_st_data_bytes(st);
    printf("weights: %d tensors in %d file%s, %.2f GiB (%zu bytes)%s\n", qvl_st_count(st), qvl_st_file_count(st),
           qvl_st_file_count(st) == 1 ? "" : "s", wb / 1073741824.0, wb,
           c->quant_method[0] ? "; tensor check skipped (quantized)" : "; all expected tensors present");
}

int cmd_inspect(int argc, char **argv) {
    int json = 0;
    const cli_opt opts[] = {{"json", OPT_FLAG, &json, NULL, "print one JSON object instead of the summary"}};
    const char *pos[1];
    int npos = 0;
    int r = opts_parse(argc, argv, opts, 1, "qvl inspect MODEL_DIR [--json]",
                       "Summarizes a Qwen3-VL checkpoint folder (config.json, preprocessor_config.json,\n"
                       "generation_config.json, safetensors): configuration, parameter counts per group, weight\n"
                       "bytes and quantization. Checks that every tensor the model needs is present with the\n"
                       "right shape; reads no weight data.",
                       pos, 1, &npos);
    if (r == 1) return 0;
    if (r) return r;
    if (npos != 1) return usage_error("inspect", "missing MODEL_DIR");
    const char *dir = pos[0];
    qvl_config *cfg = malloc(sizeof *cfg);
    if (!cfg) return qvl_errorf("%s: out of memory", dir), runtime_error();
    qvl_safetensors *st = NULL;
    qvl_param_counts pc;
    int rc = 1;
    if (qvl_config_load(dir, cfg) != 0 || !(st = qvl_st_open(dir)) || qvl_param_count(cfg, &pc) != 0 ||
        (!cfg->quant_method[0] && qvl_checkpoint_check(cfg, st) != 0)) {
        rc = runtime_error();
        goto done;
    }
    if (json) rc = print_json(cfg, &pc, st);
    else {
        print_human(dir, cfg, &pc, st);
        rc = 0;
    }
done:
    qvl_st_close(st);
    free(cfg);
    return rc;
}
