/* The data plan is the batched engine's (eval/plan_fit.h): the KV pool for the sequences in flight,
 * the rows of a step and the images of a vision pass. On the real 2B config with the real tokenizer
 * and real image headers (host code), and the CPU engine run under a chosen fit (the tiny OCR
 * model): the plan grows with the batch as the buffers say, auto-fit never exceeds the budget and
 * makes the documented choice, the engine never holds more KV blocks than planned. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "eval/plan_fit.h"
#include "plan_fixture.h"
#include "test.h"
#include "util/error.h"

static const double MiB = 1048576.0;

/* The blocks each planned sample reserves (prompt + answer, at most the context), largest first,
 * counted here by hand from the settled data plan. */
static int needs_by_hand(const qvl_data_plan *dp, long ctx, int max_new, long *need) {
    int k = 0;
    for (long i = 0; i < dp->n; i++) {
        if (dp->samples[i].status != QVL_PLAN_OK) continue;
        long t = dp->samples[i].prompt_tokens + max_new;
        if (t > ctx) t = ctx;
        need[k++] = (t + 63) / 64;
    }
    for (int i = 0; i < k; i++)
        for (int j = i + 1; j < k; j++)
            if (need[j] > need[i]) {
                long x = need[i];
                need[i] = need[j], need[j] = x;
            }
    return k;
}

/* The plan the engine options of a fit give (the backend's batched plan), with `extra` blocks more. */
static double plan_total_with(const plan_fixture *f, const qvl_fit *r, long extra) {
    qvl_engine_opts eo = qvl_engine_opts_default();
    qvl_fit_engine_opts(r, &eo);
    qvl_plan_inputs in = {.max_model_len = eo.max_model_len, .max_image_tokens = eo.plan_image_tokens,
                          .sequences = eo.max_batch, .kv_blocks = eo.kv_blocks + extra,
                          .token_budget = eo.token_budget, .vision_tokens = eo.vision_tokens, .image_cache_tokens = eo.image_cache_tokens};
    qvl_mem_plan p;
    CHECK_INT(qvl_mem_plan_compute_inputs(&f->cfg, -1, &in, -1, &p), 0);
    return p.total;
}

/* --batch S: the pool holds the S largest samples at once (never less than one whole context), 7 MiB a
 * block on 2B; every other term but the per-sequence workspace stays; that grows by the per-slot
 * buffers: logits (vocab BF16), picking state (64 B), flags (vocab bytes), uniforms (context x 8 B),
 * decode attention partials (16 heads x 16 splits x 130 floats), and the block table + 3 ints. */
TEST(plan_fit_batch_plan_grows_with_the_batch_as_the_formula_says) {
    plan_fixture f;
    if (plan_fixture_setup(&f, "fitbatch.json")) return;
    qvl_fit r[PLAN_N_OK + 1];
    long need[PLAN_N_IMAGES];
    for (int s = 1; s <= PLAN_N_OK; s++) {
        qvl_fit_request rq = qvl_fit_request_default();
        rq.batch = s;
        CHECK_INT(plan_fixture_fit(&f, &rq, &r[s]), 0);
    }
    long ctx = r[1].max_model_len, per_seq = (ctx + 63) / 64;
    CHECK_INT(needs_by_hand(&f.dp, ctx, 128, need), PLAN_N_OK);
    CHECK_INT(r[1].largest_blocks, need[0]);
    double V = f.cfg.text.vocab_size;
    double per_slot = V * 2 + 64 + V + ctx * 8.0 + 16.0 * 16 * 130 * 4 + (3.0 + per_seq) * 4;
    long sum = 0;
    for (int s = 1; s <= PLAN_N_OK; s++) {
        sum += need[s - 1];
        long pool = sum > per_seq ? sum : per_seq;
        CHECK_INT(r[s].batch, s);
        CHECK_INT(r[s].batch_given, 1);
        CHECK_INT(r[s].plan.sequences, s);
        CHECK_INT(r[s].kv_blocks, pool);
        CHECK_INT(r[s].plan.kv_blocks, pool);
        CHECK_NEAR(r[s].plan.kv_cache, 2.0 * 28 * 1024 * 64 * 2 * pool / MiB, 1e-9);
        CHECK_NEAR(r[s].plan.vision_activations, r[1].plan.vision_activations, 0);
        CHECK_NEAR(r[s].plan.weights, r[1].plan.weights, 0);
        CHECK_INT(r[s].plan.token_budget, QVL_PLAN_TOKEN_BUDGET);
        CHECK_NEAR(r[s].plan.workspace - r[1].plan.workspace, (s - 1) * per_slot / MiB, 8.0 * 256 * s / MiB);
        if (s > 1) CHECK(r[s].plan.total > r[s - 1].plan.total);
    }
    /* the whole data at once: every sample's blocks */
    CHECK_INT(r[PLAN_N_OK].kv_blocks, sum);
    CHECK_CONTAINS(r[3].sized_for, "; batch 3 (--batch), KV pool ");
    plan_fixture_teardown(&f);
}

