/* The GPU memory plan: every device allocation of a run, derived up front from the config, the
 * context length and the largest image admitted. `qvl mem` prints it; `--gpu-mem` is checked
 * against its total before anything is allocated. All figures in MiB (2^20 bytes). */
#ifndef QVL_MODEL_MEM_PLAN_H
#define QVL_MODEL_MEM_PLAN_H

#include "model/config.h"

/* Tokens reserved beside the image for the template, the question and the answer when the
 * plan sizes the largest image that fits the context. */
enum { QVL_PLAN_TEXT_RESERVE = 256, QVL_PLAN_PREFILL_CHUNK = 2048 };

typedef struct {
    double cuda_context;      /* measured on a GPU, else an estimate */
    int cuda_context_measured;
    double weights, kv_cache, vision_activations, workspace, total;
    long max_model_len;
    long max_image_pixels;    /* the largest image area (after resize) the plan admits */
    long max_image_tokens;
} qvl_mem_plan;

/* Plans for cfg with BF16 weights (weight_bytes: the checkpoint's tensor bytes as BF16, or <= 0 to
 * derive them from the config), max_model_len tokens of KV cache and images of at most max_pixels
 * (also capped so their tokens fit the context). cuda_context_mib < 0 means "not measured". */
int qvl_mem_plan_compute(const qvl_config *cfg, double weight_bytes, long max_model_len, long max_pixels,
                         double cuda_context_mib, qvl_mem_plan *out);

/* Estimated CUDA context size when no GPU can be asked (CUDA 12/13 with lazy module loading). */
#define QVL_CUDA_CONTEXT_ESTIMATE_MIB 512.0

#endif
