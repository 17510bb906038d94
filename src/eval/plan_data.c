/* Sizes of a dataset's work before it runs (plan_data.h). The token arithmetic repeats the
 * engine's (engine.c: plan_image_tokens, shrink_to_budget, the overflow test) so that the counts
 * are the ones the engine will see; tests/test_plan_data.c checks them against the engine. */
#include "eval/plan_data.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "image/probe.h"
#include "model/tensor_check.h"
#include "tokenizer/chat.h"
#include "util/error.h"

/* Generated tokens assumed per sample for the cost (OCRBench answers are a few words). */
enum { ANSWER_ESTIMATE = 16 };

int qvl_plan_image_tokens(int width, int height, const qvl_image_params *p) {
    int factor = p->patch_size * p->merge_size, rh, rw;
    if (qvl_smart_resize(height, width, factor, p->min_pixels, p->max_pixels, &rh, &rw)) return -1;
    return (rh / factor) * (rw / factor);
}

int qvl_plan_shrink_to_budget(int width, int height, const qvl_image_params *p0, int budget) {
    qvl_image_params p = *p0;
    long token_px = (long)p.patch_size * p.merge_size * p.patch_size * p.merge_size;
    if (budget >= 1) {
        p.max_pixels = budget * token_px;
        for (int tries = 0; tries < 200 && p.max_pixels >= token_px; tries++) {
            if (p.min_pixels > p.max_pixels) p.min_pixels = p.max_pixels;
            int n = qvl_plan_image_tokens(width, height, &p);
            if (n < 0) return -1;
            if (n <= budget) return n;
            p.max_pixels -= token_px;
        }
    }
    return qvl_errorf("image does not fit even when downscaled to %d tokens", budget);
}

double qvl_plan_cost(const qvl_config *cfg, int image_tokens, int prompt_tokens, int answer_tokens) {
    const qvl_vision_config *v = &cfg->vision;
    const qvl_text_config *t = &cfg->text;
    double merge = (double)v->spatial_merge_size * v->spatial_merge_size;
    double n = image_tokens * merge, Dv = v->hidden_size, Iv = v->intermediate_size;
    /* vision: qkv + proj + fc1 + fc2 per patch, attention over all patches of the image, per block */
    double vis = v->depth * (n * 2.0 * (4.0 * Dv * Dv + 2.0 * Dv * Iv) + 4.0 * n * n * Dv);
    double D = t->hidden_size, I = t->intermediate_size, q = (double)t->num_heads * t->head_dim;
    double kv = (double)t->num_kv_heads * t->head_dim, T = prompt_tokens;
    /* prefill: every linear layer per token, causal attention (T^2 / 2 pairs) per layer */
    double per_tok = 2.0 * (D * (q + 2.0 * kv) + q * D + 3.0 * D * I);
    double pre = t->num_layers * (T * per_tok + 2.0 * T * T * q) + 2.0 * D * t->vocab_size;
    qvl_param_counts pc;
    double wbytes = qvl_param_count(cfg, &pc) == 0 ? (double)pc.total * 2.0 : 0;
    return 2e-3 + (vis + pre) / 300e12 + answer_tokens * wbytes / 2.5e12;
}

static char *dup_error(void) {
    char *e = strdup(qvl_error());
    return e ? e : strdup("out of memory");
}

static void set_failed(qvl_plan_sample *s, const char *why) {
    free(s->error);
    s->error = strdup(why);
    s->status = QVL_PLAN_FAILED;
}