/* Auto-fit under budgets from "only a small cap fits" to "everything at once": never above the
 * budget; images whole whenever one sequence with whole images fits (full passes if they fit, else
 * lean); then the pool takes the rest up to what the batch's largest samples reserve, and the
 * batch is the most samples the pool holds at once. */
TEST(plan_fit_batch_auto_fit_never_exceeds_the_budget_and_prefers_whole_images) {
    plan_fixture f;
    if (plan_fixture_setup(&f, "fitbatch.json")) return;
    long budgets[] = {4700, 5000, 5200, 5600, 6000, 7000, 7800, 7850, 8500, 9000, 12000, 20000};
    enum { NB = sizeof budgets / sizeof budgets[0] };
    long prev_tokens = 0;
    int prev_batch = 0, n_capped = 0, n_lean_whole = 0, n_full = 0;
    for (int b = 0; b < NB; b++) {
        qvl_fit_request rq = qvl_fit_request_default();
        rq.gpu_mem_mib = budgets[b];
        rq.auto_fit = 1;
        qvl_fit r;
        if (plan_fixture_fit(&f, &rq, &r)) {
            CHECK_CONTAINS(qvl_error(), "is below what even a cap of 64 image tokens per image needs");
            CHECK(b == 0);   /* only the smallest budget */
            continue;
        }
        double budget = (double)budgets[b] - QVL_FIT_CONTEXT_MARGIN_MIB;
        CHECK(r.plan.total <= budget);
        CHECK_NEAR(plan_total_with(&f, &r, 0), r.plan.total, 0);   /* what the engine will be asked for */
        /* the pool: one whole context at least, never more than the batch's largest samples reserve,
         * and one block more would not fit unless it is all they reserve */
        long need[PLAN_N_IMAGES], ctx = r.max_model_len, per_seq = (ctx + 63) / 64;
        int k = needs_by_hand(&f.dp, ctx, 128, need);
        CHECK_INT(k, PLAN_N_OK);
        long big = 0, small = 0;
        for (int i = 0; i < r.batch; i++) big += need[i], small += need[k - 1 - i];
        CHECK_INT(r.kv_blocks_needed, big > per_seq ? big : per_seq);
        CHECK(r.kv_blocks >= per_seq && r.kv_blocks <= r.kv_blocks_needed);
        CHECK(r.kv_blocks == r.kv_blocks_needed || plan_total_with(&f, &r, 1) > budget);
        /* the batch: the pool holds that many of the smallest samples at once, and one sequence more
         * with a pool holding one sample more would not fit */
        CHECK(small <= r.kv_blocks);
        if (r.batch < k) {
            qvl_fit more = r;
            long pool = small + need[k - 1 - r.batch];
            more.batch = r.batch + 1;
            more.kv_blocks = pool > per_seq ? pool : per_seq;
            CHECK(plan_total_with(&f, &more, 0) > budget);
        }
        CHECK_INT(r.batch_given, 0);
        /* images whole first */
        qvl_fit_request whole = rq;
        whole.max_image_tokens = 16384;   /* the config's limit: every image whole, no auto-fit */
        qvl_fit w;
        if (r.auto_image_tokens > 0) {
            n_capped++;
            CHECK_INT(r.passes, QVL_FIT_PASSES_LEAN);
            CHECK_INT(plan_fixture_fit(&f, &whole, &w), -1);   /* even one sequence with whole images is over */
            CHECK_CONTAINS(qvl_error(), "below the plan for this data at these pixel settings");
            CHECK(r.plan_image_tokens <= r.auto_image_tokens);
        } else {
            CHECK_INT(r.plan_image_tokens, f.dp.largest_image_tokens);
            if (r.passes == QVL_FIT_PASSES_LEAN) {
                n_lean_whole++;
                CHECK_INT(r.plan.token_budget, QVL_PLAN_PREFILL_CHUNK);
                CHECK_INT(r.plan.vision_tokens, r.plan_image_tokens);
                CHECK_INT(r.plan.image_cache_tokens, r.plan_image_tokens);   /* one pass kept */
            } else {
                n_full++;
                CHECK_INT(r.plan.token_budget, QVL_PLAN_TOKEN_BUDGET);
            }
        }
        CHECK(r.plan_image_tokens >= prev_tokens);
        if (r.auto_image_tokens == 0) CHECK(r.batch >= prev_batch);
        prev_tokens = r.plan_image_tokens;
        prev_batch = r.auto_image_tokens == 0 ? r.batch : 0;
        /* the summary says it */
        cJSON *j = qvl_fit_json(&r, &f.dp, &rq);
        CHECK_INT(cJSON_GetObjectItem(j, "batch")->valueint, r.batch);
        CHECK_INT(cJSON_GetObjectItem(j, "kv_blocks")->valueint, r.kv_blocks);
        CHECK_INT(cJSON_GetObjectItem(j, "budget_mib")->valueint, budgets[b]);
        CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(j, "passes")), r.passes ? "lean" : "full");
        cJSON *af = cJSON_GetObjectItem(j, "auto_fit");
        if (r.auto_image_tokens > 0) CHECK_INT(cJSON_GetObjectItem(af, "batch")->valueint, r.batch);
        else CHECK(cJSON_IsNull(af));
        cJSON_Delete(j);
        if (budgets[b] == 20000) {   /* room for everything: the whole data in flight */
            CHECK_INT(r.batch, PLAN_N_OK);
            CHECK_INT(r.kv_blocks, r.kv_blocks_needed);
            CHECK_INT(r.passes, QVL_FIT_PASSES_FULL);
        }
    }
    /* each regime was reached */
    CHECK(n_capped >= 4);
    CHECK(n_lean_whole >= 1);
    CHECK(n_full >= 3);
    plan_fixture_teardown(&f);
}

