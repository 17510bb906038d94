/* The memory plan for a dataset (issue 15): the context and the vision activations sized for the
 * largest sample the run will see plus the answer budget (unless --max-model-len is given), and,
 * with a GPU memory budget and no pixel options, the largest image-token cap under which that plan
 * fits (auto-fit). Host code: `qvl eval` calls it before the first sample, `qvl mem --data` shows
 * the same plan without running.
 *
 *   qvl_data_plan dp;  qvl_data_plan_probe(&ds, first, n, tok, &dp);
 *   qvl_fit_request rq = qvl_fit_request_default();  rq.gpu_mem_mib = 5000; ...
 *   qvl_fit f;
 *   if (qvl_fit_plan(cfg, &dp, &rq, &f)) ... one-line error (budget too small: with the breakdown)
 *   engine opts: max_model_len = f.max_model_len, plan_image_tokens = f.plan_image_tokens,
 *                max_image_tokens = f.auto_image_tokens (when > 0)
 */
#ifndef QVL_EVAL_PLAN_FIT_H
#define QVL_EVAL_PLAN_FIT_H
#include <cjson/cJSON.h>

#include "eval/plan_data.h"
#include "model/mem_plan.h"
#include "qvl.h"

typedef struct {
    long max_model_len;       /* --max-model-len; <= 0: from the data (at most QVL_FIT_DEFAULT_MAX_LEN) */
    long min_pixels, max_pixels, max_image_tokens;  /* pixel options; <= 0: not given */
    long gpu_mem_mib;         /* <= 0: no budget */
    int auto_fit;             /* 1: with a budget and no pixel options, pick an image-token cap (the GPU path) */
    int max_new_tokens;       /* the answer budget */
    int downscale;            /* --on-overflow downscale (else skip) */
    int kv_dtype;             /* QVL_PLAN_KV_* */
    double weight_bytes;      /* the checkpoint's weights as BF16 bytes; <= 0: from the config */
    double cuda_context_mib;  /* < 0: not measured (the estimate, plus QVL_FIT_CONTEXT_MARGIN_MIB when fitting) */
    const char *tokenizer_cache_dir; /* qvl_fit_dataset's tokenizer cache folder; NULL: none */
} qvl_fit_request;

/* The context when --max-model-len is not given is the data's largest prompt + the answer budget,
 * but never above the engine's default context (so samples beyond it follow --on-overflow as
 * before). */
enum { QVL_FIT_DEFAULT_MAX_LEN = 32768 };
/* The smallest image-token cap auto-fit considers (a 256x256 image; below it OCR reads nothing). */
enum { QVL_FIT_MIN_IMAGE_TOKENS = 64 };
/* Auto-fit leaves this much of the budget free when the CUDA context is only estimated (the
 * measured context was 518 MiB on an H100 with driver 580 vs the 512 estimate). */
#define QVL_FIT_CONTEXT_MARGIN_MIB 32.0

qvl_fit_request qvl_fit_request_default(void);

typedef struct {
    qvl_image_params params;  /* the pixel settings the run uses (config + options + the auto cap) */
    long max_model_len;       /* the context to open the engine with */
    long plan_image_tokens;   /* the vision activations' size (the largest image at these settings) */
    long auto_image_tokens;   /* > 0: auto-fit chose this cap (run as --max-image-tokens N) */
    long n_auto_downscaled;   /* samples whose image the cap lowers */
    int context_from_data;    /* 1: max_model_len comes from the data (context_why says how), 0: --max-model-len */
    const char *context_why;  /* "largest prompt + answer budget", "the smallest planned", "the default limit",
                                 "--max-model-len" */
    qvl_mem_plan plan;        /* the plan at these settings (context estimated unless measured) */
    char sized_for[512];      /* one line: what the plan is sized for */
} qvl_fit;

/* dp: probed (qvl_data_plan_probe); left settled at the chosen settings. Returns 0, or -1 + a one-line
 * error: bad pixel options, or a budget that even the smallest cap (or, with pixel options given,
 * these settings) does not fit, with the plan's breakdown. */
int qvl_fit_plan(const qvl_config *cfg, qvl_data_plan *dp, const qvl_fit_request *rq, qvl_fit *out);

/* Probes ds->samples[first .. first+n-1] (tokenizer from model_dir) into dp, then qvl_fit_plan. dp is
 * the caller's to free (qvl_data_plan_free) whether or not this succeeds. */
int qvl_fit_dataset(const qvl_config *cfg, const char *model_dir, const qvl_dataset *ds, long first, long n,
                    const qvl_fit_request *rq, qvl_data_plan *dp, qvl_fit *out);

/* Sets the engine options the plan was made for: the context, the vision activations' size, and
 * the auto-fit cap as max_image_tokens (kv_dtype and the rest stay as the caller set them). */
void qvl_fit_engine_opts(const qvl_fit *f, qvl_engine_opts *eo);

/* The facts for the report's settings and the summary: {"sized_for", "max_model_len",
 * "context" (why: context_why), "plan_image_tokens", "largest_prompt", "largest_prompt_index", "samples_planned", "unreadable",
 * "overflow", "overflow_downscaled", "auto_fit": null | {"budget_mib", "max_image_tokens", "downscaled"}}. */
cJSON *qvl_fit_json(const qvl_fit *f, const qvl_data_plan *dp, const qvl_fit_request *rq);

#endif
