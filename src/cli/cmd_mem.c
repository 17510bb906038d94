/* qvl mem: the GPU memory plan of a model without running it (docs/cli.md). */
#include <cjson/cJSON.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "backend/cuda/cuda_nvml.h"
#include "backend/cuda/cuda_quant.h"
#include "cli/commands.h"
#include "cli/opts.h"
#include "eval/dataset.h"
#include "eval/plan_fit.h"
#include "io/safetensors.h"
#include "model/config.h"
#include "model/mem_plan.h"
#include "util/error.h"

/* BF16 bytes of every float tensor in the checkpoint (what the GPU backend will hold; a quantized
 * checkpoint's packed Linears as cuda_quant keeps them), or -1 when
 * the folder has no weights (the plan then derives them from the config). */
static double checkpoint_bf16_bytes(const char *dir) {
    qvl_safetensors *st = qvl_st_open(dir);
    if (!st) {
        qvl_error_clear();
        return -1;
    }
    double bytes = 0;
    qvl_config cfg;
    if (qvl_config_load(dir, &cfg) == 0 && cfg.quant.method) /* packed Linears as the GPU keeps them */
        bytes = qvl_cuda_weight_bytes(&cfg, st);
    else
        for (int i = 0; i < qvl_st_count(st); i++) bytes += (double)qvl_tensor_numel(qvl_st_get(st, i)) * 2.0;
    qvl_error_clear();
    qvl_st_close(st);
    return bytes;
}

static void print_plan(const qvl_mem_plan *p, long budget, int from_config, const char *ctx_measure) {
    if (p->cuda_context_measured)
        fprintf(stdout, "%-20s %10.2f MiB (measured: %s)\n", "cuda_context", p->cuda_context, ctx_measure);
    else
        fprintf(stdout, "%-20s %10.2f MiB (estimate: no GPU here)\n", "cuda_context", p->cuda_context);
    fprintf(stdout, "%-20s %10.2f MiB%s\n", "weights", p->weights, from_config ? " (from config: no weights found)" : "");
    if (p->kv_blocks > 0)
        fprintf(stdout, "%-20s %10.2f MiB (%ld blocks of %d tokens for %d sequence%s of up to %ld tokens%s)\n",
                "kv_cache", p->kv_cache, p->kv_blocks, p->kv_block_tokens, p->sequences, p->sequences == 1 ? "" : "s",
                p->max_model_len,
                p->kv_dtype == QVL_PLAN_KV_FP8 ? ", fp8" : "");
    else
        fprintf(stdout, "%-20s %10.2f MiB (%ld tokens%s)\n", "kv_cache", p->kv_cache, p->max_model_len,
                p->kv_dtype == QVL_PLAN_KV_FP8 ? ", fp8" : "");
    if (p->kv_blocks > 0)
        fprintf(stdout, "%-20s %10.2f MiB (%ld image tokens per pass, image cache %ld; MLP in chunks of %ld patches)\n",
                "vision_activations", p->vision_activations, p->vision_tokens, p->image_cache_tokens,
                p->vision_mlp_chunk);
    else
        fprintf(stdout, "%-20s %10.2f MiB (largest image; MLP in chunks of %ld patches)\n", "vision_activations",
                p->vision_activations, p->vision_mlp_chunk);
    if (p->cuda_runtime > 0)
        fprintf(stdout, "%-20s %10.2f MiB (of which %.2f: CUDA runtime after the context, estimate)\n", "workspace",
                p->workspace, p->cuda_runtime);
    else
        fprintf(stdout, "%-20s %10.2f MiB\n", "workspace", p->workspace);
    fprintf(stdout, "%-20s %10.2f MiB\n", "total", p->total);
    if (budget > 0) fprintf(stdout, "%-20s %10ld MiB\n", "budget", budget);
    fprintf(stdout, "largest image: %ld pixels (%ld tokens)\n", p->max_image_pixels, p->max_image_tokens);
    if (p->kv_blocks > 0)
        fprintf(stdout, "batch: %d sequences in flight, KV pool %ld blocks of %d tokens (%ld tokens), %d rows per step\n",
                p->sequences, p->kv_blocks, p->kv_block_tokens, p->kv_blocks * p->kv_block_tokens, p->token_budget);
}