/* --batch N is honoured: the pool of its N largest samples, the cap lowered for it under a budget, a
 * budget too small refused up front with the breakdown in one line. */
TEST(plan_fit_batch_explicit_batch_is_honoured_or_refused) {
    plan_fixture f;
    if (plan_fixture_setup(&f, "fitbatch.json")) return;
    qvl_fit_request rq = qvl_fit_request_default();
    rq.batch = 3, rq.auto_fit = 1, rq.gpu_mem_mib = 20000;
    qvl_fit r, one;
    CHECK_INT(plan_fixture_fit(&f, &rq, &r), 0);
    CHECK_INT(r.batch, 3);
    CHECK_INT(r.auto_image_tokens, 0);
    long need[PLAN_N_IMAGES];
    needs_by_hand(&f.dp, r.max_model_len, 128, need);
    CHECK_INT(r.kv_blocks, need[0] + need[1] + need[2]);
    /* 6500 MiB: whole images fit one sequence but not three: the cap is lowered for the batch */
    rq.gpu_mem_mib = 6500;
    CHECK_INT(plan_fixture_fit(&f, &rq, &r), 0);
    CHECK_INT(r.batch, 3);
    CHECK(r.auto_image_tokens > 0);
    CHECK(r.plan.total + QVL_FIT_CONTEXT_MARGIN_MIB <= 6500);
    needs_by_hand(&f.dp, r.max_model_len, 128, need);
    CHECK_INT(r.kv_blocks, need[0] + need[1] + need[2]);
    rq.batch = 0;
    CHECK_INT(plan_fixture_fit(&f, &rq, &one), 0);
    CHECK(one.auto_image_tokens > r.auto_image_tokens);   /* the plan's own batch keeps larger images */
    /* refused: pixel options given, and a budget below even the smallest cap */
    rq.batch = 3, rq.max_image_tokens = 8192;
    CHECK_INT(plan_fixture_fit(&f, &rq, &r), -1);
    CHECK_CONTAINS(qvl_error(), "gpu-mem: 6500 MiB is below the plan for this data at these pixel settings: ");
    CHECK_CONTAINS(qvl_error(), "blocks: 3 sequences of up to ");
    CHECK(strchr(qvl_error(), '\n') == NULL);
    rq.max_image_tokens = -1, rq.gpu_mem_mib = 4650;
    CHECK_INT(plan_fixture_fit(&f, &rq, &r), -1);
    CHECK_CONTAINS(qvl_error(), "gpu-mem: 4650 MiB is below what even a cap of 64 image tokens per image needs");
    CHECK_CONTAINS(qvl_error(), "3 sequences");
    plan_fixture_teardown(&f);
}

