/* The batched CUDA backend (backend/cuda/cuda_backend.c) driven directly through its operations
 * table, on the trained tiny OCR model's held-out set (models/qvl-tiny-ocr,
 * tests/fixtures/tiny-ocr-heldout), by a small scheduler of its own (admission by free slots and
 * KV blocks, chunked prefill under the token budget, one decode row per running sequence):
 *   - greedy tokens at 32 sequences in flight vs one at a time: >= 99.5% identical (issue 13), and
 *     the predictions against transformers' (no worse than the bar of test_gpu_tiny_ocr);
 *   - the first picked row's logits close to one at a time;
 *   - blocks of 16 tokens handed out in shuffled order (every sequence crosses many block
 *     boundaries, none contiguous) give the tokens of 64-token blocks;
 *   - sequences start and finish at different steps (different answer lengths, slots reused);
 *   - a sequence cancelled mid-decode gives back its blocks and image rows, and the request
 *     that takes them over generates what it generates alone;
 *   - the quantized fixtures (tests/fixtures/quant: int4 ct_asym / ct_sym / awq, FP8) with 12
 *     sequences in flight against one at a time, the CPU model and the transformers reference;
 *   - the FP8 KV cache (--kv-dtype fp8): 32 in flight vs one at a time, against the CPU backend's
 *     FP8 cache and the CUDA BF16 cache, and its pool twice the blocks of BF16 under one cap. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_batch.h"
#include "engine/request.h"
#include "eval/dataset.h"
#include "gpu_test.h"
#include "io/npy.h"
#include "model/model.h"
#include "model/model_cuda.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"
#include <cjson/cJSON.h>

#define BMODEL "models/qvl-tiny-ocr"
#define BHELD "tests/fixtures/tiny-ocr-heldout"
enum { MAX_NEW = 32, N_HELD = 240 };

typedef struct {
    int32_t *ids, *pos; /* pos: [3][n] */
    int n, delta, image_tokens;
    qvl_pixel_values pv;
    long index;
} sample;

typedef struct {
    sample *s;
    int n;
    const qvl_config *cfg;
    qvl_tokenizer *tok;
} heldout;

static int load_heldout(heldout *h, const qvl_config *cfg, int limit) {
    memset(h, 0, sizeof *h);
    h->cfg = cfg;
    qvl_dataset ds;
    if (qvl_dataset_load(BHELD "/OCRBench.json", NULL, 1, &ds)) return -1;
    if (!(h->tok = qvl_tokenizer_load(BMODEL))) return -1;
    qvl_prep_ctx pc = {h->tok, qvl_config_image_params(cfg), 4096};
    pc.img.threads = 2;
    int n = ds.n_samples < limit ? (int)ds.n_samples : limit;
    h->s = calloc((size_t)n, sizeof *h->s);
    for (int i = 0; i < n; i++) {
        const qvl_sample *q = &ds.samples[i];
        qvl_request rq = {.image_path = q->image_path, .prompt = q->question};
        qvl_gen_opts g = qvl_gen_opts_default();
        qvl_req r;
        if (qvl_req_init(&r, &rq, &g) || qvl_req_prepare(&r, &pc)) {
            fprintf(stderr, "sample %d: %s\n", i, qvl_error());
            return -1;
        }
        sample *s = &h->s[h->n++];
        s->index = q->index;
        s->n = r.n_ids;
        s->ids = malloc((size_t)s->n * sizeof *s->ids);
        memcpy(s->ids, r.ids, (size_t)s->n * sizeof *s->ids);
        s->pv = r.pv[0];
        r.pv[0].data = NULL;   /* kept here */
        s->image_tokens = r.image_tokens;
        s->pos = malloc((size_t)3 * s->n * sizeof *s->pos);
        int grid[1][3] = {{s->pv.grid_t, s->pv.grid_h, s->pv.grid_w}};
        if (qvl_mrope_positions(s->ids, s->n, cfg->image_token_id, (const int(*)[3])grid, 1,
                                cfg->vision.spatial_merge_size, s->pos, &s->delta))
            return -1;
        qvl_req_free(&r);
    }
    qvl_dataset_free(&ds);
    return 0;
}

static void free_heldout(heldout *h) {
    for (int i = 0; i < h->n; i++) free(h->s[i].ids), free(h->s[i].pos), qvl_pixel_values_free(&h->s[i].pv);
    free(h->s);
    qvl_tokenizer_free(h->tok);
}

static int is_eos(const qvl_config *cfg, int32_t id) {
    for (int i = 0; i < cfg->gen.n_eos; i++)
        if (cfg->gen.eos_ids[i] == id) return 1;
    return 0;
}

/* ---- a small scheduler over the table ---- */
typedef struct {
    int order;            /* how the block pool hands out blocks: 0 ascending, 1 shuffled */
    int max_in_flight;
    int cancel_sample;    /* >= 0: cancel this sample after 3 generated tokens */
    const int *max_new;   /* per sample, or NULL: MAX_NEW */
    float *first_logits;  /* [n][V] the first picked row's logits, or NULL */
    float *step_logits;   /* [n][MAX_NEW][V] every picked row's logits, or NULL */
    int32_t (*force)[MAX_NEW]; /* per sample, the ids fed back after each pick (teacher forcing), or NULL */
    const qvl_pick_params *pick; /* every sequence's picking, or NULL: greedy */
    int ignore_eos;       /* generate max_new tokens whatever is picked (long decode-only stretches) */
} run_cfg;

typedef struct {
    int sample, prefilled, n_gen, n_blocks, cancelled, n_prompt;
    int32_t *blocks;
} running;

