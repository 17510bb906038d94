/* The memory plan sized from the data, and auto-fit to a budget (plan_fit.h). */
#include "eval/plan_fit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/error.h"

/* The smallest context planned (the engine's warm-up prompt and a short answer fit in it). */
enum { MIN_CONTEXT = 64 };

qvl_fit_request qvl_fit_request_default(void) {
    qvl_fit_request r;
    memset(&r, 0, sizeof r);
    r.max_model_len = r.min_pixels = r.max_pixels = r.max_image_tokens = r.gpu_mem_mib = -1;
    r.max_new_tokens = 128;
    r.weight_bytes = -1;
    r.cuda_context_mib = -1;
    return r;
}

/* Settles dp at p, derives the context and plans. */
static int plan_at(const qvl_config *cfg, qvl_data_plan *dp, const qvl_fit_request *rq, const qvl_image_params *p,
                   qvl_fit *f) {
    long M = rq->max_model_len > 0 ? rq->max_model_len : -1;
    if (qvl_data_plan_settle(dp, cfg, p, M, rq->downscale, rq->max_new_tokens)) return -1;
    long ctx = M;
    f->context_from_data = M <= 0;
    f->context_why = "--max-model-len";
    if (M <= 0) {
        f->context_why = "largest prompt + answer budget";
        long cap = cfg->text.max_position_embeddings < QVL_FIT_DEFAULT_MAX_LEN ? cfg->text.max_position_embeddings
                                                                               : QVL_FIT_DEFAULT_MAX_LEN;
        ctx = (long)dp->largest_prompt + rq->max_new_tokens;
        if (ctx > cap) {   /* prompts beyond the default context follow --on-overflow, as without a plan */
            if (qvl_data_plan_settle(dp, cfg, p, cap, rq->downscale, rq->max_new_tokens)) return -1;
            ctx = cap;
            f->context_why = "the default limit";
        }
        if (ctx < MIN_CONTEXT) {
            ctx = cap < MIN_CONTEXT ? cap : MIN_CONTEXT;
            f->context_why = "the smallest planned";
        }
    }
    f->params = *p;
    f->max_model_len = ctx;
    f->plan_image_tokens = dp->largest_image_tokens > 0 ? dp->largest_image_tokens : 1;
    qvl_plan_inputs in = {.max_model_len = ctx, .max_image_tokens = f->plan_image_tokens, .kv_dtype = rq->kv_dtype};
    return qvl_mem_plan_compute_inputs(cfg, rq->weight_bytes, &in, rq->cuda_context_mib, &f->plan);
}

static int fits(const qvl_fit *f, const qvl_fit_request *rq) {
    double margin = rq->cuda_context_mib < 0 ? QVL_FIT_CONTEXT_MARGIN_MIB : 0;
    return rq->gpu_mem_mib <= 0 || f->plan.total + margin <= (double)rq->gpu_mem_mib;
}

static int refuse(const qvl_fit *f, const qvl_fit_request *rq, const char *what) {
    const qvl_mem_plan *p = &f->plan;
    return qvl_errorf("gpu-mem: %ld MiB is below %s: %.0f MiB (context %.0f%s + weights %.0f + KV cache %.0f for %ld "
                      "tokens + vision %.0f for %ld image tokens + workspace %.0f)%s",
                      rq->gpu_mem_mib, what, p->total, p->cuda_context, p->cuda_context_measured ? "" : " estimated",
                      p->weights, p->kv_cache, p->max_model_len, p->vision_activations, p->max_image_tokens,
                      p->workspace,
                      p->cuda_context + p->weights > (double)rq->gpu_mem_mib ? "; the weights alone do not fit" : "");
}

static void describe(qvl_fit *f, const qvl_data_plan *dp, const qvl_fit_request *rq) {
    char *b = f->sized_for;
    size_t len = sizeof f->sized_for;
    int n;
    if (dp->n_ok == 0)
        n = snprintf(b, len, "context %ld tokens (no sample can run)", f->max_model_len);
    else if (!strcmp(f->context_why, "largest prompt + answer budget"))
        n = snprintf(b, len, "context %ld tokens = largest prompt %d (sample %ld) + %d answer tokens", f->max_model_len,
                     dp->largest_prompt, dp->largest_prompt_index, rq->max_new_tokens);
    else
        n = snprintf(b, len, "context %ld tokens (%s); largest prompt %d (sample %ld)", f->max_model_len,
                     f->context_why, dp->largest_prompt, dp->largest_prompt_index);
    if (n < 0 || (size_t)n >= len) return;
    n += snprintf(b + n, len - (size_t)n, "; vision for %ld image tokens (the largest image); %ld of %ld samples planned",
                  f->plan_image_tokens, dp->n_ok, dp->n);
    if (dp->n_failed > 0 && (size_t)n < len) n += snprintf(b + n, len - (size_t)n, ", %ld unreadable", dp->n_failed);
    if (dp->n_overflow > 0 && (size_t)n < len)
        n += snprintf(b + n, len - (size_t)n, ", %ld over the context (skipped)", dp->n_overflow);
    if (dp->n_downscaled > 0 && (size_t)n < len)
        n += snprintf(b + n, len - (size_t)n, ", %ld over the context (downscaled)", dp->n_downscaled);
    if (f->auto_image_tokens > 0 && (size_t)n < len)
        snprintf(b + n, len - (size_t)n, "; auto-fit to --gpu-mem %ld MiB: at most %ld image tokens per image (%ld "
                 "samples downscaled)", rq->gpu_mem_mib, f->auto_image_tokens, f->n_auto_downscaled);
}