/* `qvl mem --data --batch N` prints the plan `qvl eval --batch N` makes, numbers included. */
TEST(plan_fit_batch_mem_cli_prints_the_batch_and_pool) {
    plan_fixture f;
    if (plan_fixture_setup(&f, "fitbatch.json")) return;
    qvl_fit_request rq = qvl_fit_request_default();
    rq.batch = 3, rq.auto_fit = 1;
    qvl_fit r;
    CHECK_INT(plan_fixture_fit(&f, &rq, &r), 0);
    char *path = plan_dataset_json("fitbatch.json"), *out = NULL, *err = NULL, want[256];
    CHECK_INT(test_qvl(&out, &err, "mem --model %s --data %s --images " PLAN_IMAGES " --batch 3", plan_model_2b(), path), 0);
    snprintf(want, sizeof want, "batch: 3 sequences in flight, KV pool %ld blocks of 64 tokens (%ld tokens), 4096 rows "
             "per step\n", r.kv_blocks, r.kv_blocks * 64);
    CHECK_CONTAINS(out, want);
    snprintf(want, sizeof want, "%-20s %10.2f MiB (%ld blocks of 64 tokens for 3 sequences of up to %ld tokens)",
             "kv_cache", r.plan.kv_cache, r.kv_blocks, r.max_model_len);
    CHECK_CONTAINS(out, want);
    snprintf(want, sizeof want, "%-20s %10.2f MiB", "total", r.plan.total);
    CHECK_CONTAINS(out, want);
    CHECK_CONTAINS(out, "; batch 3 (--batch), KV pool ");
    free(out), free(err);
    CHECK_INT(test_qvl(&out, &err, "mem --model %s --data %s --images " PLAN_IMAGES " --batch 3 --json", plan_model_2b(), path), 0);
    cJSON *j = cJSON_Parse(out);
    CHECK(j != NULL);
    if (j) {
        CHECK_INT(cJSON_GetObjectItem(j, "sequences")->valueint, 3);
        CHECK_INT(cJSON_GetObjectItem(j, "kv_blocks")->valueint, r.kv_blocks);
        CHECK_INT(cJSON_GetObjectItem(j, "token_budget")->valueint, 4096);
        CHECK_NEAR(cJSON_GetObjectItem(j, "total")->valuedouble, r.plan.total, 0.006);
        cJSON *dp = cJSON_GetObjectItem(j, "data_plan");
        CHECK_INT(cJSON_GetObjectItem(dp, "batch")->valueint, 3);
        CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(dp, "batch_from")), "--batch");
    }
    cJSON_Delete(j);
    free(out), free(err);
    /* a budget: the one line on stderr says the batch and the pool too */
    CHECK_INT(test_qvl(&out, &err, "mem --model %s --data %s --images " PLAN_IMAGES " --gpu-mem 6000", plan_model_2b(), path), 0);
    CHECK_CONTAINS(err, "qvl mem: auto-fit: at most ");
    CHECK_CONTAINS(err, "); batch ");
    CHECK_CONTAINS(err, ", KV pool ");
    free(out), free(err);
    CHECK_INT(test_qvl(NULL, &err, "mem --model %s --data %s --images " PLAN_IMAGES " --batch 3 --gpu-mem 4650", plan_model_2b(),
                       path), 1);
    CHECK_CONTAINS(err, "qvl: gpu-mem: 4650 MiB is below what even a cap of 64 image tokens per image needs: ");
    CHECK_CONTAINS(err, "3 sequences of up to ");
    free(err);
    CHECK_INT(test_qvl(NULL, &err, "mem --model %s --data %s --batch 0", plan_model_2b(), path), 2);
    CHECK_CONTAINS(err, "--batch 0: must be at least 1");
    free(err);
    free(path);
    plan_fixture_teardown(&f);
}

/* ---- the CPU engine run under a chosen fit ---- */

#define TINY_MODEL "models/qvl-tiny-ocr"
#define TINY_DATA "tests/fixtures/ocrbench/json/OCRBench.json"
enum { TINY_NEW = 20 };   /* context 47 + 20: two blocks for the longest prompts, one for most */

/* Runs every readable sample of ds through a CPU engine opened with the fit's options (kv_blocks: the
 * pool, or 0 for the CPU backend's own: a whole context per slot); returns the stats after. */