/* Generates for samples 0..n-1; tokens[i][0..len[i]). Returns 0 or -1. */
static int generate(const qvl_backend_ops *ops, qvl_backend *b, heldout *h, int n, const run_cfg *rc, int32_t (*tokens)[MAX_NEW],
                    int *len, int *peak_in_flight) {
    qvl_backend_limits lim;
    ops->limits(b, &lim);
    const int B = lim.kv_block_tokens, V = h->cfg->text.vocab_size;
    int S = lim.max_seqs < rc->max_in_flight ? lim.max_seqs : rc->max_in_flight;
    /* the block pool */
    int *free_blocks = malloc((size_t)lim.kv_blocks * sizeof(int)), n_free = lim.kv_blocks;
    for (int i = 0; i < lim.kv_blocks; i++) free_blocks[i] = lim.kv_blocks - 1 - i;   /* pop from the end: 0, 1, ... */
    if (rc->order == 1)
        for (int i = lim.kv_blocks - 1; i > 0; i--) {
            int j = (int)((unsigned)(i * 2654435761u) % (unsigned)(i + 1)), t = free_blocks[i];
            free_blocks[i] = free_blocks[j], free_blocks[j] = t;
        }
    running *slots = calloc((size_t)S, sizeof *slots);
    for (int s = 0; s < S; s++) slots[s].sample = -1, slots[s].blocks = malloc((size_t)lim.max_model_len / B * 4 + 64);
    qvl_batch bt;
    memset(&bt, 0, sizeof bt);
    int cap = lim.token_budget;
    bt.token = malloc(cap * 4), bt.seq = malloc(cap * 4), bt.kv_index = malloc(cap * 4), bt.image_row = malloc(cap * 4);
    bt.pick = malloc(cap);
    for (int a = 0; a < 3; a++) bt.pos[a] = malloc(cap * 4);
    int32_t *picked = malloc((size_t)lim.max_seqs * 4);
    int *pick_slot = malloc((size_t)lim.max_seqs * sizeof(int));
    float *logits = rc->first_logits || rc->step_logits ? malloc((size_t)lim.max_seqs * V * sizeof(float)) : NULL;
    int next = 0, done = 0, err = 0, steps = 0;
    *peak_in_flight = 0;
    while (done < n && !err) {
        /* admit */
        for (int s = 0; s < S && next < n; s++) {
            if (slots[s].sample >= 0) continue;
            sample *sm = &h->s[next];
            int need = (sm->n + MAX_NEW + B - 1) / B;
            if (need > n_free) break;
            running *r = &slots[s];
            memset(r, 0, sizeof *r - sizeof r->blocks);
            r->sample = next++;
            r->n_prompt = sm->n;
            for (int k = 0; k < need; k++) r->blocks[k] = free_blocks[--n_free];
            r->n_blocks = need;
            qvl_pick_params pp = {0, 1.0f, 0, 1.0f, 1.0f, 0.0f};
            if (rc->pick) pp = *rc->pick;
            const qvl_pixel_values *pv = &sm->pv;
            if (ops->seq_begin(b, s, &pp, NULL, 0, sm->ids, sm->n) || ops->seq_blocks(b, s, r->blocks, need) ||
                (pv->num_patches > 0 && ops->encode_images(b, &pv, &s, 1))) {
                fprintf(stderr, "admit: %s\n", qvl_error());
                err = 1;
                break;
            }
        }
        /* one batch: decodes first, then prefill chunks under the budget */
        bt.n_tokens = 0;
        bt.n_pick = 0;
        int np = 0, in_flight = 0;
        for (int s = 0; s < S; s++) {
            running *r = &slots[s];
            if (r->sample < 0) continue;
            in_flight++;
            if (!r->prefilled) continue;
            sample *sm = &h->s[r->sample];
            int k = r->n_prompt + r->n_gen - 1, row = bt.n_tokens++;
            bt.token[row] = rc->force ? rc->force[r->sample][r->n_gen - 1] : tokens[r->sample][r->n_gen - 1];
            for (int a = 0; a < 3; a++) bt.pos[a][row] = k + sm->delta;
            bt.seq[row] = s, bt.kv_index[row] = k, bt.image_row[row] = -1, bt.pick[row] = 1;
            pick_slot[np++] = s;
        }
        if (in_flight > *peak_in_flight) *peak_in_flight = in_flight;
        /* prefill: each sequence whole (the tiny prompts fit the budget); chunked by the budget */
        for (int s = 0; s < S; s++) {
            running *r = &slots[s];
            if (r->sample < 0 || r->prefilled) continue;
            sample *sm = &h->s[r->sample];
            int p0 = r->n_gen;   /* rows of the prompt already run (n_gen counts them while prefilling) */
            int cnt = sm->n - p0, room = cap - bt.n_tokens;
            if (room <= 0) break;
            if (cnt > room) cnt = room;
            int img = 0;
            for (int i = 0; i < p0; i++) img += sm->ids[i] == h->cfg->image_token_id;
            for (int i = p0; i < p0 + cnt; i++) {
                int row = bt.n_tokens++;
                bt.token[row] = sm->ids[i];
                for (int a = 0; a < 3; a++) bt.pos[a][row] = sm->pos[a * sm->n + i];
                bt.seq[row] = s, bt.kv_index[row] = i;
                bt.image_row[row] = sm->ids[i] == h->cfg->image_token_id ? img++ : -1;
                bt.pick[row] = i == sm->n - 1;
                if (bt.pick[row]) pick_slot[np++] = s;
            }
            r->n_gen = p0 + cnt;
            if (p0 + cnt == sm->n) r->prefilled = 2;   /* marks: prompt done in this batch */
        }
        bt.n_pick = np;
        if (bt.n_tokens == 0) break;
        if (ops->run_batch(b, &bt, picked, logits)) {
            fprintf(stderr, "run_batch: %s\n", qvl_error());
            err = 1;
            break;
        }
        steps++;
        for (int j = 0; j < np; j++) {
            int s = pick_slot[j];
            running *r = &slots[s];
            if (r->prefilled == 2) {
                r->prefilled = 1, r->n_gen = 0;
                ops->seq_drop_images(b, s);
                if (rc->first_logits) memcpy(rc->first_logits + (size_t)r->sample * V, logits + (size_t)j * V, (size_t)V * 4);
            }
            if (rc->step_logits)
                memcpy(rc->step_logits + ((size_t)r->sample * MAX_NEW + r->n_gen) * V, logits + (size_t)j * V, (size_t)V * 4);
            tokens[r->sample][r->n_gen++] = picked[j];
            int maxn = rc->max_new ? rc->max_new[r->sample] : MAX_NEW;
            /* teacher forcing runs the reference's steps: an end-of-sequence pick does not end it */
            int fin = (!rc->force && !rc->ignore_eos && is_eos(h->cfg, picked[j])) || r->n_gen >= maxn || (r->sample == rc->cancel_sample && r->n_gen >= 3);
            if (fin) {
                len[r->sample] = r->n_gen;
                ops->seq_free(b, s);
                for (int k = 0; k < r->n_blocks; k++) free_blocks[n_free++] = r->blocks[k];
                r->sample = -1;
                done++;
            }
        }
    }
    CHECK_INT(n_free, lim.kv_blocks);   /* every block back */
    for (int s = 0; s < S; s++) free(slots[s].blocks);
    free(slots), free(free_blocks), free(picked), free(pick_slot), free(logits);
    free(bt.token), free(bt.seq), free(bt.kv_index), free(bt.image_row), free(bt.pick);
    for (int a = 0; a < 3; a++) free(bt.pos[a]);
    if (verbose()) fprintf(stderr, "  %d samples in %d passes\n", n, steps);
    return err ? -1 : 0;
}

static qvl_backend *open_backend_kv(const qvl_backend_ops *ops, const char *dir, long max_len, int block, int max_seqs,
                                   long gpu_mem, int kv_dtype) {
    qvl_backend_opts o;
    memset(&o, 0, sizeof o);
    o.model_dir = dir;
    o.kv_dtype = kv_dtype;
    o.max_model_len = max_len;
    o.max_seqs = max_seqs;
    o.kv_block_tokens = block;
    o.gpu_mem_mib = gpu_mem;
    qvl_tuning_from_env(&o.tuning);
    qvl_backend *b = ops->open(&o);
    if (!b) fprintf(stderr, "open: %s\n", qvl_error());
    return b;
}
static qvl_backend *open_backend_dir(const qvl_backend_ops *ops, const char *dir, long max_len, int block, int max_seqs,
                                    long gpu_mem) {
    qvl_backend_opts o;
    memset(&o, 0, sizeof o);
    o.model_dir = dir;
    o.max_model_len = max_len;
    o.max_seqs = max_seqs;
    o.kv_block_tokens = block;
    o.gpu_mem_mib = gpu_mem;
    qvl_tuning_from_env(&o.tuning);
    qvl_backend *b = ops->open(&o);
    if (!b) fprintf(stderr, "open: %s\n", qvl_error());
    return b;
}
static qvl_backend *open_backend(const qvl_backend_ops *ops, int block, int max_seqs, long gpu_mem) {
    return open_backend_dir(ops, BMODEL, 4096, block, max_seqs, gpu_mem);
}

static int count_same(int32_t (*a)[MAX_NEW], const int *la, int32_t (*b)[MAX_NEW], const int *lb, int n, int *total) {
    int same = 0;
    *total = 0;
    for (int i = 0; i < n; i++) {
        int m = la[i] > lb[i] ? la[i] : lb[i];
        *total += m;
        for (int k = 0; k < la[i] && k < lb[i]; k++) same += a[i][k] == b[i][k];
    }
    return same;
}

static const char *ref_prediction(const cJSON *ref, long index) {
    const cJSON *p;
    cJSON_ArrayForEach(p, cJSON_GetObjectItem(ref, "predictions")) {
        const cJSON *i = cJSON_GetObjectItem(p, "index");
        if (cJSON_IsNumber(i) && i->valueint == index) return cJSON_GetStringValue(cJSON_GetObjectItem(p, "prediction"));
    }
    return NULL;
}

