/* The batched engine on the CPU backend: a request gives bit-identical logits and tokens whether it
 * runs alone or among others (mixed prefill chunks and decodes, staggered starts and finishes,
 * several images of different sizes in one vision pass), the KV pool (blocks queue requests,
 * cancel frees them, a pool that fits one sequence still runs everything), and bad requests that
 * fail alone (corrupt images, a prompt longer than the context) among good ones. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/backend.h"
#include "engine/kv_pool.h"
#include "engine/request.h"
#include "model/context_len.h"
#include "model/model.h"
#include "qvl.h"
#include "test.h"
#include "tokenizer/tokenizer.h"
#include "util/file.h"

#define TINY "tests/fixtures/tiny"

static const char *const IMAGES[] = {TINY "/images/grad64.png", TINY "/images/odd80x112.png",
                                     TINY "/images/shapes96x128.png", TINY "/images/tall128x64.png"};

/* ---- the backend driven directly: logits alone vs batched ---- */

enum { NREQ = 4, MAX_STEPS = 6, MAX_LEN = 384, IMAGE_PAD = 151655 };

typedef struct {
    qvl_req r;
    int32_t *pos;       /* [3][n_ids] */
    int rope_delta;
    int n_run, n_gen, img_row, start_step, done;
    int32_t tokens[MAX_STEPS];
    float *logits;      /* [MAX_STEPS][vocab] */
    int32_t blocks[MAX_LEN / 64 + 1];
    int n_blocks;
} seq_case;

static int prepare_case(seq_case *c, qvl_tokenizer *tok, const qvl_config *cfg, int i) {
    memset(c, 0, sizeof *c);
    qvl_request req = {.image_path = i < 4 ? IMAGES[i] : NULL,
                       .prompt = i % 2 ? "What is written here?" : "Read the text in the picture, please."};
    qvl_gen_opts g = qvl_gen_opts_default();
    if (qvl_req_init(&c->r, &req, &g)) return -1;
    qvl_prep_ctx pc = {tok, qvl_config_image_params(cfg), MAX_LEN};
    pc.img.threads = 1;
    if (qvl_req_prepare(&c->r, &pc)) return -1;
    int grids[4][3];
    for (int k = 0; k < c->r.n_images; k++)
        grids[k][0] = c->r.pv[k].grid_t, grids[k][1] = c->r.pv[k].grid_h, grids[k][2] = c->r.pv[k].grid_w;
    c->pos = malloc((size_t)3 * c->r.n_ids * sizeof *c->pos);
    c->logits = malloc((size_t)MAX_STEPS * cfg->text.vocab_size * sizeof(float));
    return qvl_mrope_positions(c->r.ids, c->r.n_ids, cfg->image_token_id, (const int(*)[3])grids, c->r.n_images,
                               cfg->vision.spatial_merge_size, c->pos, &c->rope_delta);
}

static void free_case(seq_case *c) {
    qvl_req_free(&c->r);
    free(c->pos);
    free(c->logits);
}

/* Runs the cases on slots 0..n-1 together: case k starts at step start_step (its images encoded in
 * one pass with the others starting then), prompts go in chunks of `chunk` tokens under a budget
 * of `budget` rows, each case generates MAX_STEPS tokens (greedy), then its slot is freed. */