static void print_json(const qvl_mem_plan *p, long budget, const char *ctx_measure, cJSON *sized_for) {
    printf("{\"cuda_context\": %.2f, \"cuda_context_measured\": %s, \"cuda_context_measure\": ",
           p->cuda_context, p->cuda_context_measured ? "true" : "false");
    if (p->cuda_context_measured) printf("\"%s\", ", ctx_measure); else printf("null, ");
    printf("\"weights\": %.2f, \"kv_cache\": %.2f, \"vision_activations\": %.2f, \"workspace\": %.2f, "
           "\"cuda_runtime\": %.2f, \"total\": %.2f, \"max_model_len\": %ld, \"max_image_pixels\": %ld, "
           "\"max_image_tokens\": %ld, \"budget\": ",
           p->weights, p->kv_cache, p->vision_activations, p->workspace, p->cuda_runtime, p->total, p->max_model_len,
           p->max_image_pixels, p->max_image_tokens);
    if (budget > 0) printf("%ld", budget); else printf("null");
    printf(", \"kv_dtype\": \"%s\", \"vision_mlp_chunk\": %ld, \"sequences\": %d",
           p->kv_dtype == QVL_PLAN_KV_FP8 ? "fp8" : "bf16", p->vision_mlp_chunk, p->sequences > 0 ? p->sequences : 1);
    if (p->kv_blocks > 0)   /* the batched plan */
        printf(", \"kv_blocks\": %ld, \"kv_block_tokens\": %d, \"token_budget\": %d, \"vision_tokens\": %ld",
               p->kv_blocks, p->kv_block_tokens, p->token_budget, p->vision_tokens);
    else
        printf(", \"kv_blocks\": null, \"kv_block_tokens\": null, \"token_budget\": null, \"vision_tokens\": null");
    char *sf = sized_for ? cJSON_PrintUnformatted(sized_for) : NULL;
    printf(", \"data_plan\": %s}\n", sf ? sf : "null");
    cJSON_free(sf);
}

/* --data: the plan `qvl eval` would make for this dataset (eval/plan_fit.h), without running. */
static int mem_for_data(const char *model, const char *data, const char *images, const qvl_config *cfg,
                        const common_opts *c, int batch, int max_new, int downscale, int kv, double wbytes,
                        double ctx, const char *ctx_measure, int json) {
    qvl_dataset ds;
    if (qvl_dataset_load(data, images, 1, &ds)) return runtime_error();
    qvl_fit_request rq = qvl_fit_request_default();
    rq.max_model_len = c->max_model_len, rq.min_pixels = c->min_pixels, rq.max_pixels = c->max_pixels;
    rq.max_image_tokens = c->max_image_tokens, rq.gpu_mem_mib = c->gpu_mem_mib, rq.auto_fit = 1;
    rq.max_new_tokens = max_new, rq.downscale = downscale, rq.kv_dtype = kv, rq.batch = batch;
    rq.weight_bytes = wbytes, rq.cuda_context_mib = ctx;
    rq.tokenizer_cache_dir = cli_tokenizer_cache_dir();
    qvl_data_plan dp;
    qvl_fit fit;
    int rc = qvl_fit_dataset(cfg, model, &ds, 0, ds.n_samples, &rq, &dp, &fit);
    if (rc == 0) {
        if (json) {
            cJSON *sf = qvl_fit_json(&fit, &dp, &rq);
            print_json(&fit.plan, c->gpu_mem_mib, ctx_measure, sf);
            cJSON_Delete(sf);
        } else {
            print_plan(&fit.plan, c->gpu_mem_mib, wbytes < 0, ctx_measure);
            fprintf(stdout, "sized for %s: %s\n", data, fit.sized_for);
        }
        if (fit.auto_image_tokens > 0)
            fprintf(stderr, "qvl mem: auto-fit: at most %ld image tokens per image fit --gpu-mem %ld MiB (%ld samples "
                    "downscaled); batch %d, KV pool %ld blocks\n", fit.auto_image_tokens, c->gpu_mem_mib,
                    fit.n_auto_downscaled, fit.batch, fit.kv_blocks);
    }
    qvl_data_plan_free(&dp);
    qvl_dataset_free(&ds);
    return rc ? runtime_error() : 0;
}