TEST(gpu_batch_matches_one_at_a_time) {
    if (!have_gpu()) return;
    const qvl_backend_ops *ops = qvl_cuda_backend_ops();
    qvl_backend *b = open_backend(ops, 64, 32, 4096);
    CHECK(b != NULL);
    if (!b) return;
    heldout h;
    CHECK_INT(load_heldout(&h, ops->config(b), N_HELD), 0);
    const int n = h.n, V = h.cfg->text.vocab_size;
    qvl_backend_limits lim;
    ops->limits(b, &lim);
    printf("    limits: %d slots, %d blocks of %d, budget %d, vision %ld, image cache %ld\n", lim.max_seqs,
           lim.kv_blocks, lim.kv_block_tokens, lim.token_budget, lim.vision_tokens, lim.image_cache_tokens);
    int32_t(*one)[MAX_NEW] = calloc((size_t)n, sizeof *one), (*many)[MAX_NEW] = calloc((size_t)n, sizeof *many);
    int *l1 = calloc((size_t)n, sizeof(int)), *lm = calloc((size_t)n, sizeof(int)), peak = 0;
    float *lg1 = malloc((size_t)8 * V * sizeof(float)), *lgm = malloc((size_t)8 * V * sizeof(float));
    run_cfg c1 = {.order = 0, .max_in_flight = 1, .cancel_sample = -1};
    CHECK_INT(generate(ops, b, &h, n, &c1, one, l1, &peak), 0);
    CHECK_INT(peak, 1);
    run_cfg cm = {.order = 0, .max_in_flight = 32, .cancel_sample = -1};
    CHECK_INT(generate(ops, b, &h, n, &cm, many, lm, &peak), 0);
    CHECK_INT(peak, 32);
    int total, same = count_same(one, l1, many, lm, n, &total);
    printf("    batch 32 vs batch 1: %d of %d greedy tokens identical (%.3f%%; bar 99.5%%)\n", same, total,
           100.0 * same / total);
    CHECK(same >= total * 0.995);
    /* logits of the first pick, 8 samples alone vs 8 together */
    run_cfg f1 = {.max_in_flight = 1, .cancel_sample = -1, .first_logits = lg1};
    run_cfg f8 = {.max_in_flight = 8, .cancel_sample = -1, .first_logits = lgm};
    int32_t(*tmp)[MAX_NEW] = calloc(8, sizeof *tmp);
    int ltmp[8];
    CHECK_INT(generate(ops, b, &h, 8, &f1, tmp, ltmp, &peak), 0);
    CHECK_INT(generate(ops, b, &h, 8, &f8, tmp, ltmp, &peak), 0);
    double md = 0, mx = 0;
    for (size_t i = 0; i < (size_t)8 * V; i++) {
        double d = fabs(lg1[i] - lgm[i]);
        if (d > md) md = d;
        if (fabs(lg1[i]) > mx) mx = fabs(lg1[i]);
    }
    printf("    first-pick logits, 8 together vs alone: max |diff| %.4g (max |logit| %.3g)\n", md, mx);
    CHECK(md <= 0.02 * mx + 0.05);
    /* against transformers: the predictions of the batched run */
    cJSON *ref = test_read_json(BHELD "/transformers_predictions.json");
    CHECK(ref != NULL);
    int ident = 0;
    for (int i = 0; ref && i < n; i++) {
        int k = lm[i];
        if (k > 0 && is_eos(h.cfg, many[i][k - 1])) k--;
        char *txt = qvl_tokenizer_decode(h.tok, many[i], (size_t)k, 1);
        const char *want = ref_prediction(ref, h.s[i].index);
        if (txt && want && strcmp(txt, want) == 0) ident++;
        else if (verbose()) fprintf(stderr, "    sample %ld: \"%s\" vs transformers \"%s\"\n", h.s[i].index, txt, want);
        free(txt);
    }
    printf("    batch 32 predictions identical to transformers': %d of %d\n", ident, n);
    CHECK(ident >= n - 2);
    cJSON_Delete(ref);

    /* shuffled 16-token blocks, different answer lengths, a cancel: same tokens */
    qvl_backend *b16 = open_backend(ops, 16, 32, 4096);
    CHECK(b16 != NULL);
    if (b16) {
        int *maxn = malloc((size_t)n * sizeof(int));
        for (int i = 0; i < n; i++) maxn[i] = 4 + (i * 7) % (MAX_NEW - 3);
        int32_t(*p16)[MAX_NEW] = calloc((size_t)n, sizeof *p16);
        int *l16 = calloc((size_t)n, sizeof(int));
        run_cfg c16 = {.order = 1, .max_in_flight = 32, .cancel_sample = 5, .max_new = maxn};
        CHECK_INT(generate(ops, b16, &h, n, &c16, p16, l16, &peak), 0);
        int s2 = 0, t2 = 0;
        for (int i = 0; i < n; i++) {
            int want = l1[i] < maxn[i] ? l1[i] : maxn[i];
            if (i == 5) want = 3;
            CHECK_INT(l16[i], want);
            for (int k = 0; k < l16[i] && k < want; k++) s2 += p16[i][k] == one[i][k], t2++;
        }
        printf("    16-token shuffled blocks, staggered ends, a cancel: %d of %d tokens as batch 1\n", s2, t2);
        CHECK(s2 >= t2 * 0.995);
        CHECK_INT((int)qvl_cuda_batch_image_rows_used(qvl_cuda_backend_batch(b16)), 0);
        free(maxn), free(p16), free(l16);
        ops->close(b16);
    }
    free(one), free(many), free(l1), free(lm), free(lg1), free(lgm), free(tmp);
    free_heldout(&h);
    ops->close(b);
}

TEST(gpu_batch_one_sequence_budget) {
    if (!have_gpu()) return;
    /* a budget that fits one sequence only: it still runs, one at a time */
    const qvl_backend_ops *ops = qvl_cuda_backend_ops();
    qvl_backend *big = open_backend(ops, 64, 0, 0);
    CHECK(big != NULL);
    if (!big) return;
    /* the model's own plan (its context figure, which the cap is checked against) */
    const qvl_mem_plan *p = qvl_cuda_model_plan(qvl_cuda_batch_model(qvl_cuda_backend_batch(big)));
    double one_seq = p->total - p->kv_cache + p->kv_cache / p->kv_blocks * 64;   /* 4096 / 64 blocks */
    printf("    default plan: %d slots, %ld blocks, %.0f MiB\n", p->sequences, p->kv_blocks, p->total);
    double p_ctx_weights = p->cuda_context + p->weights;
    /* the default: what one request at a time took plus the slots of QVL_PLAN_DEFAULT_SEQS sequences */
    CHECK(p->sequences > 1);
    ops->close(big);
    /* + 8 MiB: the context measured again at the next open differs by a few MiB (4 seen on an H100) */
    const double cap = ceil(one_seq) + 8;
    qvl_backend *b = open_backend(ops, 64, 0, (long)cap);
    CHECK(b != NULL);
    if (!b) return;
    qvl_backend_limits lim;
    ops->limits(b, &lim);
    /* room for one sequence of the whole context (64 blocks); the context figure measured again may
     * differ by a few MiB, i.e. some tens of the tiny model's 96 KiB blocks */
    printf("    cap %.0f MiB: %d slots, %d blocks\n", cap, lim.max_seqs, lim.kv_blocks);
    CHECK(lim.kv_blocks >= 64);
    heldout h;
    CHECK_INT(load_heldout(&h, ops->config(b), 6), 0);
    int32_t(*t)[MAX_NEW] = calloc(6, sizeof *t);
    int l[6], peak = 0;
    run_cfg c = {.max_in_flight = 32, .cancel_sample = -1};
    CHECK_INT(generate(ops, b, &h, 6, &c, t, l, &peak), 0);
    CHECK(peak >= 1);
    free(t);
    free_heldout(&h);
    ops->close(b);
    /* below one sequence: refused with the figures */
    CHECK(open_backend(ops, 64, 0, (long)(p_ctx_weights + 1)) == NULL);
}