static int drive(const qvl_backend_ops *ops, qvl_backend *be, qvl_kv_pool *kv, seq_case **cs, int n, int chunk,
                 int budget, int vocab) {
    qvl_batch b;
    if (qvl_batch_init(&b, budget)) return -1;
    int32_t picked[NREQ];
    float *lg = malloc((size_t)NREQ * vocab * sizeof(float));
    qvl_pick_params greedy = {0, 1.0f, 0, 1.0f, 1.0f, 0.0f};
    int rc = 0;
    for (int step = 0; step < 200 && !rc; step++) {
        /* Newly started sequences: slot, blocks, one vision pass for all their images. */
        const qvl_pixel_values *pv[NREQ * 2];
        int seqs[NREQ * 2], n_pv = 0, active = 0;
        for (int k = 0; k < n; k++) {
            seq_case *c = cs[k];
            if (c->start_step == step) {
                if (ops->seq_begin(be, k, &greedy, NULL, 0, c->r.ids, c->r.n_ids) ||
                    qvl_kv_pool_reserve(kv, k, c->r.n_ids + MAX_STEPS)) {
                    rc = -1;
                    break;
                }
                const int32_t *t = qvl_kv_pool_table(kv, k, &c->n_blocks);
                memcpy(c->blocks, t, (size_t)c->n_blocks * sizeof *t);
                if (ops->seq_blocks(be, k, c->blocks, c->n_blocks)) rc = -1;
                for (int i = 0; i < c->r.n_images; i++) pv[n_pv] = &c->r.pv[i], seqs[n_pv++] = k;
            }
            active += c->start_step <= step && !c->done;
        }
        if (rc || (n_pv && ops->encode_images(be, pv, seqs, n_pv))) {
            rc = -1;
            break;
        }
        if (!active && step > 0) {
            int later = 0;
            for (int k = 0; k < n; k++) later += cs[k]->start_step > step;
            if (!later) break;
        }
        qvl_batch_clear(&b);
        for (int k = 0; k < n; k++) {   /* decodes */
            seq_case *c = cs[k];
            if (c->start_step > step || c->done || c->n_run < c->r.n_ids) continue;
            int kvi = c->r.n_ids + c->n_gen - 1, p = kvi + c->rope_delta;
            int32_t pos[3] = {p, p, p};
            qvl_batch_add(&b, c->tokens[c->n_gen - 1], pos, k, kvi, -1, 1);
        }
        for (int k = 0; k < n; k++) {   /* prompt chunks */
            seq_case *c = cs[k];
            if (c->start_step > step || c->n_run >= c->r.n_ids) continue;
            int cnt = c->r.n_ids - c->n_run;
            if (cnt > chunk) cnt = chunk;
            if (cnt > b.capacity - b.n_tokens) cnt = b.capacity - b.n_tokens;
            for (int t = c->n_run; t < c->n_run + cnt; t++) {
                int32_t pos[3] = {c->pos[t], c->pos[c->r.n_ids + t], c->pos[2 * c->r.n_ids + t]};
                int img = c->r.n_images && c->r.ids[t] == IMAGE_PAD ? c->img_row++ : -1;
                qvl_batch_add(&b, c->r.ids[t], pos, k, t, img, t == c->r.n_ids - 1);
            }
            c->n_run += cnt;
        }
        if (!b.n_tokens) continue;
        if (ops->run_batch(be, &b, picked, lg)) {
            rc = -1;
            break;
        }
        for (int i = 0, j = 0; i < b.n_tokens; i++) {
            if (!b.pick[i]) continue;
            seq_case *c = cs[b.seq[i]];
            memcpy(c->logits + (size_t)c->n_gen * vocab, lg + (size_t)j * vocab, (size_t)vocab * sizeof(float));
            c->tokens[c->n_gen++] = picked[j++];
            if (c->n_gen == 1) ops->seq_drop_images(be, b.seq[i]);
            if (c->n_gen == MAX_STEPS) {
                c->done = 1;
                ops->seq_free(be, b.seq[i]);
                qvl_kv_pool_release(kv, b.seq[i]);
            }
        }
    }
    for (int k = 0; k < n; k++)
        if (!cs[k]->done) rc = -1;
    free(lg);
    qvl_batch_free(&b);
    return rc;
}

static void batched_equals_alone_kv(const char *model, int kv_dtype) {
    const qvl_backend_ops *ops = qvl_backend_find("cpu");
    CHECK(ops != NULL);
    if (!ops) return;
    qvl_backend_opts bo = {.model_dir = model, .threads = 2, .max_model_len = MAX_LEN, .max_seqs = NREQ,
                           .token_budget = 64, .kv_dtype = kv_dtype};
    qvl_backend *be = ops->open(&bo);
    if (!be) {
        test_fail(__FILE__, __LINE__, "open %s: %s", model, qvl_last_error());
        return;
    }
    qvl_backend_limits lim;
    ops->limits(be, &lim);
    CHECK_INT(lim.max_seqs, NREQ);
    CHECK_INT(lim.kv_block_tokens, 64);
    CHECK_INT(lim.token_budget, 64);
    CHECK_INT(lim.kv_blocks, NREQ * (MAX_LEN / 64));
    const qvl_config *cfg = ops->config(be);
    CHECK_INT(cfg->image_token_id, IMAGE_PAD);
    int V = cfg->text.vocab_size;
    qvl_tokenizer *tok = qvl_tokenizer_load(model);
    CHECK(tok != NULL);
    seq_case alone[NREQ], many[NREQ];
    int ok = tok != NULL;
    for (int i = 0; i < NREQ && ok; i++)
        ok = !prepare_case(&alone[i], tok, cfg, i) && !prepare_case(&many[i], tok, cfg, i);
    CHECK(ok);
    qvl_kv_pool kv;
    CHECK_INT(qvl_kv_pool_init(&kv, lim.kv_blocks, lim.kv_block_tokens, lim.max_seqs, lim.max_model_len), 0);
    if (ok) {
        /* Alone: one sequence at a time, its prompt whole, on slot 0. */
        for (int i = 0; i < NREQ && ok; i++) {
            seq_case *c = &alone[i];
            ok = !drive(ops, be, &kv, &c, 1, MAX_LEN, MAX_LEN > lim.token_budget ? lim.token_budget : MAX_LEN, V);
        }
        CHECK(ok);
        CHECK_INT(qvl_kv_pool_used(&kv), 0);
        /* Together: staggered starts (0, 0, 1, 3), prompts in chunks of 13 under 64 rows, so that
         * steps mix decodes with prompt chunks of other sequences and images of different sizes
         * share a vision pass; the slots also differ from the lone runs' slot 0. */
        seq_case *cs[NREQ];
        int starts[NREQ] = {0, 0, 1, 3};
        for (int i = 0; i < NREQ; i++) cs[i] = &many[i], many[i].start_step = starts[i];
        CHECK_INT(drive(ops, be, &kv, cs, NREQ, 13, lim.token_budget, V), 0);
        CHECK_INT(qvl_kv_pool_used(&kv), 0);
        for (int i = 0; i < NREQ; i++) {
            CHECK_INT(many[i].n_gen, MAX_STEPS);
            CHECK(!memcmp(many[i].tokens, alone[i].tokens, sizeof many[i].tokens));
            CHECK(!memcmp(many[i].logits, alone[i].logits, (size_t)MAX_STEPS * V * sizeof(float)));
        }
        /* The logits are real scores (not all zero) and differ between requests. */
        float mx = 0;
        for (int k = 0; k < V; k++) mx = alone[0].logits[k] > mx ? alone[0].logits[k] : mx;
        CHECK(mx > 0);
        CHECK(memcmp(alone[0].logits, alone[1].logits, (size_t)V * sizeof(float)) != 0);
    }
    for (int i = 0; i < NREQ; i++) free_case(&alone[i]), free_case(&many[i]);
    qvl_kv_pool_free(&kv);
    qvl_tokenizer_free(tok);
    ops->close(be);
}