static void run_under_fit(const qvl_fit *r, const qvl_dataset *ds, const qvl_data_plan *dp, int kv_blocks,
                          qvl_engine_stats *st) {
    qvl_engine_opts o = qvl_engine_opts_default();
    o.model_dir = TINY_MODEL;
    o.device = QVL_DEVICE_CPU;
    o.threads = 2;
    qvl_fit_engine_opts(r, &o);
    o.kv_blocks = kv_blocks;
    qvl_engine *e = qvl_engine_open(&o);
    memset(st, 0, sizeof *st);
    if (!e) {
        test_fail(__FILE__, __LINE__, "qvl_engine_open: %s", qvl_last_error());
        return;
    }
    qvl_gen_opts g = qvl_gen_opts_default();
    g.max_new_tokens = TINY_NEW;
    qvl_req_id first = -1;
    long n = 0;
    for (long i = 0; i < ds->n_samples; i++) {
        const qvl_sample *s = &ds->samples[i];
        if (s->error) continue;
        qvl_request req = {.image_path = s->image_path, .image_data = s->image_data, .image_size = s->image_size,
                           .prompt = s->question, .image_name = "sample"};
        qvl_req_id id = qvl_submit(e, &req, &g);
        CHECK(id >= 0);
        if (first < 0) first = id;
        n++;
    }
    long done = 0;
    for (int guard = 0; guard < 100000 && done < n; guard++) {
        int left = qvl_step(e);
        qvl_event ev;
        while (qvl_poll(e, &ev)) {
            CHECK_INT(ev.status, 0);
            long k = (long)(ev.id - first);   /* ids in submission order: the k-th readable sample */
            if (!ev.status && k >= 0 && k < dp->n) CHECK_INT(ev.result.prompt_tokens, dp->samples[k].prompt_tokens);
            qvl_result_free(&ev.result);
            done++;
        }
        if (left <= 0 && done >= n) break;
    }
    CHECK_INT(done, n);
    qvl_engine_stats_get(e, st);
    qvl_engine_close(e);
}

TEST(plan_fit_batch_cpu_engine_stays_within_the_planned_pool) {
    qvl_config cfg;
    qvl_dataset ds;
    CHECK_INT(qvl_config_load(TINY_MODEL, &cfg), 0);
    CHECK_INT(qvl_dataset_load(TINY_DATA, NULL, 1, &ds), 0);
    for (long i = 0; i < ds.n_samples; i++) CHECK(ds.samples[i].error == NULL);   /* ids follow samples */
    qvl_fit_request rq = qvl_fit_request_default();
    rq.max_new_tokens = TINY_NEW, rq.auto_fit = 1;
    qvl_data_plan dp;
    qvl_fit one, r;
    /* the smallest batch (one sequence, one whole context), then a budget a few MiB above it */
    rq.batch = 1;
    CHECK_INT(qvl_fit_dataset(&cfg, TINY_MODEL, &ds, 0, ds.n_samples, &rq, &dp, &one), 0);
    qvl_data_plan_free(&dp);
    rq.batch = 0;
    rq.gpu_mem_mib = (long)(one.plan.total + QVL_FIT_CONTEXT_MARGIN_MIB) + 3;
    CHECK_INT(qvl_fit_dataset(&cfg, TINY_MODEL, &ds, 0, ds.n_samples, &rq, &dp, &r), 0);
    CHECK(r.plan.total + QVL_FIT_CONTEXT_MARGIN_MIB <= (double)rq.gpu_mem_mib);
    CHECK_INT(r.auto_image_tokens, 0);
    CHECK(r.batch > 1 && r.batch < ds.n_samples);   /* a few MiB: some samples at once, not all */
    CHECK(r.kv_blocks >= one.kv_blocks);
    /* with the planned pool: every sample runs, never more blocks in use than the pool */
    qvl_engine_stats st;
    run_under_fit(&r, &ds, &dp, (int)r.kv_blocks, &st);
    CHECK_INT(st.max_batch, r.batch);
    CHECK_INT(st.kv_blocks_total, r.kv_blocks);
    CHECK(st.kv_blocks_peak <= r.kv_blocks);
    CHECK(st.kv_blocks_peak >= r.largest_blocks);
    CHECK_INT(st.kv_blocks_used, 0);
    /* with every slot given a whole context (the CPU backend's own pool): the batch still never
     * reserves more than its largest samples, the pool the plan says is all it uses */
    run_under_fit(&r, &ds, &dp, 0, &st);
    CHECK(st.kv_blocks_total > r.kv_blocks_needed);
    CHECK(st.kv_blocks_peak <= r.kv_blocks_needed);
    CHECK(st.kv_blocks_peak > r.largest_blocks);   /* more than one sample was in flight */
    qvl_data_plan_free(&dp);
    qvl_dataset_free(&ds);
}