/* ---- quantized checkpoints through the batched backend ----
 * The tiny fixtures of tests/fixtures/quant (int4 compressed-tensors asymmetric / symmetric, AWQ;
 * FP8 blocks), each prompt (inputs/img, inputs/text) QCOPIES times: 12 sequences in flight, so one
 * decode pass runs 12 rows through every packed Linear (the many-rows path: dequantize + BF16
 * GEMM, FP8's in-place activation rewrite) where one sequence at a time decodes through the packed
 * GEMV (at most 8 rows); prefill passes are many-rows in both. The reference's tokens are fed back
 * after each pick (teacher forcing, as gpu_quant_fixture_parity does), so every run sees the same
 * rows. Checked: every picked row's logits of 12 in flight against one at a time (this file's bar)
 * and the same argmax where the pick is clear; against the CPU model (qvl_model, same fed tokens)
 * and the first pick against transformers (logits_last), relative L2 within test_gpu_quant.c's
 * bars (int4 0.05; FP8 0.15, its known gap); int4 greedy picks equal the reference's where its
 * margin clears 2% of max |logit|. */
enum { QCOPIES = 6, QSEQS = 2 * QCOPIES };

static int qload(const char *dir, const char *name, qvl_npy *a) {
    char path[600];
    snprintf(path, sizeof path, "%s/%s.npy", dir, name);
    if (qvl_npy_read(path, a) == 0) return 0;
    memset(a, 0, sizeof *a);
    return -1;
}

static double qrel_l2(const float *got, const float *ref, size_t n) {
    double d2 = 0, r2 = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)got[i] - ref[i];
        d2 += d * d, r2 += (double)ref[i] * ref[i];
    }
    return r2 > 0 ? sqrt(d2 / r2) : sqrt(d2);
}

static int qargmax(const float *x, int n, double *margin) {
    int best = 0, second = -1;
    for (int v = 1; v < n; v++)
        if (x[v] > x[best]) second = best, best = v;
        else if (second < 0 || x[v] > x[second]) second = v;
    if (margin) *margin = second >= 0 ? (double)x[best] - x[second] : 0;
    return best;
}

/* One fixture prompt: ids, positions, pixels (none for text), the reference's tokens, margins
 * and last-row logits. */
typedef struct {
    sample s;
    int steps;
    int32_t gen[MAX_NEW];
    float margin[MAX_NEW];
    float *ref_logits;
} qprompt;

static int load_qprompt(const char *model, const char *cname, const qvl_config *cfg, qprompt *q) {
    char idir[256], rdir[300];
    snprintf(idir, sizeof idir, "tests/fixtures/quant/inputs/%s", cname);
    snprintf(rdir, sizeof rdir, "tests/fixtures/quant/%s/ref/%s", model, cname);
    memset(q, 0, sizeof *q);
    qvl_npy ids, grid, px, gtok, gmar, full;
    if (qload(idir, "input_ids", &ids) || qload(rdir, "gen_tokens", &gtok) || qload(rdir, "gen_margins", &gmar) ||
        qload(rdir, "logits_last", &full))
        return -1;
    int has_img = qload(idir, "image_grid_thw", &grid) == 0;
    if (has_img && qload(idir, "pixel_values", &px)) return -1;
    q->s.n = (int)ids.shape[0];
    q->s.ids = malloc((size_t)q->s.n * sizeof *q->s.ids);
    for (int i = 0; i < q->s.n; i++) q->s.ids[i] = (int32_t)((int64_t *)ids.data)[i];
    q->steps = (int)gtok.shape[0] < MAX_NEW ? (int)gtok.shape[0] : MAX_NEW;
    for (int t = 0; t < q->steps; t++) q->gen[t] = (int32_t)((int64_t *)gtok.data)[t], q->margin[t] = ((float *)gmar.data)[t];
    if (full.nbytes != (size_t)cfg->text.vocab_size * sizeof(float)) {
        qvl_errorf("%s/logits_last.npy: %zu bytes, expected %d floats", rdir, full.nbytes, cfg->text.vocab_size);
        return -1;
    }
    q->ref_logits = malloc(full.nbytes);
    memcpy(q->ref_logits, full.data, full.nbytes);
    int grids[1][3] = {{0, 0, 0}};
    if (has_img) {
        const int64_t *g = grid.data;
        const int np = (int)(g[0] * g[1] * g[2]), row = (int)px.shape[1];
        qvl_pixel_values pv = {malloc(px.nbytes), np, row, (int)g[0], (int)g[1], (int)g[2], (int)g[1] * 16, (int)g[2] * 16,
                               np / (cfg->vision.spatial_merge_size * cfg->vision.spatial_merge_size)};
        memcpy(pv.data, px.data, px.nbytes);
        q->s.pv = pv;
        q->s.image_tokens = pv.image_tokens;
        grids[0][0] = pv.grid_t, grids[0][1] = pv.grid_h, grids[0][2] = pv.grid_w;
        qvl_npy_free(&grid), qvl_npy_free(&px);
    }
    q->s.pos = malloc((size_t)3 * q->s.n * sizeof *q->s.pos);
    int rc = qvl_mrope_positions(q->s.ids, q->s.n, cfg->image_token_id, (const int(*)[3])grids, has_img,
                                 cfg->vision.spatial_merge_size, q->s.pos, &q->s.delta);
    qvl_npy_free(&ids), qvl_npy_free(&gtok), qvl_npy_free(&gmar), qvl_npy_free(&full);
    return rc;
}

/* The CPU model on prompt q with q's tokens fed back: logits [steps][V]. */
static int cpu_logits(qvl_model *m, const qprompt *q, int V, float *out) {
    qvl_vision_out img;
    memset(&img, 0, sizeof img);
    const int has_img = q->s.pv.num_patches > 0;
    if (has_img && qvl_model_encode_image(m, &q->s.pv, &img)) return -1;
    qvl_seq *s = qvl_seq_new(m, q->s.n + MAX_NEW + 1);
    int rc = !s || qvl_seq_prefill(m, s, q->s.ids, q->s.n, &img, has_img, out);
    for (int t = 1; !rc && t < q->steps; t++) rc = qvl_seq_decode(m, s, q->gen[t - 1], out + (size_t)t * V);
    qvl_seq_free(s);
    qvl_vision_out_free(&img);
    return rc ? -1 : 0;
}