static void batched_equals_alone(const char *model) { batched_equals_alone_kv(model, QVL_KV_BF16); }

TEST(engine_batch_logits_identical_alone_tied) { batched_equals_alone(TINY "/tied"); }
TEST(engine_batch_logits_identical_alone_untied) { batched_equals_alone(TINY "/untied"); }
TEST(engine_batch_logits_identical_alone_tiny_ocr) { batched_equals_alone("models/qvl-tiny-ocr"); }
/* The FP8 KV cache (e4m3 blocks, backend/cpu/kv_fp8.h): still the same bits batched or alone. */
TEST(engine_batch_logits_identical_alone_kv_fp8_tied) { batched_equals_alone_kv(TINY "/tied", QVL_KV_FP8); }
TEST(engine_batch_logits_identical_alone_kv_fp8_tiny_ocr) {
    batched_equals_alone_kv("models/qvl-tiny-ocr", QVL_KV_FP8);
}

/* The FP8 KV cache against the float32 one on qvl-tiny-ocr, each request alone: the first pick's logits
 * (the same prompt through both caches) within a relative L2 of KV_FP8_LOGITS_BAR, and the greedy tokens.
 * e4m3 keeps 3 mantissa bits (a rounding error up to 2^-4 of each K and V element; this model's K and V
 * have rms ~1 and |x| < 10, so the scale of 1.0 puts ~1.5% of them in the subnormal range), and the
 * 6-layer, 64-wide model carries it to the logits: measured 0.127 at most over these four prompts (their
 * images are the tiny fixtures', not text renders; bench/results/2026-12-06-kv-fp8-cpu). The bar is
 * twice that; an unrounded cache (0, checked apart), a wrong row or a wrong scale (O(1)) fall outside. */
