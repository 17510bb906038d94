/* The memory plan for a dataset (issue 15), as the batched engine will allocate it: the context and
 * the vision activations sized for the largest sample the run will see plus the answer budget
 * (unless --max-model-len is given), the KV pool for the sequences in flight (each sample reserves
 * the blocks of its prompt + answer when admitted, so the pool bounds memory and the batch), the
 * text rows of one step (token budget) and the images packed into one vision pass; and, with a GPU
 * memory budget and no pixel options, the largest image-token cap under which the smallest batch
 * fits (auto-fit), then the batch and the pool that fill the rest. Host code: `qvl eval` calls it
 * before the first sample, `qvl mem --data` shows the same plan without running.
 *
 *   qvl_data_plan dp;  qvl_data_plan_probe(&ds, first, n, tok, &dp);
 *   qvl_fit_request rq = qvl_fit_request_default();  rq.gpu_mem_mib = 5000; ...
 *   qvl_fit f;
 *   if (qvl_fit_plan(cfg, &dp, &rq, &f)) ... one-line error (budget too small: with the breakdown)
 *   engine opts (qvl_fit_engine_opts): max_model_len, plan_image_tokens, max_image_tokens (the auto
 *                cap, when > 0), max_batch = f.batch, kv_blocks = f.kv_blocks, token_budget, vision_tokens,
 *                image_cache_tokens
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
    int batch;                /* --batch: sequences in flight, honoured (the pool holds that many of the
                                 data's largest samples at once); <= 0: chosen from the plan */
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

/* How big a step and a vision pass are: "full" as the CUDA backend chooses by default
 * (QVL_PLAN_TOKEN_BUDGET rows, QVL_PLAN_VISION_TOKENS image tokens per pass or the largest image),
 * "lean" when only that keeps every image whole under the budget (QVL_PLAN_PREFILL_CHUNK rows, one
 * largest image per pass). */
enum { QVL_FIT_PASSES_FULL = 0, QVL_FIT_PASSES_LEAN = 1 };

typedef struct {
    qvl_image_params params;  /* the pixel settings the run uses (config + options + the auto cap) */
    long max_model_len;       /* the context to open the engine with */
    long plan_image_tokens;   /* the vision activations' size (the largest image at these settings) */
    long auto_image_tokens;   /* > 0: auto-fit chose this cap (run as --max-image-tokens N) */
    long n_auto_downscaled;   /* samples whose image the cap lowers */
    int context_from_data;    /* 1: max_model_len comes from the data (context_why says how), 0: --max-model-len */
    const char *context_why;  /* "largest prompt + answer budget", "the smallest planned", "the default limit",
                                 "--max-model-len" */
    /* The batch (the plan is the batched engine's: plan.kv_blocks > 0): */
    int batch;                /* sequences in flight at most (the engine's max_batch) */
    int batch_given;          /* 1: --batch; 0: chosen (qvl_fit_plan's rule) */
    long kv_blocks;           /* the KV pool, blocks of QVL_PLAN_KV_BLOCK_TOKENS tokens */
    long kv_blocks_needed;    /* the blocks `batch` of the data's largest samples reserve at once (>= one
                                 whole context): a larger pool is never used */
    long largest_blocks;      /* the blocks the largest sample reserves (prompt + answer) */
    int passes;               /* QVL_FIT_PASSES_* */
    qvl_mem_plan plan;        /* the plan at these settings (context estimated unless measured) */
    char sized_for[768];      /* one line: what the plan is sized for */
} qvl_fit;

/* dp: probed (qvl_data_plan_probe); left settled at the chosen settings. Returns 0, or -1 + a one-line
 * error: bad pixel options, or a budget that even the smallest cap (or, with pixel options given,
 * these settings) does not fit with the smallest batch (one sequence, a pool of one whole context;
 * with --batch N: N of the largest samples at once), with the plan's breakdown; *out then holds
 * that refused plan (for a budget refused under auto-fit: the smallest plan there is).
 *
 * The choice (docs/architecture.md "The memory plan"): images whole first: with full passes if the
 * smallest batch fits, else lean ones, else the largest cap under which the smallest batch fits with
 * lean passes. Then the batch: with --batch N the pool of N largest samples; else the most
 * sequences S (at most QVL_PLAN_MAX_SEQS and the samples planned) whose slots and a pool holding S
 * of the smallest samples fit what the budget leaves (without a budget: what one request at a time
 * took, the CUDA backend's rule), and the pool takes the rest, never more than S of the largest
 * samples reserve at once (more is never used: a sample is admitted only with its blocks). */
int qvl_fit_plan(const qvl_config *cfg, qvl_data_plan *dp, const qvl_fit_request *rq, qvl_fit *out);

/* Probes ds->samples[first .. first+n-1] (tokenizer from model_dir) into dp, then qvl_fit_plan. dp is
 * the caller's to free (qvl_data_plan_free) whether or not this succeeds. */
int qvl_fit_dataset(const qvl_config *cfg, const char *model_dir, const qvl_dataset *ds, long first, long n,
                    const qvl_fit_request *rq, qvl_data_plan *dp, qvl_fit *out);

/* Sets the engine options the plan was made for: the context, the vision activations' size, the
 * auto-fit cap as max_image_tokens, the batch, the KV pool, the token budget and the vision pass
 * (kv_dtype and the rest stay as the caller set them). */
void qvl_fit_engine_opts(const qvl_fit *f, qvl_engine_opts *eo);

/* The facts for the report's settings and the summary: {"sized_for", "max_model_len",
 * "context" (why: context_why), "plan_image_tokens", "largest_prompt", "largest_prompt_index", "samples_planned", "unreadable",
 * "overflow", "overflow_downscaled", "kv_dtype", "batch", "batch_from" ("--batch" | "plan"), "kv_blocks",
 * "kv_block_tokens", "kv_blocks_needed", "largest_sample_blocks", "token_budget", "vision_tokens", "image_cache_tokens", "passes"
 * ("full" | "lean"), "budget_mib" (null: none), "auto_fit": null (images whole) | {"budget_mib",
 * "max_image_tokens", "downscaled", "batch", "kv_blocks"}}. */
cJSON *qvl_fit_json(const qvl_fit *f, const qvl_data_plan *dp, const qvl_fit_request *rq);

#endif