static void quant_batched(const char *model, double tol, int greedy) {
    char dir[128];
    snprintf(dir, sizeof dir, "tests/fixtures/quant/%s", model);
    const qvl_backend_ops *ops = qvl_cuda_backend_ops();
    /* a 4096 MiB cap: the KV pool fills it, so all 12 sequences get their blocks at once (without a
     * cap the pool would hold what one request at a time took: 512 tokens) */
    qvl_backend *b = open_backend_dir(ops, dir, 512, 16, QSEQS, 4096);
    CHECK(b != NULL);
    if (!b) return;
    const qvl_config *cfg = ops->config(b);
    const int V = cfg->text.vocab_size;
    qprompt qp[2];
    const char *cases[2] = {"img", "text"};
    for (int c = 0; c < 2; c++)
        if (load_qprompt(model, cases[c], cfg, &qp[c])) {
            test_fail(__FILE__, __LINE__, "%s %s: %s", model, cases[c], qvl_error());
            ops->close(b);
            return;
        }
    /* the sequences: img, text, img, ... (the sample structs share the prompts' arrays) */
    heldout h;
    memset(&h, 0, sizeof h);
    h.cfg = cfg;
    h.n = QSEQS;
    h.s = calloc(QSEQS, sizeof *h.s);
    int32_t(*force)[MAX_NEW] = calloc(QSEQS, sizeof *force), (*one)[MAX_NEW] = calloc(QSEQS, sizeof *one);
    int32_t(*many)[MAX_NEW] = calloc(QSEQS, sizeof *many);
    int max_new[QSEQS], l1[QSEQS], lm[QSEQS], peak = 0;
    for (int i = 0; i < QSEQS; i++) {
        const qprompt *q = &qp[i % 2];
        h.s[i] = q->s;
        memcpy(force[i], q->gen, sizeof q->gen);
        max_new[i] = q->steps;
    }
    const size_t per = (size_t)MAX_NEW * V;
    float *lg1 = calloc(QSEQS * per, sizeof(float)), *lgm = calloc(QSEQS * per, sizeof(float));
    run_cfg c1 = {.max_in_flight = 1, .cancel_sample = -1, .max_new = max_new, .step_logits = lg1, .force = force};
    run_cfg cm = {.order = 1, .max_in_flight = QSEQS, .cancel_sample = -1, .max_new = max_new, .step_logits = lgm,
                  .force = force};
    CHECK_INT(generate(ops, b, &h, QSEQS, &c1, one, l1, &peak), 0);
    CHECK_INT(generate(ops, b, &h, QSEQS, &cm, many, lm, &peak), 0);
    CHECK_INT(peak, QSEQS);
    /* 12 in flight vs one at a time */
    double md = 0, mx = 0;
    int clear = 0, same_clear = 0, same = 0, total = 0;
    for (int i = 0; i < QSEQS; i++) {
        CHECK_INT(lm[i], max_new[i]);
        for (int t = 0; t < max_new[i] && t < l1[i] && t < lm[i]; t++) {
            const float *a = lg1 + i * per + (size_t)t * V, *c = lgm + i * per + (size_t)t * V;
            double margin, amax = 0;
            for (int v = 0; v < V; v++) {
                md = fmax(md, fabs(a[v] - c[v]));
                amax = fmax(amax, fabs(a[v]));
            }
            mx = fmax(mx, amax);
            qargmax(a, V, &margin);
            total++, same += one[i][t] == many[i][t];
            if (margin > 0.02 * amax) {
                clear++, same_clear += one[i][t] == many[i][t];
                if (one[i][t] != many[i][t])
                    test_fail(__FILE__, __LINE__, "%s sequence %d step %d: %d in flight picks %d, alone %d", model, i, t,
                              QSEQS, many[i][t], one[i][t]);
            }
        }
    }
    printf("    %-8s %d in flight vs alone: %d of %d picks identical (%d of %d clear ones); logits max |diff| %.4g "
           "(max |logit| %.3g)\n", model, QSEQS, same, total, same_clear, clear, md, mx);
    /* FP8: one sequence decodes through the packed GEMV (code x code products in F32), 12 rows through
     * the fake-quantized BF16 GEMM (kernel harness: within 2^-8 of the products' scale); the next
     * layer's per-token e4m3 codes then flip at the fixture's many exact ties (docs/model.md 7.4),
     * so whole logits move by more than int4's bar (1.47 of 23.1 seen on an H100): 10% of the
     * largest logit, with every clear pick identical (checked above). */
    const int fp8 = strstr(model, "fp8") != NULL;
    CHECK(md <= (fp8 ? 0.1 * mx : 0.02 * mx + 0.05));
    /* against the CPU model and transformers */
    char *open_err = NULL;
    qvl_model *cm_cpu = qvl_model_open(dir, 2);
    if (!cm_cpu) open_err = strdup(qvl_error());
    CHECK(cm_cpu != NULL);
    float *cpu = malloc(per * sizeof(float));
    double worst_cpu = 0, worst_ref = 0;
    int checked = 0;
    for (int c = 0; cm_cpu && c < 2; c++) {
        const qprompt *q = &qp[c];
        if (cpu_logits(cm_cpu, q, V, cpu)) {
            test_fail(__FILE__, __LINE__, "%s %s on the CPU: %s", model, cases[c], qvl_error());
            continue;
        }
        for (int i = c; i < QSEQS; i += 2)
            for (int t = 0; t < q->steps && t < lm[i]; t++) {
                double e = qrel_l2(lgm + i * per + (size_t)t * V, cpu + (size_t)t * V, (size_t)V);
                worst_cpu = fmax(worst_cpu, e);
                if (!(e <= tol))
                    test_fail(__FILE__, __LINE__, "%s %s sequence %d step %d: logits vs the CPU model relative L2 %.3g > %g",
                              model, cases[c], i, t, e, tol);
            }
        double absmax = 0;
        for (int v = 0; v < V; v++) absmax = fmax(absmax, fabs(q->ref_logits[v]));
        for (int i = c; i < QSEQS; i += 2) {
            double e = qrel_l2(lgm + i * per, q->ref_logits, (size_t)V);
            worst_ref = fmax(worst_ref, e);
            if (!(e <= tol))
                test_fail(__FILE__, __LINE__, "%s %s sequence %d: first pick vs transformers relative L2 %.3g > %g", model,
                          cases[c], i, e, tol);
            for (int t = 0; greedy && t < q->steps && t < lm[i]; t++)
                if (q->margin[t] > 0.02 * absmax) {
                    checked++;
                    if (many[i][t] != q->gen[t])
                        test_fail(__FILE__, __LINE__, "%s %s sequence %d step %d: token %d, reference %d", model, cases[c], i,
                                  t, many[i][t], q->gen[t]);
                }
        }
    }
    printf("    %-8s logits vs CPU model: worst relative L2 %.3g; first pick vs transformers %.3g (bar %g); %d greedy "
           "picks checked\n", model, worst_cpu, worst_ref, tol, checked);
    if (open_err) fprintf(stderr, "open %s on the CPU: %s\n", dir, open_err);
    free(open_err);
    qvl_model_close(cm_cpu);
    free(cpu), free(lg1), free(lgm), free(force), free(one), free(many), free(h.s);
    for (int c = 0; c < 2; c++) {
        free(qp[c].s.ids), free(qp[c].s.pos), free(qp[c].ref_logits);
        qvl_pixel_values_free(&qp[c].s.pv);
    }
    ops->close(b);
}

TEST(gpu_batch_quant_int4) {
    if (!have_gpu()) return;
    const char *models[] = {"ct_asym", "ct_sym", "awq"};
    for (int i = 0; i < 3; i++) quant_batched(models[i], 0.05, 1);
}

/* FP8: its known gap to the transformers reference (test_gpu_quant.c gpu_quant_fp8_fixture_known_gap)
 * bounds the comparisons at 0.15; greedy against the reference not asserted. */
TEST(gpu_batch_quant_fp8) {
    if (!have_gpu()) return;
    quant_batched("fp8", 0.15, 0);
}

/* ---- FP8 KV cache (--kv-dtype fp8) ----
 * The CUDA backend with an e4m3 KV pool (cuda_kv_fp8.cuh) on the held-out set:
 *   - 32 in flight vs one at a time: the bars of gpu_batch_matches_one_at_a_time (>= 99.5% of the
 *     greedy tokens, first-pick logits within 0.02 max|logit| + 0.05);
 *   - against the CPU backend's FP8 cache (backend/cpu/kv_fp8.c, the same e4m3 rounding): >= 97% of the
 *     predictions identical (the bar of tests/test_kv_fp8.c, FP8 vs float32 on the CPU), and the
 *     first-pick logits of 8 samples within a relative L2 of 0.1 each (the two differ by BF16 vs
 *     float32 arithmetic, whose K/V values then round to e4m3 on either side of a code's edge);
 *   - against CUDA with the BF16 cache, and transformers': >= 97% of the predictions identical;
 *   - under one --gpu-mem cap the FP8 pool holds twice the blocks (1 byte per element, not 2). */