#define KV_FP8_LOGITS_BAR 0.25
TEST(engine_batch_kv_fp8_logits_near_float_kv) {
    const char *model = "models/qvl-tiny-ocr";
    const qvl_backend_ops *ops = qvl_backend_find("cpu");
    qvl_backend *be[2] = {NULL, NULL};
    for (int k = 0; k < 2; k++) {
        qvl_backend_opts bo = {.model_dir = model, .threads = 2, .max_model_len = MAX_LEN, .max_seqs = 1,
                               .token_budget = MAX_LEN, .kv_dtype = k ? QVL_KV_FP8 : QVL_KV_BF16};
        be[k] = ops->open(&bo);
        CHECK(be[k] != NULL);
    }
    if (!be[0] || !be[1]) {
        for (int k = 0; k < 2; k++) ops->close(be[k]);
        return;
    }
    /* The backend's own account of its KV bytes: a quarter of the float32 cache's. */
    CHECK_INT(ops->plan(be[1])->kv_dtype, QVL_PLAN_KV_FP8);
    CHECK_NEAR(ops->plan(be[1])->kv_cache * 4, ops->plan(be[0])->kv_cache, 1e-9);
    const qvl_config *cfg = ops->config(be[0]);
    int V = cfg->text.vocab_size;
    qvl_tokenizer *tok = qvl_tokenizer_load(model);
    CHECK(tok != NULL);
    double worst = 0;
    int same_tokens = 0, total_tokens = 0;
    for (int i = 0; i < NREQ && tok; i++) {
        seq_case c[2];
        int ok = !prepare_case(&c[0], tok, cfg, i) && !prepare_case(&c[1], tok, cfg, i);
        CHECK(ok);
        for (int k = 0; k < 2 && ok; k++) {
            qvl_kv_pool kv;
            qvl_backend_limits lim;
            ops->limits(be[k], &lim);
            CHECK_INT(qvl_kv_pool_init(&kv, lim.kv_blocks, lim.kv_block_tokens, 1, lim.max_model_len), 0);
            seq_case *cp = &c[k];
            CHECK_INT(drive(ops, be[k], &kv, &cp, 1, MAX_LEN, lim.token_budget, V), 0);
            qvl_kv_pool_free(&kv);
        }
        if (ok) {
            double num = 0, den = 0;
            for (int v = 0; v < V; v++) {
                double d = (double)c[1].logits[v] - c[0].logits[v];
                num += d * d, den += (double)c[0].logits[v] * c[0].logits[v];
            }
            double rel = den > 0 ? sqrt(num / den) : 1;
            worst = rel > worst ? rel : worst;
            CHECK(rel > 0);   /* the FP8 cache is really rounded */
            for (int t = 0; t < MAX_STEPS; t++) same_tokens += c[0].tokens[t] == c[1].tokens[t];
            total_tokens += MAX_STEPS;
        }
        free_case(&c[0]), free_case(&c[1]);
    }
    fprintf(stderr, "kv fp8 vs float32 KV, qvl-tiny-ocr, %d requests: first-pick logits relative L2 at most %.3g "
            "(bar %.2g); greedy tokens %d of %d identical\n", NREQ, worst, KV_FP8_LOGITS_BAR, same_tokens,
            total_tokens);
    CHECK(worst < KV_FP8_LOGITS_BAR);
    CHECK(same_tokens >= total_tokens - MAX_STEPS);   /* at most one request's tokens part ways */
    qvl_tokenizer_free(tok);
    for (int k = 0; k < 2; k++) ops->close(be[k]);
}

/* The quantized CPU paths (FP8 with per-row dynamic activation quantization, AWQ int4) are row
 * independent too: text prompts of different lengths (no tokenizer in these fixtures: ids drawn
 * below the 1024-token vocabulary, avoiding the image pad) batched vs alone. */
static void quantized_batched_equals_alone(const char *model) {
    const qvl_backend_ops *ops = qvl_backend_find("cpu");
    qvl_backend_opts bo = {.model_dir = model, .threads = 2, .max_model_len = MAX_LEN, .max_seqs = NREQ,
                           .token_budget = 64};
    qvl_backend *be = ops->open(&bo);
    if (!be) {
        test_fail(__FILE__, __LINE__, "open %s: %s", model, qvl_last_error());
        return;
    }
    qvl_backend_limits lim;
    ops->limits(be, &lim);
    const qvl_config *cfg = ops->config(be);
    int V = cfg->text.vocab_size;
    CHECK_INT(V, 1024);
    seq_case alone[NREQ], many[NREQ];
    const int lens[NREQ] = {40, 75, 9, 130};
    uint32_t x = 12345;
    for (int i = 0; i < NREQ; i++) {
        seq_case *cs2[2] = {&alone[i], &many[i]};
        int32_t ids[130];
        for (int t = 0; t < lens[i]; t++) {
            x = x * 1103515245u + 12345u;
            ids[t] = (int32_t)((x >> 8) % 990);   /* below the image pad (1000) */
        }
        for (int k = 0; k < 2; k++) {
            seq_case *c = cs2[k];
            memset(c, 0, sizeof *c);
            c->r.n_ids = lens[i];
            c->r.ids = malloc((size_t)lens[i] * sizeof *c->r.ids);
            memcpy(c->r.ids, ids, (size_t)lens[i] * sizeof *ids);
            c->pos = malloc((size_t)3 * lens[i] * sizeof *c->pos);
            for (int a = 0; a < 3; a++)
                for (int t = 0; t < lens[i]; t++) c->pos[a * lens[i] + t] = t;
            c->logits = malloc((size_t)MAX_STEPS * V * sizeof(float));
        }
    }
    qvl_kv_pool kv;
    CHECK_INT(qvl_kv_pool_init(&kv, lim.kv_blocks, lim.kv_block_tokens, lim.max_seqs, lim.max_model_len), 0);
    int ok = 1;
    for (int i = 0; i < NREQ && ok; i++) {
        seq_case *c = &alone[i];
        ok = !drive(ops, be, &kv, &c, 1, MAX_LEN, lim.token_budget, V);
    }
    CHECK(ok);
    seq_case *cs[NREQ];
    int starts[NREQ] = {0, 1, 1, 2};
    for (int i = 0; i < NREQ; i++) cs[i] = &many[i], many[i].start_step = starts[i];
    CHECK_INT(drive(ops, be, &kv, cs, NREQ, 11, lim.token_budget, V), 0);
    for (int i = 0; i < NREQ; i++) {
        CHECK(!memcmp(many[i].tokens, alone[i].tokens, sizeof many[i].tokens));
        CHECK(!memcmp(many[i].logits, alone[i].logits, (size_t)MAX_STEPS * V * sizeof(float)));
        free_case(&alone[i]);
        free_case(&many[i]);
    }
    qvl_kv_pool_free(&kv);
    ops->close(be);
}