int cmd_mem(int argc, char **argv) {
    const char *model = NULL, *data = NULL, *images = NULL, *on_overflow = "skip";
    int json = 0, batch = INT_MIN, max_new = 128;   /* INT_MIN: --batch not given */
    common_opts c = COMMON_OPTS_INIT;
    cli_opt opts[] = {
        {"model", OPT_STR, &model, "DIR", "checkpoint folder (config.json, *.safetensors)"},
        {"json", OPT_FLAG, &json, NULL, "print the plan as one JSON object"},
        {"batch", OPT_INT, &batch, "N", "plan for N sequences in flight (qvl eval --batch N; default 1, with "
                                        "--data: from the plan)"},
        {"data", OPT_STR, &data, "PATH", "size the plan for this dataset (as `qvl eval` does), auto-fit to --gpu-mem"},
        {"images", OPT_STR, &images, "DIR", "image folder for OCRBench.json (default: its folder)"},
        {"max-new-tokens", OPT_INT, &max_new, "N", "answer budget per sample, with --data (default 128)"},
        {"on-overflow", OPT_STR, &on_overflow, "skip|downscale", "a prompt over --max-model-len, with --data"},
        COMMON_PLAN_OPT_ROWS(c),
    };
    int rc = opts_parse(argc, argv, opts, (int)(sizeof opts / sizeof opts[0]),
                        "qvl mem --model DIR [--data PATH] [--max-model-len N] [pixel options] [--gpu-mem MiB] [--json]",
                        "Prints the GPU memory plan (MiB) without running the model: CUDA context, weights,\n"
                        "KV cache, vision activations at the largest image admitted, workspace, total.\n"
                        "With --gpu-mem, fails (exit 1) when the plan does not fit and says what to lower.\n"
                        "With --data, the plan is sized for that dataset as `qvl eval` sizes it: the largest\n"
                        "prompt plus the answer budget (unless --max-model-len), the largest image, and with\n"
                        "--gpu-mem and no pixel options the largest image-token cap that fits.",
                        NULL, 0, NULL);
    if (rc) return rc == 1 ? 0 : rc;
    if (!model) return usage_error("mem", "--model is required");
    if (batch != INT_MIN && batch < 1) return usage_error("mem", "--batch %d: must be at least 1", batch);
    int batch_given = batch != INT_MIN;
    if (!batch_given) batch = 1;
    if (common_opts_check("mem", &c)) return 2;
    if (max_new < 1) return usage_error("mem", "--max-new-tokens %d: must be at least 1", max_new);
    if (strcmp(on_overflow, "skip") && strcmp(on_overflow, "downscale"))
        return usage_error("mem", "--on-overflow: '%s' is not skip or downscale", on_overflow);
    int kv = c.kv_dtype && !strcmp(c.kv_dtype, "fp8") ? QVL_PLAN_KV_FP8 : QVL_PLAN_KV_BF16;

    qvl_config cfg;
    if (qvl_config_load(model, &cfg)) return runtime_error();
    long max_len = common_max_model_len(&c, &cfg), max_px = common_max_pixels(&c, &cfg);
    if (max_len < 0) return runtime_error();   /* the context rule `qvl run` applies */

    double wbytes = checkpoint_bf16_bytes(model);
    /* The context as the run's peak will be measured: NVML's figure for this process when it can. */
    qvl_gpu_meter meter;
    qvl_gpu_meter_start(&meter);
    const char *ctx_measure = "none";
    double ctx = qvl_gpu_context_mib(&meter, &ctx_measure);
    qvl_mem_plan plan;
    if (data) return mem_for_data(model, data, images, &cfg, &c, batch_given ? batch : 0, max_new,
                                  !strcmp(on_overflow, "downscale"), kv, wbytes, ctx, ctx_measure, json);
    qvl_plan_inputs in = {.max_model_len = max_len, .max_pixels = max_px, .kv_dtype = kv, .sequences = batch};
    /* --batch N > 1: the CUDA backend's batched plan (KV pool filling --gpu-mem, or what one
     * request at a time took) */
    if (batch > 1 ? qvl_mem_plan_batched(&cfg, wbytes, &in, ctx, (double)c.gpu_mem_mib, &plan)
                  : qvl_mem_plan_compute_inputs(&cfg, wbytes, &in, ctx, &plan))
        return runtime_error();
    if (json) print_json(&plan, c.gpu_mem_mib, ctx_measure, NULL);
    else print_plan(&plan, c.gpu_mem_mib, wbytes < 0, ctx_measure);
    if (c.gpu_mem_mib > 0 && plan.total > (double)c.gpu_mem_mib) {
        double over = plan.total - (double)c.gpu_mem_mib;
        if (plan.weights + plan.cuda_context > (double)c.gpu_mem_mib)
            fprintf(stderr, "qvl: %s: the plan needs %.0f MiB but --gpu-mem is %ld MiB: weights and CUDA context alone "
                    "take %.0f MiB\n", model, plan.total, c.gpu_mem_mib, plan.weights + plan.cuda_context);
        else
            fprintf(stderr, "qvl: %s: the plan needs %.0f MiB but --gpu-mem is %ld MiB (%.0f over): lower "
                    "--max-model-len (KV cache %.0f MiB) or --max-pixels/--max-image-tokens (vision %.0f MiB)\n",
                    model, plan.total, c.gpu_mem_mib, over, plan.kv_cache, plan.vision_activations);
        return 1;
    }
    return 0;
}