static int same_predictions(int32_t (*a)[MAX_NEW], const int *la, int32_t (*b)[MAX_NEW], const int *lb, int n) {
    int same = 0;
    for (int i = 0; i < n; i++) same += la[i] == lb[i] && !memcmp(a[i], b[i], (size_t)la[i] * sizeof a[i][0]);
    return same;
}

TEST(gpu_batch_kv_fp8) {
    if (!have_gpu()) return;
    const qvl_backend_ops *ops = qvl_cuda_backend_ops(), *cpu = qvl_backend_find("cpu");
    CHECK(cpu != NULL);
    qvl_backend *b = open_backend_kv(ops, BMODEL, 4096, 64, 32, 4096, QVL_KV_FP8);
    qvl_backend *b16 = open_backend_kv(ops, BMODEL, 4096, 64, 32, 4096, QVL_KV_BF16);
    qvl_backend *bc = cpu ? open_backend_kv(cpu, BMODEL, 4096, 64, 8, 0, QVL_KV_FP8) : NULL;
    CHECK(b != NULL && b16 != NULL && bc != NULL);
    if (!b || !b16 || !bc) {
        if (b) ops->close(b);
        if (b16) ops->close(b16);
        if (bc) cpu->close(bc);
        return;
    }
    CHECK_INT(qvl_cuda_model_plan(qvl_cuda_batch_model(qvl_cuda_backend_batch(b)))->kv_dtype, QVL_PLAN_KV_FP8);
    heldout h;
    CHECK_INT(load_heldout(&h, ops->config(b), N_HELD), 0);
    const int n = h.n, V = h.cfg->text.vocab_size;
    int32_t(*one)[MAX_NEW] = calloc((size_t)n, sizeof *one), (*many)[MAX_NEW] = calloc((size_t)n, sizeof *many);
    int32_t(*c8)[MAX_NEW] = calloc((size_t)n, sizeof *c8), (*g16)[MAX_NEW] = calloc((size_t)n, sizeof *g16);
    int *l1 = calloc((size_t)n, sizeof(int)), *lm = calloc((size_t)n, sizeof(int)), *lc = calloc((size_t)n, sizeof(int));
    int *l16 = calloc((size_t)n, sizeof(int)), peak = 0;
    run_cfg c1 = {.max_in_flight = 1, .cancel_sample = -1}, cm = {.max_in_flight = 32, .cancel_sample = -1};
    run_cfg cc = {.max_in_flight = 8, .cancel_sample = -1};
    CHECK_INT(generate(ops, b, &h, n, &c1, one, l1, &peak), 0);
    CHECK_INT(generate(ops, b, &h, n, &cm, many, lm, &peak), 0);
    CHECK_INT(peak, 32);
    CHECK_INT(generate(ops, b16, &h, n, &cm, g16, l16, &peak), 0);
    CHECK_INT(generate(cpu, bc, &h, n, &cc, c8, lc, &peak), 0);
    int total, same = count_same(one, l1, many, lm, n, &total);
    printf("    fp8 KV, batch 32 vs batch 1: %d of %d greedy tokens identical (%.3f%%; bar 99.5%%)\n", same, total,
           100.0 * same / total);
    CHECK(same >= total * 0.995);
    const int vs_cpu = same_predictions(many, lm, c8, lc, n), vs_bf16 = same_predictions(many, lm, g16, l16, n);
    for (int i = 0; verbose() && i < n; i++)
        if (same_predictions(many + i, lm + i, c8 + i, lc + i, 1) == 0) {
            char *a = qvl_tokenizer_decode(h.tok, many[i], (size_t)lm[i], 1), *c = qvl_tokenizer_decode(h.tok, c8[i], (size_t)lc[i], 1);
            fprintf(stderr, "    sample %ld: CUDA fp8 KV \"%s\", CPU fp8 KV \"%s\"\n", h.s[i].index, a, c);
            free(a), free(c);
        }
    int ttotal, tsame = count_same(many, lm, c8, lc, n, &ttotal);
    printf("    fp8 KV, CUDA vs the CPU backend's fp8 KV: %d of %d predictions identical (bar 97%%; %d of %d tokens)\n",
           vs_cpu, n, tsame, ttotal);
    printf("    fp8 KV vs bf16 KV on CUDA: %d of %d predictions identical (bar 97%%)\n", vs_bf16, n);
    CHECK(vs_cpu * 100 >= 97 * n);
    CHECK(vs_bf16 * 100 >= 97 * n);
    /* against transformers: the batched fp8 run's predictions */
    cJSON *ref = test_read_json(BHELD "/transformers_predictions.json");
    CHECK(ref != NULL);
    int ident = 0;
    for (int i = 0; ref && i < n; i++) {
        int k = lm[i];
        if (k > 0 && is_eos(h.cfg, many[i][k - 1])) k--;
        char *txt = qvl_tokenizer_decode(h.tok, many[i], (size_t)k, 1);
        const char *want = ref_prediction(ref, h.s[i].index);
        if (txt && want && strcmp(txt, want) == 0) ident++;
        else if (verbose()) fprintf(stderr, "    sample %ld: fp8 KV \"%s\" vs transformers \"%s\"\n", h.s[i].index, txt, want);
        free(txt);
    }
    printf("    fp8 KV, batch 32 predictions identical to transformers': %d of %d (bar 97%%)\n", ident, n);
    CHECK(ident * 100 >= 97 * n);
    cJSON_Delete(ref);
    /* first-pick logits: 8 together vs alone (CUDA), and CUDA vs the CPU backend */
    float *lg1 = malloc((size_t)8 * V * sizeof(float)), *lg8 = malloc((size_t)8 * V * sizeof(float));
    float *lgc = malloc((size_t)8 * V * sizeof(float));
    run_cfg f1 = {.max_in_flight = 1, .cancel_sample = -1, .first_logits = lg1};
    run_cfg f8 = {.max_in_flight = 8, .cancel_sample = -1, .first_logits = lg8};
    run_cfg fc = {.max_in_flight = 8, .cancel_sample = -1, .first_logits = lgc};
    int32_t(*tmp)[MAX_NEW] = calloc(8, sizeof *tmp);
    int ltmp[8];
    CHECK_INT(generate(ops, b, &h, 8, &f1, tmp, ltmp, &peak), 0);
    CHECK_INT(generate(ops, b, &h, 8, &f8, tmp, ltmp, &peak), 0);
    CHECK_INT(generate(cpu, bc, &h, 8, &fc, tmp, ltmp, &peak), 0);
    double md = 0, mx = 0, worst_cpu = 0;
    for (size_t i = 0; i < (size_t)8 * V; i++) {
        md = fmax(md, fabs(lg1[i] - lg8[i]));
        mx = fmax(mx, fabs(lg1[i]));
    }
    for (int i = 0; i < 8; i++) worst_cpu = fmax(worst_cpu, qrel_l2(lg8 + (size_t)i * V, lgc + (size_t)i * V, (size_t)V));
    printf("    fp8 KV first-pick logits: 8 together vs alone max |diff| %.4g (max |logit| %.3g); CUDA vs CPU worst "
           "relative L2 %.4g (bar 0.1)\n", md, mx, worst_cpu);
    CHECK(md <= 0.02 * mx + 0.05);
    CHECK(worst_cpu <= 0.1);
    free(lg1), free(lg8), free(lgc), free(tmp);
    free(one), free(many), free(c8), free(g16), free(l1), free(lm), free(lc), free(l16);
    free_heldout(&h);
    ops->close(b), ops->close(b16), cpu->close(bc);

    /* one cap that limits the pool (not the slots: 128 of them would take 8192 blocks): the fixed part
     * of the bf16 plan + 150 MiB, where bf16 holds 150 / (its MiB per block) blocks; FP8 holds twice
     * that (the context measured again may differ by a few MiB: 1.9x) */
    qvl_backend *p16 = open_backend_kv(ops, BMODEL, 4096, 64, 128, 2048, QVL_KV_BF16);
    CHECK(p16 != NULL);
    if (!p16) return;
    const qvl_mem_plan *c = qvl_cuda_model_plan(qvl_cuda_batch_model(qvl_cuda_backend_batch(p16)));
    const double fixed = c->total - c->kv_cache, block16 = c->kv_cache / c->kv_blocks;
    const long cap = (long)ceil(fixed + 150), blocks16 = (long)((cap - fixed) / block16);
    ops->close(p16);
    qvl_backend *p8 = open_backend_kv(ops, BMODEL, 4096, 64, 128, cap, QVL_KV_FP8);
    CHECK(p8 != NULL);
    if (!p8) return;
    const qvl_mem_plan *a = qvl_cuda_model_plan(qvl_cuda_batch_model(qvl_cuda_backend_batch(p8)));
    printf("    cap %ld MiB, 128 slots: fp8 %ld blocks (%.1f MiB KV); bf16 %ld blocks under the same cap\n", cap,
           a->kv_blocks, a->kv_cache, blocks16);
    CHECK_NEAR(a->kv_cache / a->kv_blocks, 0.5 * block16, 1e-3);
    CHECK(blocks16 < 128L * 64 / 2);
    CHECK(a->kv_blocks >= 1.9 * blocks16);
    ops->close(p8);
}