TEST(engine_batch_logits_identical_alone_fp8) { quantized_batched_equals_alone("tests/fixtures/quant/fp8"); }
TEST(engine_batch_logits_identical_alone_awq) { quantized_batched_equals_alone("tests/fixtures/quant/awq"); }

/* Several images of different sizes in one vision pass give each image's features bit for bit. */
TEST(engine_batch_vision_pass_of_several_sizes) {
    qvl_model *m = qvl_model_open(TINY "/untied", 2);
    CHECK(m != NULL);
    if (!m) return;
    const qvl_config *cfg = qvl_model_config(m);
    qvl_image_params ip = qvl_config_image_params(cfg);
    qvl_pixel_values pv[4];
    const qvl_pixel_values *pp[4];
    qvl_vision_out one[4], many[4];
    for (int i = 0; i < 4; i++) {
        qvl_image img;
        CHECK_INT(qvl_image_load(IMAGES[i], &img), 0);
        CHECK_INT(qvl_image_preprocess(&img, &ip, &pv[i]), 0);
        qvl_image_free(&img);
        pp[i] = &pv[i];
        CHECK_INT(qvl_model_encode_image(m, &pv[i], &one[i]), 0);
    }
    CHECK(pv[0].num_patches != pv[1].num_patches && pv[1].num_patches != pv[2].num_patches);
    CHECK_INT(qvl_model_encode_images(m, pp, 4, many), 0);
    int D = cfg->text.hidden_size;
    for (int i = 0; i < 4; i++) {
        CHECK_INT(many[i].n_tokens, one[i].n_tokens);
        CHECK(!memcmp(many[i].embeds, one[i].embeds, (size_t)one[i].n_tokens * D * sizeof(float)));
        for (int j = 0; j < one[i].n_deepstack; j++)
            CHECK(!memcmp(many[i].deepstack[j], one[i].deepstack[j], (size_t)one[i].n_tokens * D * sizeof(float)));
        qvl_vision_out_free(&one[i]);
        qvl_vision_out_free(&many[i]);
        qvl_pixel_values_free(&pv[i]);
    }
    /* A bad grid fails the pass and keeps nothing. */
    qvl_pixel_values bad = {0};
    float px[4] = {0};
    bad.data = px, bad.row_len = 1, bad.grid_t = bad.grid_h = bad.grid_w = 1, bad.num_patches = 1;
    const qvl_pixel_values *pb[1] = {&bad};
    qvl_vision_out o[1];
    CHECK_INT(qvl_model_encode_images(m, pb, 1, o), -1);
    CHECK(o[0].embeds == NULL);
    qvl_model_close(m);
}

/* ---- the KV pool ---- */

TEST(engine_batch_kv_pool_blocks) {
    qvl_kv_pool p;
    CHECK_INT(qvl_kv_pool_init(&p, 5, 64, 3, 200), 0);
    CHECK_INT(p.max_blocks_per_seq, 4);
    CHECK_INT(qvl_kv_pool_blocks_for(&p, 1), 1);
    CHECK_INT(qvl_kv_pool_blocks_for(&p, 64), 1);
    CHECK_INT(qvl_kv_pool_blocks_for(&p, 65), 2);
    CHECK_INT(qvl_kv_pool_reserve(&p, 0, 130), 0);   /* 3 blocks */
    CHECK_INT(qvl_kv_pool_used(&p), 3);
    CHECK_INT(qvl_kv_pool_reserve(&p, 1, 130), -1);  /* 2 free: nothing taken */
    CHECK_INT(qvl_kv_pool_used(&p), 3);
    CHECK_INT(qvl_kv_pool_reserve(&p, 1, 100), 0);
    CHECK_INT(qvl_kv_pool_used(&p), 5);
    CHECK_INT(qvl_kv_pool_reserve(&p, 2, 1), -1);
    CHECK_INT(qvl_kv_pool_reserve(&p, 0, 300), -1);  /* beyond one table */
    int n;
    const int32_t *t0 = qvl_kv_pool_table(&p, 0, &n);
    CHECK_INT(n, 3);
    CHECK_INT(t0[0], 0);
    CHECK_INT(t0[1], 1);
    CHECK_INT(t0[2], 2);
    const int32_t *t1 = qvl_kv_pool_table(&p, 1, &n);
    CHECK_INT(n, 2);
    CHECK_INT(t1[0], 3);
    qvl_kv_pool_release(&p, 0);
    CHECK_INT(qvl_kv_pool_used(&p), 2);
    CHECK_INT(qvl_kv_pool_reserve(&p, 2, 190), 0);   /* the freed blocks, in their order */
    const int32_t *t2 = qvl_kv_pool_table(&p, 2, &n);
    CHECK_INT(n, 3);
    CHECK_INT(t2[0], 0);
    CHECK_INT(t2[2], 2);
    qvl_kv_pool_free(&p);
    CHECK(qvl_backend_find("no-such-device") == NULL);
    CHECK_CONTAINS(qvl_last_error(), "no-such-device: this build has no such backend");
    CHECK_INT(qvl_last_error_code(), QVL_ERR_UNSUPPORTED);
}

