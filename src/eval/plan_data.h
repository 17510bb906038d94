/* The work a dataset asks for, known before anything runs: for every sample its image's size (from
 * the header: image/probe.h), its exact prompt token count at given pixel settings (image tokens by
 * smart_resize + the chat template's text tokens, as the engine counts them) and a predicted cost.
 * The memory plan is then sized for the largest sample (plus the answer budget), and shards can be
 * balanced by cost.
 *
 *   qvl_data_plan dp;
 *   qvl_data_plan_probe(&ds, first, n, tok, &dp);          // headers + question tokens, once
 *   qvl_image_params p = qvl_config_image_params(cfg);      // + the pixel options
 *   qvl_data_plan_settle(&dp, cfg, &p, max_model_len, downscale, max_new_tokens);
 *   ... dp.largest_prompt, dp.samples[i].prompt_tokens, dp.samples[i].cost ...
 *   qvl_data_plan_free(&dp);
 */
#ifndef QVL_EVAL_PLAN_DATA_H
#define QVL_EVAL_PLAN_DATA_H
#include "eval/dataset.h"
#include "image/image.h"
#include "model/config.h"
#include "tokenizer/tokenizer.h"

typedef enum {
    QVL_PLAN_OK = 0,
    QVL_PLAN_FAILED,       /* unreadable sample or image header, or smart_resize refuses it: fails at run time */
    QVL_PLAN_OVERFLOW,     /* prompt over max_model_len - 1 with on-overflow skip: fails at run time */
} qvl_plan_status;

typedef struct {
    long index;            /* the sample's key (qvl_sample.index) */
    int width, height;     /* the decoded image's size (0 when unreadable) */
    int text_tokens;       /* prompt tokens besides the image pads (template + question) */
    /* At the settled settings (qvl_data_plan_settle): */
    qvl_plan_status status;
    int image_tokens;      /* after smart_resize (and the engine's overflow downscale if it applies) */
    int prompt_tokens;     /* text_tokens + image_tokens: what the engine's prefill sees */
    int full_image_tokens; /* image tokens without the downscale (= image_tokens unless downscaled) */
    double cost;           /* predicted seconds (qvl_plan_cost); 0 for samples that fail */
    char *error;           /* status != OK: why (one line, malloc'd) */
} qvl_plan_sample;

typedef struct {
    qvl_plan_sample *samples;
    long n;
    /* Over the samples that will run (status OK), after settle: */
    long n_ok, n_failed, n_overflow, n_downscaled;
    int largest_prompt, largest_image_tokens;   /* may come from different samples */
    long largest_prompt_index;                  /* the key of the sample with largest_prompt (-1: none) */
    double total_cost;
} qvl_data_plan;

/* Reads every selected sample's image header and tokenizes its question (ds->samples[first ..
 * first+n-1]). Per-sample problems are recorded in the sample (status FAILED), never returned;
 * -1 + error only for running out of memory. */
int qvl_data_plan_probe(const qvl_dataset *ds, long first, long n, const qvl_tokenizer *tok, qvl_data_plan *out);

/* Computes image and prompt tokens and costs at pixel settings p (qvl_config_image_params + the
 * options), as the engine will: max_model_len > 0 is the context (a prompt must leave one token to
 * generate; over it, downscale = 1 shrinks the image as --on-overflow downscale does, else the
 * sample is OVERFLOW); <= 0 means no limit. May be called again with other settings. */
int qvl_data_plan_settle(qvl_data_plan *dp, const qvl_config *cfg, const qvl_image_params *p, long max_model_len,
                         int downscale, int max_new_tokens);

void qvl_data_plan_free(qvl_data_plan *dp);

/* Image tokens of a width x height image under p (smart_resize), or -1 + error. */
int qvl_plan_image_tokens(int width, int height, const qvl_image_params *p);
/* The engine's --on-overflow downscale: lowers max_pixels one token's area at a time until the
 * image takes at most budget tokens; returns its tokens, or -1 + error. */
int qvl_plan_shrink_to_budget(int width, int height, const qvl_image_params *p, int budget);

/* Predicted seconds of one sample on an H100-class GPU, from the config (a roofline estimate, for
 * balancing work, not a benchmark): vision FLOPs (linear layers per patch + exact attention per
 * patch pair) and prefill FLOPs at 300 TFLOP/s, answer_tokens decode steps each reading the BF16
 * weights at 2.5 TB/s, plus 2 ms per sample (load, decode, preprocess, launch). */
double qvl_plan_cost(const qvl_config *cfg, int image_tokens, int prompt_tokens, int answer_tokens);

#endif