/* ---- two engines in one process (issue 13: no process-wide device state) ----
 * The kernels whose last block to finish merges the others' work (decode attention's fused
 * combine, the one-row argmax) count finished blocks in the model's own qvl_sync. Two models run
 * concurrently from two threads (each its own stream), several rounds; every token and every
 * step's logits (bits) must equal the same model's run alone. */
enum { TWO_PROMPT = 48, TWO_STEPS = 96, TWO_ROUNDS = 4 };

typedef struct {
    qvl_cuda_model *m;
    int32_t prompt[TWO_PROMPT];
    int32_t tok[TWO_STEPS];
    uint64_t hash[TWO_STEPS];   /* FNV-1a over each step's logits (float bits) */
    float *lg;
    int rc;
    pthread_barrier_t *go;
} seq_run;

static uint64_t fnv(const void *p, size_t n) {
    const unsigned char *c = p;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ c[i]) * 1099511628211ull;
    return h;
}

static void *seq_run_main(void *arg) {
    seq_run *r = arg;
    const int V = qvl_cuda_model_config(r->m)->text.vocab_size;
    if (r->go) pthread_barrier_wait(r->go);
    r->rc = 0;
    int next = qvl_cuda_prefill(r->m, r->prompt, TWO_PROMPT);
    for (int t = 0; t < TWO_STEPS; t++) {
        if (next < 0 || qvl_cuda_logits(r->m, r->lg)) {
            r->rc = -1;
            break;
        }
        r->tok[t] = next;
        r->hash[t] = fnv(r->lg, (size_t)V * sizeof(float));
        if (t + 1 < TWO_STEPS) next = qvl_cuda_decode(r->m, next);
    }
    return NULL;
}

TEST(gpu_two_engines_one_sequence) {
    if (!have_gpu()) return;
    seq_run alone[2], both[2];
    qvl_cuda_model *m[2] = {NULL, NULL};
    for (int e = 0; e < 2; e++) {
        qvl_cuda_opts o = {.max_model_len = TWO_PROMPT + TWO_STEPS + 8, .max_pixels = 1 << 20};
        qvl_tuning_from_env(&o.tuning);
        if (!(m[e] = qvl_cuda_model_open(BMODEL, &o))) {
            test_fail(__FILE__, __LINE__, "open %s: %s", BMODEL, qvl_error());
            for (int k = 0; k < e; k++) qvl_cuda_model_close(m[k]);
            return;
        }
    }
    const int V = qvl_cuda_model_config(m[0])->text.vocab_size;
    for (int e = 0; e < 2; e++) {
        memset(&alone[e], 0, sizeof alone[e]);
        alone[e].m = m[e];
        alone[e].lg = malloc((size_t)V * sizeof(float));
        uint32_t x = 777u + 1000u * (unsigned)e;   /* different prompts: a mix-up changes the answers */
        for (int i = 0; i < TWO_PROMPT; i++) x = x * 1664525u + 1013904223u, alone[e].prompt[i] = (int32_t)(x % 20000u);
        seq_run_main(&alone[e]);   /* alone: one engine at a time */
        CHECK_INT(alone[e].rc, 0);
    }
    int differ = 0, runs = 0;
    for (int round = 0; round < TWO_ROUNDS; round++) {
        pthread_barrier_t go;
        pthread_barrier_init(&go, NULL, 2);
        pthread_t th[2];
        for (int e = 0; e < 2; e++) {
            both[e] = alone[e];
            both[e].lg = malloc((size_t)V * sizeof(float));
            both[e].go = &go;
            memset(both[e].tok, 0, sizeof both[e].tok), memset(both[e].hash, 0, sizeof both[e].hash);
            pthread_create(&th[e], NULL, seq_run_main, &both[e]);
        }
        for (int e = 0; e < 2; e++) pthread_join(th[e], NULL);
        pthread_barrier_destroy(&go);
        for (int e = 0; e < 2; e++) {
            CHECK_INT(both[e].rc, 0);
            runs++;
            int bad = -1;
            for (int t = 0; t < TWO_STEPS && bad < 0; t++)
                if (both[e].tok[t] != alone[e].tok[t] || both[e].hash[t] != alone[e].hash[t]) bad = t;
            if (bad >= 0) {
                differ++;
                test_fail(__FILE__, __LINE__, "round %d engine %d: step %d differs from the engine alone (token %d vs %d)",
                          round, e, bad, both[e].tok[bad], alone[e].tok[bad]);
            }
            free(both[e].lg);
        }
    }
    printf("    two one-sequence engines at once, %d rounds x %d decode steps: %d of %d runs differ from alone\n",
           TWO_ROUNDS, TWO_STEPS, differ, runs);
    for (int e = 0; e < 2; e++) free(alone[e].lg), qvl_cuda_model_close(m[e]);
}

typedef struct {
    const qvl_backend_ops *ops;
    qvl_backend *b;
    heldout *h;
    int n;
    run_cfg cfg;
    int32_t (*tok)[MAX_NEW];
    int *len;
    int rc;
    pthread_barrier_t *go;
} batch_run;

static void *batch_run_main(void *arg) {
    batch_run *r = arg;
    int peak = 0;
    if (r->go) pthread_barrier_wait(r->go);
    r->rc = generate(r->ops, r->b, r->h, r->n, &r->cfg, r->tok, r->len, &peak);
    return NULL;
}

/* The same through two batched backends: one sequence in flight (every pass picks one row: the
 * one-row argmax) and 8 in flight; tokens identical to each backend alone. */