/* ---- the engine ---- */

static qvl_engine *open_engine(const char *model, long max_model_len, int max_batch, int kv_blocks) {
    qvl_engine_opts o = qvl_engine_opts_default();
    o.model_dir = model;
    o.device = QVL_DEVICE_CPU;
    o.threads = 2;
    o.max_model_len = max_model_len;
    o.max_batch = max_batch;
    o.kv_blocks = kv_blocks;
    qvl_engine *e = qvl_engine_open(&o);
    if (!e) test_fail(__FILE__, __LINE__, "qvl_engine_open(%s): %s", model, qvl_last_error());
    return e;
}

typedef struct {
    qvl_event ev[32];
    int seen[32];
    int max_used, max_running;
} run_log;

/* Steps until idle, collecting events by id - base; records the most KV blocks and sequences in use. */
static void run_all(qvl_engine *e, qvl_req_id base, run_log *log) {
    for (int guard = 0; guard < 100000; guard++) {
        int left = qvl_step(e);
        qvl_engine_stats st;
        qvl_engine_stats_get(e, &st);
        if (st.kv_blocks_used > log->max_used) log->max_used = st.kv_blocks_used;
        if (st.running > log->max_running) log->max_running = st.running;
        qvl_event ev;
        while (qvl_poll(e, &ev)) {
            int k = (int)(ev.id - base);
            if (k >= 0 && k < 32) log->ev[k] = ev, log->seen[k]++;
            else qvl_result_free(&ev.result);
        }
        if (left <= 0) break;
    }
}

static int same_tokens(const qvl_result *a, const qvl_result *b) {
    return a->n_tokens == b->n_tokens && !memcmp(a->token_ids, b->token_ids, (size_t)a->n_tokens * sizeof(int32_t));
}

/* Requests of every kind at once, with a few bad ones; the good ones match their lone runs, with
 * sampling too; the bad ones fail alone with their own error and code. */
