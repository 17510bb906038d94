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
#include "model/quant.h"
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


/* Which Linears the checkpoint keeps packed, per parameter group, and the names of those it keeps in
 * 16 bits (a group wholly in 16 bits is named by its prefix). */
typedef struct {
    int q[QVL_GROUP_COUNT], total[QVL_GROUP_COUNT];
    size_t packed_bytes;
} quant_summary;

static const char *group_prefix[QVL_GROUP_COUNT] = {"model.visual.blocks.*", "model.visual.merger.*",
                                                    "model.visual.deepstack_merger_list.*",
                                                    "model.language_model.layers.*", "lm_head"};

static int quant_walk(const qvl_config *c, const qvl_safetensors *st, quant_summary *qs, cJSON *names) {
    memset(qs, 0, sizeof *qs);
    int n;
    qvl_tensor_spec *s = qvl_expected_tensors(c, &n);
    if (!s) return -1;
    for (int i = 0; i < n; i++) {
        size_t L = strlen(s[i].name);
        if (s[i].ndim != 2 || L < 8 || strcmp(s[i].name + L - 7, ".weight") || strstr(s[i].name, "embed")) continue;
        int g = s[i].group, packed = qvl_quant_linear_stored(c, st, &s[i]);
        qs->total[g]++;
        if (packed) {
            qs->q[g]++;
            qs->packed_bytes += qvl_quant_linear_bytes(c, st, &s[i]);
        } else if (names) {
            char mod[96];
            snprintf(mod, sizeof mod, "%.*s", (int)(L - 7), s[i].name);
            cJSON_AddItemToArray(names, cJSON_CreateString(mod));
        }
    }
    free(s);
    return 0;
}

/* "16-bit: a, b, ..." over the groups: a whole group by its prefix, else up to 4 names. */
static void print_16bit(const qvl_config *c, const qvl_safetensors *st, const quant_summary *qs) {
    cJSON *names = cJSON_CreateArray();
    quant_summary tmp;
    quant_walk(c, st, &tmp, names);
    printf("16-bit Linears:");
    int any = 0, shown = 0, omitted = 0, k = 0;
    for (int g = 0; g < QVL_GROUP_COUNT; g++) {
        int n16 = qs->total[g] - qs->q[g];
        if (n16 && n16 == qs->total[g]) {
            printf("%s %s", any++ ? "," : "", group_prefix[g]);
            k += n16;
            continue;
        }
        for (int j = 0; j < n16; j++, k++)
            if (shown++ < 4) printf("%s %s", any++ ? "," : "", cJSON_GetStringValue(cJSON_GetArrayItem(names, k)));
            else omitted++;
    }
    if (omitted) printf(" (and %d more)", omitted);
    printf("%s\n", any ? "" : " none");
    cJSON_Delete(names);
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
        cJSON *skip = cJSON_AddArrayToObject(q, c->quant.method == QVL_QUANT_CT ? "ignore" : "modules_to_not_convert");
        const char *e = c->quant.skip;
        for (int i = 0; i < c->quant.n_skip; i++, e += strlen(e) + 1) cJSON_AddItemToArray(skip, cJSON_CreateString(e));
        quant_summary qs;
        cJSON *names = cJSON_CreateArray();
        quant_walk(c, st, &qs, names);
        cJSON *ql = cJSON_AddObjectToObject(q, "quantized_linears");
        for (int g = 0; g < QVL_GROUP_COUNT; g++)
            cJSON_AddItemToObject(ql, qvl_param_group_name(g), cJSON_CreateIntArray((const int[]){qs.q[g], qs.total[g]}, 2));
        cJSON_AddItemToObject(q, "unquantized_linears", names);
        cJSON_AddNumberToObject(q, "packed_bytes", (double)qs.packed_bytes);
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
    if (c->quant_method[0]) {
        quant_summary qs;
        quant_walk(c, st, &qs, NULL);
        int nq = 0, nt = 0;
        for (int g = 0; g < QVL_GROUP_COUNT; g++) nq += qs.q[g], nt += qs.total[g];
        printf("packed: %d of %d Linears (", nq, nt);
        for (int g = 0; g < QVL_GROUP_COUNT; g++) printf("%s%s %d/%d", g ? ", " : "", qvl_param_group_name(g), qs.q[g], qs.total[g]);
        printf("), %.2f GiB packed\n", qs.packed_bytes / 1073741824.0);
        print_16bit(c, st, &qs);
    }
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
           "; all expected tensors present");
}

int cmd_inspect(int argc, char **argv) {
    int json = 0;
    const cli_opt opts[] = {{"json", OPT_FLAG, &json, NULL, "print one JSON object instead of the summary"}};
    const char *pos[1];
    int npos = 0;
    int r = opts_parse(argc, argv, opts, 1, "qvl inspect MODEL_DIR [--json]",
                       "Summarizes a Qwen3-VL checkpoint folder (config.json, preprocessor_config.json,\n"
                       "generation_config.json, safetensors): configuration, parameter counts per group, weight\n"
                       "bytes and quantization (method, bits, group size, symmetry, which Linears stay 16-bit).\n"
                       "Checks that every tensor the model needs is present with the right shape; reads no\n"
                       "weight data.",
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
        qvl_checkpoint_check(cfg, st) != 0) {
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