TEST(gpu_two_engines_batched) {
    if (!have_gpu()) return;
    const qvl_backend_ops *ops = qvl_cuda_backend_ops();
    /* an 8 GiB cap each: the second one's context figure (device memory in use) holds the first
     * engine's arena; the pool stays at 8 slots' whole contexts (512 blocks) */
    qvl_backend *b[2] = {open_backend(ops, 64, 8, 8192), open_backend(ops, 64, 8, 8192)};
    CHECK(b[0] != NULL && b[1] != NULL);
    heldout h;
    if (!b[0] || !b[1] || load_heldout(&h, ops->config(b[0]), 12)) {
        for (int e = 0; e < 2; e++) ops->close(b[e]);
        CHECK(0);
        return;
    }
    const int n = h.n;
    int differ = 0, runs = 0;
    for (int flight = 1; flight <= 8; flight += 7) {
        batch_run alone[2], both[2];
        for (int e = 0; e < 2; e++) {
            batch_run r = {ops, b[e], &h, n, {.max_in_flight = flight, .cancel_sample = -1}, NULL, NULL, 0, NULL};
            r.tok = calloc((size_t)n, sizeof *r.tok), r.len = calloc((size_t)n, sizeof(int));
            alone[e] = r;
            batch_run_main(&alone[e]);
            CHECK_INT(alone[e].rc, 0);
        }
        for (int round = 0; round < 2; round++) {
            pthread_barrier_t go;
            pthread_barrier_init(&go, NULL, 2);
            pthread_t th[2];
            for (int e = 0; e < 2; e++) {
                both[e] = alone[e];
                both[e].tok = calloc((size_t)n, sizeof *both[e].tok), both[e].len = calloc((size_t)n, sizeof(int));
                both[e].go = &go;
                pthread_create(&th[e], NULL, batch_run_main, &both[e]);
            }
            for (int e = 0; e < 2; e++) pthread_join(th[e], NULL);
            pthread_barrier_destroy(&go);
            for (int e = 0; e < 2; e++) {
                CHECK_INT(both[e].rc, 0);
                runs++;
                int same = 1;
                for (int i = 0; i < n; i++) {
                    same &= both[e].len[i] == alone[e].len[i];
                    for (int k = 0; k < alone[e].len[i] && k < both[e].len[i]; k++) same &= both[e].tok[i][k] == alone[e].tok[i][k];
                }
                if (!same) {
                    differ++;
                    test_fail(__FILE__, __LINE__, "%d in flight, round %d, engine %d: tokens differ from the engine alone",
                              flight, round, e);
                }
                free(both[e].tok), free(both[e].len);
            }
        }
        for (int e = 0; e < 2; e++) free(alone[e].tok), free(alone[e].len);
    }
    printf("    two batched engines at once (1 and 8 in flight, %d samples): %d of %d runs differ from alone\n", n, differ,
           runs);
    free_heldout(&h);
    for (int e = 0; e < 2; e++) ops->close(b[e]);
}

/* ---- decode graphs per batch-size bucket (qvl_tuning.decode_graphs) ----
 * The same run with graphs on and off: 20 held-out samples, up to 12 in flight (12 slots: the
 * buckets are 1, 2, 4, 8 and 12), answers of 4 .. 32 tokens so that sequences finish at different
 * steps and the decode passes go through every bucket, new admissions mixing prompt rows into
 * some passes (those run kernel by kernel either way). Every token and every picked row's logits
 * must be identical to the bit; with graphs on, graphs were captured and replayed. Then the same
 * with repetition and presence penalties (the per-row pick kernel runs after the replay). */
enum { GR_N = 20, GR_SEQS = 12 };

static qvl_backend *open_graphs(const qvl_backend_ops *ops, int graphs) {
    qvl_backend_opts o;
    memset(&o, 0, sizeof o);
    o.model_dir = BMODEL;
    o.max_model_len = 4096;
    o.max_seqs = GR_SEQS;
    o.kv_block_tokens = 64;
    o.gpu_mem_mib = 8192;   /* the pool: 12 slots' whole contexts; the second engine's context figure
                               holds the first one's arena */
    qvl_tuning_from_env(&o.tuning);
    o.tuning.no_cuda_graphs = 0;
    o.tuning.decode_graphs = graphs ? 1 : -1;
    qvl_backend *b = ops->open(&o);
    if (!b) fprintf(stderr, "open: %s\n", qvl_error());
    return b;
}

static void graphs_on_off(const qvl_pick_params *pick, int with_logits) {
    const qvl_backend_ops *ops = qvl_cuda_backend_ops();
    qvl_backend *b[2] = {open_graphs(ops, 0), open_graphs(ops, 1)};
    CHECK(b[0] != NULL && b[1] != NULL);
    heldout h;
    if (!b[0] || !b[1] || load_heldout(&h, ops->config(b[0]), GR_N)) {
        for (int e = 0; e < 2; e++) ops->close(b[e]);
        CHECK(0);
        return;
    }
    const int n = h.n, V = h.cfg->text.vocab_size;
    qvl_backend_limits lim;
    ops->limits(b[1], &lim);
    CHECK_INT(lim.max_seqs, GR_SEQS);
    int maxn[GR_N], len[2][GR_N], peak = 0;
    for (int i = 0; i < n; i++) maxn[i] = 4 + (i * 11) % (MAX_NEW - 3);
    int32_t(*tok[2])[MAX_NEW];
    float *lg[2] = {NULL, NULL};
    const size_t per = (size_t)MAX_NEW * V;
    for (int e = 0; e < 2; e++) {
        tok[e] = calloc((size_t)n, sizeof *tok[e]);
        if (with_logits) lg[e] = calloc((size_t)n * per, sizeof(float));
        memset(len[e], 0, sizeof len[e]);
        run_cfg c = {.max_in_flight = GR_SEQS, .cancel_sample = -1, .max_new = maxn, .step_logits = lg[e], .pick = pick,
                     .ignore_eos = 1};   /* the tiny model stops within a few tokens: decode-only passes need more */
        CHECK_INT(generate(ops, b[e], &h, n, &c, tok[e], len[e], &peak), 0);
        CHECK_INT(peak, GR_SEQS);
    }
    int same_tok = 0, total = 0;
    long diff_logits = 0, rows = 0;
    for (int i = 0; i < n; i++) {
        CHECK_INT(len[1][i], len[0][i]);
        for (int k = 0; k < len[0][i] && k < len[1][i]; k++) {
            total++, same_tok += tok[0][i][k] == tok[1][i][k];
            if (with_logits) {
                rows++;
                diff_logits += memcmp(lg[0] + i * per + (size_t)k * V, lg[1] + i * per + (size_t)k * V, (size_t)V * 4) != 0;
            }
        }
    }
    int on[2];
    long cap[2], rep[2];
    for (int e = 0; e < 2; e++) qvl_cuda_batch_graph_stats(qvl_cuda_backend_batch(b[e]), &on[e], &cap[e], &rep[e]);
    printf("    decode graphs %s: on vs off %d of %d tokens identical, %ld of %ld picked rows' logits differ; "
           "graphs captured %ld, replayed %ld (off: %ld, %ld)\n",
           pick ? "(penalties)" : "(greedy)", same_tok, total, diff_logits, rows, cap[1], rep[1], cap[0], rep[0]);
    CHECK_INT(same_tok, total);
    CHECK_INT(diff_logits, 0);
    CHECK_INT(on[0], 0);
    CHECK_INT(on[1], 1);
    CHECK_INT(cap[0], 0);
    CHECK(cap[1] >= 2);   /* at least bucket 12 and one smaller one seen more than once */
    CHECK(rep[1] > cap[1]);
    for (int e = 0; e < 2; e++) free(tok[e]), free(lg[e]);
    free_heldout(&h);
    for (int e = 0; e < 2; e++) ops->close(b[e]);
}

TEST(gpu_decode_graphs_greedy) {
    if (!have_gpu()) return;
    graphs_on_off(NULL, 1);
}

TEST(gpu_decode_graphs_penalties) {
    if (!have_gpu()) return;
    const qvl_pick_params p = {0, 1.0f, 0, 1.0f, 1.3f, 0.5f};
    graphs_on_off(&p, 0);
}
