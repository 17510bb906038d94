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

/* The blocks each planned sample reserves when admitted (prompt + answer, at most the context, as
 * the scheduler counts them), largest first, and one whole context's blocks (the pool's least). */
typedef struct {
    long *need;
    long k, per_seq;
} needs;

static int cmp_desc(const void *a, const void *b) {
    long x = *(const long *)a, y = *(const long *)b;
    return (x < y) - (x > y);
}

static int needs_make(const qvl_data_plan *dp, long ctx, int max_new, needs *n) {
    free(n->need);
    n->need = malloc((size_t)(dp->n > 0 ? dp->n : 1) * sizeof *n->need);
    if (!n->need) return qvl_errorf("plan: out of memory");
    n->k = 0;
    n->per_seq = qvl_plan_blocks_per_seq(ctx, QVL_PLAN_KV_BLOCK_TOKENS);
    for (long i = 0; i < dp->n; i++) {
        if (dp->samples[i].status != QVL_PLAN_OK) continue;
        long t = (long)dp->samples[i].prompt_tokens + max_new;
        if (t > ctx) t = ctx;
        n->need[n->k++] = qvl_plan_blocks_per_seq(t, QVL_PLAN_KV_BLOCK_TOKENS);
    }
    qsort(n->need, (size_t)n->k, sizeof *n->need, cmp_desc);
    return 0;
}

/* The blocks s of the largest samples reserve at once (never below one whole context). */
static long needs_pool(const needs *n, long s) {
    long sum = 0;
    for (long i = 0; i < s && i < n->k; i++) sum += n->need[i];
    return sum > n->per_seq ? sum : n->per_seq;
}

/* The most samples a pool of `blocks` holds at once (the smallest ones; at least 1). */
static int needs_hold(const needs *n, long blocks) {
    long sum = 0;
    int h = 0;
    for (long i = n->k - 1; i >= 0 && h < QVL_PLAN_MAX_SEQS; i--) {
        if (sum + n->need[i] > blocks) break;
        sum += n->need[i];
        h++;
    }
    return h > 0 ? h : 1;
}

/* Settles dp at p and derives the context and the blocks each sample needs (the plan comes later). */
static int settle_at(const qvl_config *cfg, qvl_data_plan *dp, const qvl_fit_request *rq, const qvl_image_params *p,
                     qvl_fit *f, needs *nd) {
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
    if (needs_make(dp, ctx, rq->max_new_tokens, nd)) return -1;
    f->largest_blocks = nd->k > 0 ? nd->need[0] : 0;
    return 0;
}

/* The batched plan for `seqs` sequences and a pool of `blocks` at f's context and images. */
static int plan_with(const qvl_config *cfg, const qvl_fit_request *rq, const qvl_fit *f, int passes, int seqs,
                     long blocks, qvl_mem_plan *out) {
    qvl_plan_inputs in = {.max_model_len = f->max_model_len, .max_image_tokens = f->plan_image_tokens,
                          .kv_dtype = rq->kv_dtype, .sequences = seqs, .kv_blocks = blocks,
                          .kv_block_tokens = QVL_PLAN_KV_BLOCK_TOKENS};
    if (passes == QVL_FIT_PASSES_LEAN) {
        in.token_budget = QVL_PLAN_PREFILL_CHUNK;
        in.vision_tokens = f->plan_image_tokens;
        in.image_cache_tokens = f->plan_image_tokens;   /* one pass's features: the next pass waits for the prompt */
    }
    return qvl_mem_plan_compute_inputs(cfg, rq->weight_bytes, &in, rq->cuda_context_mib, out);
}

/* The smallest batch at f's settings: one sequence with a pool of one whole context, or --batch N
 * with the pool of its N largest samples. */
static int plan_smallest(const qvl_config *cfg, const qvl_fit_request *rq, qvl_fit *f, const needs *nd, int passes) {
    int s = rq->batch > 0 ? rq->batch : 1;
    f->passes = passes;
    f->batch = s;
    f->batch_given = rq->batch > 0;
    f->kv_blocks = f->kv_blocks_needed = needs_pool(nd, s);
    return plan_with(cfg, rq, f, passes, s, f->kv_blocks, &f->plan);
}