int qvl_data_plan_probe(const qvl_dataset *ds, long first, long n, const qvl_tokenizer *tok, qvl_data_plan *out) {
    memset(out, 0, sizeof *out);
    out->largest_prompt_index = -1;
    if (first < 0 || n < 0 || first + n > ds->n_samples) return qvl_errorf("%s: samples %ld..%ld out of range", ds->source, first, first + n);
    out->samples = calloc((size_t)(n ? n : 1), sizeof *out->samples);
    if (!out->samples) return qvl_errorf("%s: out of memory for %ld samples", ds->source, n);
    out->n = n;
    for (long i = 0; i < n; i++) {
        const qvl_sample *s = &ds->samples[first + i];
        qvl_plan_sample *p = &out->samples[i];
        p->index = s->index;
        if (s->error) {
            set_failed(p, s->error);
            continue;
        }
        int rc;
        if (s->image_path) {
            rc = qvl_image_probe_file(s->image_path, &p->width, &p->height);
        } else if (s->image_data) {
            char name[64];
            snprintf(name, sizeof name, "sample %ld image", s->index);   /* engine/cmd_eval's name */
            rc = qvl_image_probe(s->image_data, s->image_size, name, &p->width, &p->height);
        } else {
            set_failed(p, "no image");
            continue;
        }
        if (rc) {
            p->width = p->height = 0;
            p->status = QVL_PLAN_FAILED;
            p->error = dup_error();
            continue;
        }
        /* The template with a one-token image: the engine's prompt is this with the pad expanded. */
        int32_t *ids = NULL;
        size_t n_ids = 0;
        if (qvl_chat_encode_single(tok, s->question, 1, &ids, &n_ids)) {
            p->width = p->height = 0;   /* width 0: failed before any settings apply */
            p->status = QVL_PLAN_FAILED;
            p->error = dup_error();
            continue;
        }
        free(ids);
        p->text_tokens = (int)n_ids - 1;
    }
    return 0;
}

int qvl_data_plan_settle(qvl_data_plan *dp, const qvl_config *cfg, const qvl_image_params *ip, long M, int downscale,
                         int max_new_tokens) {
    dp->n_ok = dp->n_failed = dp->n_overflow = dp->n_downscaled = 0;
    dp->largest_prompt = dp->largest_image_tokens = 0;
    dp->largest_prompt_index = -1;
    dp->total_cost = 0;
    int answer = max_new_tokens < ANSWER_ESTIMATE ? max_new_tokens : ANSWER_ESTIMATE;
    for (long i = 0; i < dp->n; i++) {
        qvl_plan_sample *s = &dp->samples[i];
        s->image_tokens = s->prompt_tokens = s->full_image_tokens = 0;
        s->cost = 0;
        if (s->width > 0) {   /* readable: an earlier settle's verdict does not count */
            free(s->error);
            s->error = NULL;
            s->status = QVL_PLAN_OK;
        }
        if (s->status == QVL_PLAN_FAILED) {
            dp->n_failed++;
            continue;
        }
        int n_img = qvl_plan_image_tokens(s->width, s->height, ip);
        if (n_img < 0) {
            s->status = QVL_PLAN_FAILED;
            s->error = dup_error();
            dp->n_failed++;
            continue;
        }
        s->full_image_tokens = n_img;
        long n_ids = (long)s->text_tokens + n_img;
        if (M > 0 && n_ids >= M) {   /* the engine's test: one generated token must fit */
            char why[256];
            if (!downscale || s->text_tokens >= M - 1 ||
                (n_img = qvl_plan_shrink_to_budget(s->width, s->height, ip, (int)(M - 1 - s->text_tokens))) < 0) {
                snprintf(why, sizeof why, "prompt of %ld tokens (%d image tokens) exceeds max-model-len %ld", n_ids,
                         s->full_image_tokens, M);
                s->status = QVL_PLAN_OVERFLOW;
                s->error = strdup(why);
                dp->n_overflow++;
                continue;
            }
            dp->n_downscaled++;
        }
        s->image_tokens = n_img;
        s->prompt_tokens = s->text_tokens + n_img;
        s->cost = qvl_plan_cost(cfg, n_img, s->prompt_tokens, answer);
        dp->total_cost += s->cost;
        dp->n_ok++;
        if (s->prompt_tokens > dp->largest_prompt) {
            dp->largest_prompt = s->prompt_tokens;
            dp->largest_prompt_index = s->index;
        }
        if (n_img > dp->largest_image_tokens) dp->largest_image_tokens = n_img;
    }
    return 0;
}

void qvl_data_plan_free(qvl_data_plan *dp) {
    if (!dp) return;
    for (long i = 0; i < dp->n; i++) free(dp->samples[i].error);
    free(dp->samples);
    memset(dp, 0, sizeof *dp);
}
