/* qvl mem: the GPU memory plan of a model without running it (spec/cli.md). */
#include <stdio.h>
#include <string.h>

#include "backend/cuda/cuda_nvml.h"
#include "cli/commands.h"
#include "cli/opts.h"
#include "io/safetensors.h"
#include "model/config.h"
#include "model/mem_plan.h"
#include "util/error.h"

/* BF16 bytes of every float tensor in the checkpoint (what the GPU backend will hold), or -1 when
 * the folder has no weights (the plan then derives them from the config). */
static double checkpoint_bf16_bytes(const char *dir) {
    qvl_safetensors *st = qvl_st_open(dir);
    if (!st) {
        qvl_error_clear();
        return -1;
    }
    double bytes = 0;
    for (int i = 0; i < qvl_st_count(st); i++) bytes += (double)qvl_tensor_numel(qvl_st_get(st, i)) * 2.0;
    qvl_st_close(st);
    return bytes;
}

static void print_plan(const qvl_mem_plan *p, long budget, int from_config, const char *ctx_measure) {
    if (p->cuda_context_measured)
        fprintf(stdout, "%-20s %10.2f MiB (measured: %s)\n", "cuda_context", p->cuda_context, ctx_measure);
    else
        fprintf(stdout, "%-20s %10.2f MiB (estimate: no GPU here)\n", "cuda_context", p->cuda_context);
    fprintf(stdout, "%-20s %10.2f MiB%s\n", "weights", p->weights, from_config ? " (from config: no weights found)" : "");
    fprintf(stdout, "%-20s %10.2f MiB (%ld tokens)\n", "kv_cache", p->kv_cache, p->max_model_len);
    fprintf(stdout, "%-20s %10.2f MiB (largest image)\n", "vision_activations", p->vision_activations);
    if (p->cuda_runtime > 0)
        fprintf(stdout, "%-20s %10.2f MiB (of which %.2f: CUDA runtime after the context, estimate)\n", "workspace",
                p->workspace, p->cuda_runtime);
    else
        fprintf(stdout, "%-20s %10.2f MiB\n", "workspace", p->workspace);
    fprintf(stdout, "%-20s %10.2f MiB\n", "total", p->total);
    if (budget > 0) fprintf(stdout, "%-20s %10ld MiB\n", "budget", budget);
    fprintf(stdout, "largest image: %ld pixels (%ld tokens)\n", p->max_image_pixels, p->max_image_tokens);
}

static void print_json(const qvl_mem_plan *p, long budget, const char *ctx_measure) {
    printf("{\"cuda_context\": %.2f, \"cuda_context_measured\": %s, \"cuda_context_measure\": ",
           p->cuda_context, p->cuda_context_measured ? "true" : "false");
    if (p->cuda_context_measured) printf("\"%s\", ", ctx_measure); else printf("null, ");
    printf("\"weights\": %.2f, \"kv_cache\": %.2f, \"vision_activations\": %.2f, \"workspace\": %.2f, "
           "\"cuda_runtime\": %.2f, \"total\": %.2f, \"max_model_len\": %ld, \"max_image_pixels\": %ld, "
           "\"max_image_tokens\": %ld, \"budget\": ",
           p->weights, p->kv_cache, p->vision_activations, p->workspace, p->cuda_runtime, p->total, p->max_model_len,
           p->max_image_pixels, p->max_image_tokens);
    if (budget > 0) printf("%ld}\n", budget); else printf("null}\n");
}

int cmd_mem(int argc, char **argv) {
    const char *model = NULL;
    int json = 0, batch = 1;
    common_opts c = COMMON_OPTS_INIT;
    cli_opt opts[] = {
        {"model", OPT_STR, &model, "DIR", "checkpoint folder (config.json, *.safetensors)"},
        {"json", OPT_FLAG, &json, NULL, "print the plan as one JSON object"},
        {"batch", OPT_INT, &batch, "N", "sequences at once (only 1 for now)"},
        COMMON_PLAN_OPT_ROWS(c),
    };
    int rc = opts_parse(argc, argv, opts, (int)(sizeof opts / sizeof opts[0]),
                        "qvl mem --model DIR [--max-model-len N] [pixel options] [--gpu-mem MiB] [--json]",
                        "Prints the GPU memory plan (MiB) without running the model: CUDA context, weights,\n"
                        "KV cache, vision activations at the largest image admitted, workspace, total.\n"
                        "With --gpu-mem, fails (exit 1) when the plan does not fit and says what to lower.",
                        NULL, 0, NULL);
    if (rc) return rc == 1 ? 0 : rc;
    if (!model) return usage_error("mem", "--model is required");
    if (batch != 1) return usage_error("mem", "--batch %d: batched evaluation is not supported yet (use 1)", batch);

    qvl_config cfg;
    if (qvl_config_load(model, &cfg)) return runtime_error();
    if (common_opts_check("mem", &c)) return 2;
    long max_len = common_max_model_len(&c, &cfg), max_px = common_max_pixels(&c, &cfg);
    if (max_len < 0) return runtime_error();   /* the context rule `qvl run` applies */

    double wbytes = checkpoint_bf16_bytes(model);
    /* The context as the run's peak will be measured: NVML's figure for this process when it can. */
    qvl_gpu_meter meter;
    qvl_gpu_meter_start(&meter);
    const char *ctx_measure = "none";
    double ctx = qvl_gpu_context_mib(&meter, &ctx_measure);
    qvl_mem_plan plan;
    if (qvl_mem_plan_compute(&cfg, wbytes, max_len, max_px, ctx, &plan)) return runtime_error();
    if (json) print_json(&plan, c.gpu_mem_mib, ctx_measure);
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