static void mixed_batch(const char *model, int kv_blocks, int max_batch, int want_max_running, int min_new) {
    char corrupt[600], truncated[600];
    snprintf(corrupt, sizeof corrupt, "%s/corrupt.png", test_tmpdir());
    CHECK_INT(qvl_write_file_atomic(corrupt, "\x89PNG\r\n\x1a\nnot really a png", 24), 0);
    size_t n = 0;
    char *png = qvl_read_file(IMAGES[2], &n);
    CHECK(png != NULL);
    snprintf(truncated, sizeof truncated, "%s/truncated.png", test_tmpdir());
    CHECK_INT(qvl_write_file_atomic(truncated, png, n / 2), 0);
    free(png);
    char long_prompt[4000] = "";
    for (int i = 0; i < 300; i++) strcat(long_prompt, "word ");

    enum { N = 9 };
    qvl_request reqs[N] = {
        {.image_path = IMAGES[0], .prompt = "Read the text."},
        {.image_path = corrupt, .prompt = "Read the text."},
        {.image_path = IMAGES[1], .prompt = "What is written here?"},
        {.prompt = long_prompt},
        {.image_path = IMAGES[2], .prompt = "Read the text."},
        {.image_path = truncated, .prompt = "Read the text."},
        {.prompt = "Say something."},
        {.image_path = IMAGES[3], .prompt = "What is written here?"},
        {.image_path = IMAGES[1], .prompt = "Read it."},
    };
    int bad[N] = {0, 1, 0, 1, 0, 1, 0, 0, 0};
    qvl_gen_opts g[N];
    for (int i = 0; i < N; i++) {
        g[i] = qvl_gen_opts_default();
        g[i].max_new_tokens = min_new + i % 4;   /* finishing at different steps */
        if (i == 7 || i == 8) g[i].sample = 1, g[i].seed = 42 + i, g[i].temperature = 1.5;
    }
    /* Alone: a fresh engine, one request at a time. */
    qvl_engine *e1 = open_engine(model, 256, 1, 0);
    if (!e1) return;
    qvl_result alone[N];
    for (int i = 0; i < N; i++) {
        int rc = qvl_generate(e1, &reqs[i], &g[i], &alone[i]);
        CHECK_INT(rc, bad[i] ? -1 : 0);
        if (i == 3) CHECK_INT(qvl_last_error_code(), QVL_ERR_TOO_LONG);
    }
    qvl_engine_close(e1);

    qvl_engine *e = open_engine(model, 256, max_batch, kv_blocks);
    if (!e) return;
    qvl_engine_stats st;
    qvl_engine_stats_get(e, &st);
    CHECK_INT(st.kv_block_tokens, 64);
    if (kv_blocks > 0) CHECK_INT(st.kv_blocks_total, kv_blocks);
    qvl_req_id base = -1;
    for (int i = 0; i < N; i++) {
        qvl_req_id id = qvl_submit(e, &reqs[i], &g[i]);
        if (i == 0) base = id;
        CHECK_INT(id, base + i);
    }
    run_log *log = calloc(1, sizeof *log);
    run_all(e, base, log);
    for (int i = 0; i < N; i++) {
        CHECK_INT(log->seen[i], 1);
        qvl_event *ev = &log->ev[i];
        CHECK_INT(ev->status, bad[i] ? -1 : 0);
        if (bad[i]) {
            if (i == 1) CHECK_CONTAINS(ev->error, "corrupt.png");
            if (i == 5) CHECK_CONTAINS(ev->error, "truncated.png");
            if (i == 3) {
                CHECK_CONTAINS(ev->error, "exceeds max-model-len 256");
                CHECK_INT(ev->code, QVL_ERR_TOO_LONG);
            } else {
                CHECK_INT(ev->code, QVL_ERR_INPUT);
            }
        } else {
            CHECK(same_tokens(&ev->result, &alone[i]));
            CHECK_STR(ev->result.text, alone[i].text);
            CHECK_INT(ev->result.prompt_tokens, alone[i].prompt_tokens);
            CHECK(ev->result.n_tokens >= 1);
            CHECK(ev->result.total_s >= ev->result.decode_s);
            qvl_result_free(&alone[i]);
        }
        qvl_result_free(&ev->result);
    }
    CHECK(log->max_running <= want_max_running);
    if (want_max_running > 1) CHECK(log->max_running > 1);
    if (kv_blocks > 0) CHECK(log->max_used <= kv_blocks);
    qvl_engine_stats_get(e, &st);
    CHECK_INT(st.kv_blocks_used, 0);
    CHECK_INT(st.running, 0);
    CHECK_INT(st.waiting, 0);
    CHECK_INT(st.requests_finished, 6);
    CHECK_INT(st.requests_failed, 3);
    /* The time split: every row of a forward pass is a prompt token or a decode row (each answer token
     * but the first, which the prompt's last row picks); the five images went through vision passes. */
    CHECK_INT(st.step_rows, st.prompt_tokens + st.generated_tokens - st.requests_finished);
    CHECK(st.vision_passes >= 1 && st.vision_passes <= 5 && st.vision_s > 0);
    CHECK(st.prefill_steps >= 1 && st.prefill_steps_s > 0);
    CHECK(st.decode_steps >= min_new - 1 && st.decode_steps_s > 0);
    CHECK(st.wait_s >= 0);
    free(log);
    qvl_engine_close(e);
}

TEST(engine_batch_bad_requests_fail_alone) { mixed_batch(TINY "/tied", 0, 0, 16, 3); }
/* More requests than KV blocks: a request reserves its prompt (< 60 tokens) and 64-67 answer
 * tokens, 2 blocks of 64; a pool of 5 blocks holds two sequences at once, the rest queue. */
TEST(engine_batch_more_requests_than_blocks) { mixed_batch(TINY "/untied", 5, 0, 2, 64); }
/* A pool that fits one sequence (3 blocks) runs everything, one at a time. */
TEST(engine_batch_pool_of_one_sequence) { mixed_batch(TINY "/tied", 3, 0, 1, 64); }

/* Cancel in the middle of decoding: the sequence's blocks are free when the step returns; the
 * others go on unaffected. */