/* What the plan may take: the budget less the margin, or without one what one request at a time
 * took plus the slots of QVL_PLAN_DEFAULT_SEQS sequences sharing a pool of one whole context (the
 * CUDA backend's rule without --gpu-mem, mem_plan.h), never less than the smallest batch. */
static double usable_mib(const qvl_config *cfg, const qvl_fit_request *rq, const qvl_fit *f, const needs *nd) {
    if (rq->gpu_mem_mib > 0)
        return (double)rq->gpu_mem_mib - (rq->cuda_context_mib < 0 ? QVL_FIT_CONTEXT_MARGIN_MIB : 0);
    qvl_plan_inputs one = {.max_model_len = f->max_model_len, .max_image_tokens = f->plan_image_tokens,
                           .kv_dtype = rq->kv_dtype};
    qvl_mem_plan p1;
    double cap = f->plan.total;   /* the smallest batch (planned by the caller) */
    if (qvl_mem_plan_compute_inputs(cfg, rq->weight_bytes, &one, rq->cuda_context_mib, &p1) == 0 && p1.total > cap)
        cap = p1.total;
    if (plan_with(cfg, rq, f, f->passes, QVL_PLAN_DEFAULT_SEQS, nd->per_seq, &p1) == 0 && p1.total > cap)
        cap = p1.total;
    return cap;
}

/* With the smallest batch planned in f (it fits), the batch and the pool (qvl_fit_plan's rule): the
 * most sequences S whose slots and a pool holding S of the smallest samples fit; the pool then takes
 * what is left, up to what S of the largest samples reserve. */
static int choose_batch(const qvl_config *cfg, const qvl_fit_request *rq, qvl_fit *f, const needs *nd) {
    if (rq->batch > 0) return 0;   /* honoured as planned */
    double cap = usable_mib(cfg, rq, f, nd);
    int most = nd->k < QVL_PLAN_MAX_SEQS ? (int)nd->k : QVL_PLAN_MAX_SEQS;
    qvl_mem_plan p;
    for (int s = most; s > 1; s--) {   /* s = 1: the smallest batch, planned already */
        if (plan_with(cfg, rq, f, f->passes, s, 1, &p)) return -1;
        double block = p.kv_cache, fixed = p.total - p.kv_cache;
        long fit = (long)((cap - fixed) / block);
        long want = needs_pool(nd, s), blocks = fit < want ? fit : want;
        if (blocks < nd->per_seq || needs_hold(nd, blocks) < s) continue;
        if (plan_with(cfg, rq, f, f->passes, s, blocks, &p)) return -1;
        while (p.total > cap && blocks > nd->per_seq) {   /* the alignment's rounding (never seen) */
            blocks--;
            if (plan_with(cfg, rq, f, f->passes, s, blocks, &p)) return -1;
        }
        if (p.total > cap || needs_hold(nd, blocks) < s) continue;
        f->batch = s;
        f->kv_blocks = blocks;
        f->kv_blocks_needed = want;
        f->plan = p;
        return 0;
    }
    /* one sequence: the pool takes the rest up to the largest sample (at least one whole context) */
    if (plan_with(cfg, rq, f, f->passes, 1, 1, &p)) return -1;
    long fit = (long)((cap - (p.total - p.kv_cache)) / p.kv_cache), want = needs_pool(nd, 1);
    long blocks = fit < want ? fit : want;
    if (blocks < nd->per_seq) blocks = nd->per_seq;
    if (plan_with(cfg, rq, f, f->passes, 1, blocks, &p)) return -1;
    f->batch = 1;
    f->kv_blocks = blocks;
    f->kv_blocks_needed = want;
    f->plan = p;
    return 0;
}

static int fits(const qvl_fit *f, const qvl_fit_request *rq) {
    double margin = rq->cuda_context_mib < 0 ? QVL_FIT_CONTEXT_MARGIN_MIB : 0;
    return rq->gpu_mem_mib <= 0 || f->plan.total + margin <= (double)rq->gpu_mem_mib;
}