int qvl_fit_plan(const qvl_config *cfg, qvl_data_plan *dp, const qvl_fit_request *rq, qvl_fit *out) {
    memset(out, 0, sizeof *out);
    qvl_image_params base = qvl_config_image_params(cfg);
    if (qvl_image_params_set_pixels(&base, rq->min_pixels > 0 ? rq->min_pixels : -1,
                                    rq->max_pixels > 0 ? rq->max_pixels : -1,
                                    rq->max_image_tokens > 0 ? rq->max_image_tokens : -1))
        return -1;
    if (plan_at(cfg, dp, rq, &base, out)) return -1;
    int explicit_px = rq->min_pixels > 0 || rq->max_pixels > 0 || rq->max_image_tokens > 0;
    if (fits(out, rq)) {
        describe(out, dp, rq);
        return 0;
    }
    if (!rq->auto_fit || explicit_px || dp->largest_image_tokens <= QVL_FIT_MIN_IMAGE_TOKENS)
        return refuse(out, rq, explicit_px ? "the plan for this data at these pixel settings" : "the plan for this data");

    /* Auto-fit: the largest cap N in [QVL_FIT_MIN_IMAGE_TOKENS, largest) whose plan fits; the plan only
     * grows with N, so a bisection finds it. Each sample's image tokens without a cap first, to count
     * the samples the cap lowers. */
    int *full = malloc((size_t)(dp->n ? dp->n : 1) * sizeof *full);
    if (!full) return qvl_errorf("plan: out of memory");
    for (long i = 0; i < dp->n; i++) full[i] = dp->samples[i].status == QVL_PLAN_OK ? dp->samples[i].image_tokens : 0;
    long lo = QVL_FIT_MIN_IMAGE_TOKENS, hi = dp->largest_image_tokens - 1;
    qvl_fit trial;
    qvl_image_params p = base;
    int rc = qvl_image_params_set_pixels(&p, -1, -1, lo);
    if (rc || plan_at(cfg, dp, rq, &p, &trial)) {
        free(full);
        return -1;
    }
    if (!fits(&trial, rq)) {
        free(full);
        *out = trial;
        char what[96];
        snprintf(what, sizeof what, "what even a cap of %ld image tokens per image needs", lo);
        return refuse(out, rq, what);
    }
    while (lo < hi) {   /* invariant: lo fits */
        long mid = lo + (hi - lo + 1) / 2;
        p = base;
        if (qvl_image_params_set_pixels(&p, -1, -1, mid) || plan_at(cfg, dp, rq, &p, &trial)) {
            free(full);
            return -1;
        }
        if (fits(&trial, rq)) lo = mid;
        else hi = mid - 1;
    }
    p = base;
    if (qvl_image_params_set_pixels(&p, -1, -1, lo) || plan_at(cfg, dp, rq, &p, out)) {
        free(full);
        return -1;
    }
    out->auto_image_tokens = lo;
    for (long i = 0; i < dp->n; i++) out->n_auto_downscaled += full[i] > lo;
    free(full);
    describe(out, dp, rq);
    return 0;
}

void qvl_fit_engine_opts(const qvl_fit *f, qvl_engine_opts *eo) {
    eo->max_model_len = f->max_model_len;
    eo->plan_image_tokens = f->plan_image_tokens;
    if (f->auto_image_tokens > 0) eo->max_image_tokens = f->auto_image_tokens;
}

int qvl_fit_dataset(const qvl_config *cfg, const char *model_dir, const qvl_dataset *ds, long first, long n,
                    const qvl_fit_request *rq, qvl_data_plan *dp, qvl_fit *out) {
    memset(dp, 0, sizeof *dp);
    memset(out, 0, sizeof *out);
    qvl_tokenizer *tok = qvl_tokenizer_load_cached(model_dir, rq->tokenizer_cache_dir);
    if (!tok) return -1;
    int rc = qvl_data_plan_probe(ds, first, n, tok, dp);
    qvl_tokenizer_free(tok);
    return rc ? rc : qvl_fit_plan(cfg, dp, rq, out);
}

cJSON *qvl_fit_json(const qvl_fit *f, const qvl_data_plan *dp, const qvl_fit_request *rq) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    cJSON_AddStringToObject(o, "sized_for", f->sized_for);
    cJSON_AddNumberToObject(o, "max_model_len", (double)f->max_model_len);
    cJSON_AddStringToObject(o, "context", f->context_why);
    cJSON_AddNumberToObject(o, "plan_image_tokens", (double)f->plan_image_tokens);
    cJSON_AddNumberToObject(o, "largest_prompt", dp->largest_prompt);
    cJSON_AddNumberToObject(o, "largest_prompt_index", (double)dp->largest_prompt_index);
    cJSON_AddNumberToObject(o, "samples_planned", (double)dp->n_ok);
    cJSON_AddNumberToObject(o, "unreadable", (double)dp->n_failed);
    cJSON_AddNumberToObject(o, "overflow", (double)dp->n_overflow);
    cJSON_AddNumberToObject(o, "overflow_downscaled", (double)dp->n_downscaled);
    cJSON_AddStringToObject(o, "kv_dtype", rq->kv_dtype == QVL_PLAN_KV_FP8 ? "fp8" : "bf16");
    if (f->auto_image_tokens > 0) {
        cJSON *a = cJSON_AddObjectToObject(o, "auto_fit");
        cJSON_AddNumberToObject(a, "budget_mib", (double)rq->gpu_mem_mib);
        cJSON_AddNumberToObject(a, "max_image_tokens", (double)f->auto_image_tokens);
        cJSON_AddNumberToObject(a, "downscaled", (double)f->n_auto_downscaled);
    } else {
        cJSON_AddNullToObject(o, "auto_fit");
    }
    return o;
}