TEST(engine_batch_cancel_mid_decode_frees_blocks) {
    qvl_engine *e = open_engine(TINY "/tied", 512, 4, 0);
    if (!e) return;
    qvl_gen_opts g = qvl_gen_opts_default();
    g.max_new_tokens = 40;
    qvl_request a = {.image_path = IMAGES[0], .prompt = "Read the text."};
    qvl_request b = {.image_path = IMAGES[2], .prompt = "Read the text."};
    qvl_result ra;
    qvl_gen_opts g1 = g;
    CHECK_INT(qvl_generate(e, &a, &g1, &ra), 0);
    qvl_req_id ia = qvl_submit(e, &a, &g), ib = qvl_submit(e, &b, &g);
    qvl_engine_stats st;
    int used_both = 0;
    for (int i = 0; i < 4; i++) qvl_step(e);   /* both past their prompts, decoding */
    qvl_engine_stats_get(e, &st);
    CHECK_INT(st.running, 2);
    used_both = st.kv_blocks_used;
    CHECK(used_both >= 2);
    CHECK_INT(qvl_cancel(e, ib), 0);
    qvl_step(e);
    qvl_engine_stats_get(e, &st);
    CHECK_INT(st.running, 1);
    CHECK(st.kv_blocks_used < used_both);
    CHECK(st.kv_blocks_used >= 1);
    qvl_event ev;
    CHECK_INT(qvl_poll(e, &ev), 1);
    CHECK(ev.id == ib);
    CHECK_INT(ev.code, QVL_ERR_CANCELLED);
    CHECK(ev.result.n_tokens >= 2 && ev.result.n_tokens < 40);
    qvl_result_free(&ev.result);
    CHECK_INT(qvl_cancel(e, ib), -1);
    while (qvl_step(e) > 0) {}
    CHECK_INT(qvl_poll(e, &ev), 1);
    CHECK(ev.id == ia);
    CHECK_INT(ev.status, 0);
    CHECK(same_tokens(&ev.result, &ra));
    qvl_result_free(&ev.result);
    qvl_result_free(&ra);
    qvl_engine_stats_get(e, &st);
    CHECK_INT(st.kv_blocks_used, 0);
    qvl_engine_close(e);
}

/* Submit and cancel from another thread while this one steps (qvl.h's thread rules): every
 * request gets exactly one event; the ones not cancelled match their lone runs. */
typedef struct {
    qvl_engine *e;
    qvl_req_id ids[12];
    int cancel_rc[12];
    const qvl_request *reqs;
    const qvl_gen_opts *g;
} submitter;

static void *submit_thread(void *arg) {
    submitter *s = arg;
    for (int i = 0; i < 12; i++) {
        s->ids[i] = qvl_submit(s->e, &s->reqs[i % 3], s->g);
        s->cancel_rc[i] = 1;   /* not asked */
        if (i % 4 == 3) s->cancel_rc[i - 2] = qvl_cancel(s->e, s->ids[i - 2]);   /* 0, or -1: already done */
    }
    return NULL;
}

TEST(engine_batch_submit_and_cancel_from_another_thread) {
    qvl_engine *e = open_engine(TINY "/tied", 256, 4, 0);
    if (!e) return;
    qvl_request reqs[3] = {{.image_path = IMAGES[0], .prompt = "Read the text."},
                           {.image_path = IMAGES[3], .prompt = "What is written here?"},
                           {.prompt = "Say something."}};
    qvl_gen_opts g = qvl_gen_opts_default();
    g.max_new_tokens = 6;
    qvl_result alone[3];
    for (int i = 0; i < 3; i++) CHECK_INT(qvl_generate(e, &reqs[i], &g, &alone[i]), 0);
    submitter s = {.e = e, .reqs = reqs, .g = &g};
    pthread_t th;
    CHECK_INT(pthread_create(&th, NULL, submit_thread, &s), 0);
    int got = 0, joined = 0, seen[12] = {0};
    qvl_event evs[12];
    for (int guard = 0; guard < 200000 && got < 12; guard++) {
        qvl_step(e);
        qvl_event ev;
        while (qvl_poll(e, &ev)) {
            int k = -1;
            if (!joined) {   /* ids are known once the thread is done: keep the event until then */
                pthread_join(th, NULL);
                joined = 1;
            }
            for (int i = 0; i < 12; i++)
                if (s.ids[i] == ev.id) k = i;
            CHECK(k >= 0);
            if (k < 0) {
                qvl_result_free(&ev.result);
                continue;
            }
            seen[k]++;
            evs[k] = ev;
            got++;
        }
    }
    if (!joined) pthread_join(th, NULL);
    CHECK_INT(got, 12);
    for (int i = 0; i < 12; i++) {
        CHECK_INT(seen[i], 1);
        if (seen[i] != 1) continue;
        if (s.cancel_rc[i] == 0 && evs[i].status) {
            CHECK_INT(evs[i].code, QVL_ERR_CANCELLED);
        } else {
            CHECK_INT(evs[i].status, 0);
            CHECK(same_tokens(&evs[i].result, &alone[i % 3]));
        }
        qvl_result_free(&evs[i].result);
    }
    for (int i = 0; i < 3; i++) qvl_result_free(&alone[i]);
    qvl_engine_stats st;
    qvl_engine_stats_get(e, &st);
    CHECK_INT(st.kv_blocks_used, 0);
    CHECK_INT(st.running + st.waiting, 0);
    qvl_engine_close(e);
}