static int refuse(const qvl_fit *f, const qvl_fit_request *rq, const char *what) {
    const qvl_mem_plan *p = &f->plan;
    return qvl_errorf("gpu-mem: %ld MiB is below %s: %.0f MiB (context %.0f%s + weights %.0f + KV cache %.0f for %ld "
                      "blocks: %d sequence%s of up to %ld tokens + vision %.0f for %ld image tokens per image, %ld per "
                      "pass + workspace %.0f for %d rows per step)%s",
                      rq->gpu_mem_mib, what, p->total, p->cuda_context, p->cuda_context_measured ? "" : " estimated",
                      p->weights, p->kv_cache, p->kv_blocks, p->sequences, p->sequences == 1 ? "" : "s",
                      p->max_model_len, p->vision_activations, p->max_image_tokens, p->vision_tokens, p->workspace,
                      p->token_budget,
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
    if ((size_t)n < len)
        n += snprintf(b + n, len - (size_t)n,
                      "; batch %d (%s), KV pool %ld blocks of %d tokens (%d of the largest samples reserve %ld), %d rows "
                      "per step, %ld image tokens per vision pass, %ld kept%s",
                      f->batch, f->batch_given ? "--batch" : "the most that fit", f->kv_blocks,
                      QVL_PLAN_KV_BLOCK_TOKENS, f->batch, f->kv_blocks_needed, f->plan.token_budget,
                      f->plan.vision_tokens, f->plan.image_cache_tokens, f->passes != QVL_FIT_PASSES_LEAN ? ""
                      : rq->gpu_mem_mib > 0 || rq->batch > 0 ? " (lean passes, for the images)"
                                                             : " (lean passes: the default without --gpu-mem)");
    if (f->auto_image_tokens > 0 && (size_t)n < len)
        snprintf(b + n, len - (size_t)n, "; auto-fit to --gpu-mem %ld MiB: at most %ld image tokens per image (%ld "
                 "samples downscaled)", rq->gpu_mem_mib, f->auto_image_tokens, f->n_auto_downscaled);
}

/* Settles at p and plans the smallest batch; returns 1 when it fits, 0 when not, -1 on error. */
static int smallest_at(const qvl_config *cfg, qvl_data_plan *dp, const qvl_fit_request *rq, const qvl_image_params *p,
                       int passes, qvl_fit *f, needs *nd) {
    if (settle_at(cfg, dp, rq, p, f, nd) || plan_smallest(cfg, rq, f, nd, passes)) return -1;
    return fits(f, rq);
}

static int capped(qvl_image_params *p, const qvl_image_params *base, long cap) {
    *p = *base;
    return qvl_image_params_set_pixels(p, -1, -1, cap);
}

int qvl_fit_plan(const qvl_config *cfg, qvl_data_plan *dp, const qvl_fit_request *rq, qvl_fit *out) {
    memset(out, 0, sizeof *out);
    qvl_image_params base = qvl_config_image_params(cfg);
    if (qvl_image_params_set_pixels(&base, rq->min_pixels > 0 ? rq->min_pixels : -1,
                                    rq->max_pixels > 0 ? rq->max_pixels : -1,
                                    rq->max_image_tokens > 0 ? rq->max_image_tokens : -1))
        return -1;
    needs nd = {NULL, 0, 0};
    int *full = NULL, rc = -1, ok;
    /* Images whole: full passes, else lean ones. Without a budget or --batch, lean passes (one
     * largest image per vision pass, QVL_PLAN_PREFILL_CHUNK rows per step): the default batch then
     * costs little beyond what one request at a time took. */
    int lean_default = rq->gpu_mem_mib <= 0 && rq->batch <= 0;
    if ((ok = smallest_at(cfg, dp, rq, &base, lean_default ? QVL_FIT_PASSES_LEAN : QVL_FIT_PASSES_FULL, out, &nd)) < 0)
        goto done;
    if (!ok && (ok = smallest_at(cfg, dp, rq, &base, QVL_FIT_PASSES_LEAN, out, &nd)) < 0) goto done;
    if (!ok) {
        int explicit_px = rq->min_pixels > 0 || rq->max_pixels > 0 || rq->max_image_tokens > 0;
        if (!rq->auto_fit || explicit_px || dp->largest_image_tokens <= QVL_FIT_MIN_IMAGE_TOKENS) {
            refuse(out, rq, explicit_px ? "the plan for this data at these pixel settings" : "the plan for this data");
            goto done;
        }
        /* Auto-fit: the largest cap N in [QVL_FIT_MIN_IMAGE_TOKENS, largest) under which the smallest
         * batch fits (lean passes); the plan only grows with N, so a bisection finds it. Each sample's
         * image tokens without a cap first, to count the samples the cap lowers. */
        if (!(full = malloc((size_t)(dp->n ? dp->n : 1) * sizeof *full))) {
            qvl_errorf("plan: out of memory");
            goto done;
        }
        for (long i = 0; i < dp->n; i++) full[i] = dp->samples[i].status == QVL_PLAN_OK ? dp->samples[i].image_tokens : 0;
        long lo = QVL_FIT_MIN_IMAGE_TOKENS, hi = dp->largest_image_tokens - 1;
        qvl_image_params p;
        if (capped(&p, &base, lo) || (ok = smallest_at(cfg, dp, rq, &p, QVL_FIT_PASSES_LEAN, out, &nd)) < 0) goto done;
        if (!ok) {
            char what[96];
            snprintf(what, sizeof what, "what even a cap of %ld image tokens per image needs", lo);
            refuse(out, rq, what);
            goto done;
        }
        while (lo < hi) {   /* invariant: lo fits */
            long mid = lo + (hi - lo + 1) / 2;
            if (capped(&p, &base, mid) || (ok = smallest_at(cfg, dp, rq, &p, QVL_FIT_PASSES_LEAN, out, &nd)) < 0)
                goto done;
            if (ok) lo = mid;
            else hi = mid - 1;
        }
        if (capped(&p, &base, lo) || smallest_at(cfg, dp, rq, &p, QVL_FIT_PASSES_LEAN, out, &nd) < 0) goto done;
        out->auto_image_tokens = lo;
        for (long i = 0; i < dp->n; i++) out->n_auto_downscaled += full[i] > lo;
    }
    if (choose_batch(cfg, rq, out, &nd)) goto done;
    describe(out, dp, rq);
    rc = 0;
done:
    free(full);
    free(nd.need);
    return rc;
}

void qvl_fit_engine_opts(const qvl_fit *f, qvl_engine_opts *eo) {
    eo->max_model_len = f->max_model_len;
    eo->plan_image_tokens = f->plan_image_tokens;
    if (f->auto_image_tokens > 0) eo->max_image_tokens = f->auto_image_tokens;
    eo->max_batch = f->batch;
    eo->kv_blocks = (int)f->kv_blocks;
    eo->token_budget = f->plan.token_budget;
    eo->vision_tokens = f->plan.vision_tokens;
    eo->image_cache_tokens = f->plan.image_cache_tokens;
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
    cJSON_AddNumberToObject(o, "batch", f->batch);
    cJSON_AddStringToObject(o, "batch_from", f->batch_given ? "--batch" : "plan");
    cJSON_AddNumberToObject(o, "kv_blocks", (double)f->kv_blocks);
    cJSON_AddNumberToObject(o, "kv_block_tokens", QVL_PLAN_KV_BLOCK_TOKENS);
    cJSON_AddNumberToObject(o, "kv_blocks_needed", (double)f->kv_blocks_needed);
    cJSON_AddNumberToObject(o, "largest_sample_blocks", (double)f->largest_blocks);
    cJSON_AddNumberToObject(o, "token_budget", f->plan.token_budget);
    cJSON_AddNumberToObject(o, "vision_tokens", (double)f->plan.vision_tokens);
    cJSON_AddNumberToObject(o, "image_cache_tokens", (double)f->plan.image_cache_tokens);
    cJSON_AddStringToObject(o, "passes", f->passes == QVL_FIT_PASSES_LEAN ? "lean" : "full");
    if (rq->gpu_mem_mib > 0) cJSON_AddNumberToObject(o, "budget_mib", (double)rq->gpu_mem_mib);
    else cJSON_AddNullToObject(o, "budget_mib");
    if (f->auto_image_tokens > 0) {
        cJSON *a = cJSON_AddObjectToObject(o, "auto_fit");
        cJSON_AddNumberToObject(a, "budget_mib", (double)rq->gpu_mem_mib);
        cJSON_AddNumberToObject(a, "max_image_tokens", (double)f->auto_image_tokens);
        cJSON_AddNumberToObject(a, "downscaled", (double)f->n_auto_downscaled);
        cJSON_AddNumberToObject(a, "batch", f->batch);
        cJSON_AddNumberToObject(a, "kv_blocks", (double)f->kv_blocks);
    } else {
        cJSON_AddNullToObject(o, "auto_fit");
    }
    return o;
}
