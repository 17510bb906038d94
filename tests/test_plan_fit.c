/* The memory plan sized from the data and auto-fit to a budget (eval/plan_fit.h), on the real 2B
 * config with the real tokenizer and real image headers of every size, on the CPU: the plan math is
 * host code. The plan's figures themselves are checked by hand in tests/test_mem.c. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "eval/plan_fit.h"
#include "plan_fixture.h"
#include "test.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"
#include "util/file.h"


TEST(plan_fit_sizes_the_context_and_vision_for_the_largest_sample) {
    plan_fixture f;
    if (plan_fixture_setup(&f, "fit.json")) return;
    qvl_fit_request rq = qvl_fit_request_default();
    qvl_fit r;
    CHECK_INT(plan_fixture_fit(&f, &rq, &r), 0);
    CHECK_INT(f.dp.n_ok, 6);
    CHECK_INT(f.dp.n_failed, 1);
    CHECK_CONTAINS(f.dp.samples[6].error, "bad_text.jpg: unsupported or unrecognized image format");
    /* 8000x6000 is the largest image: smart_resize to the 16777216-pixel limit */
    qvl_image_params p = qvl_config_image_params(&f.cfg);
    int big = qvl_plan_image_tokens(8000, 6000, &p);
    CHECK(big > 16000 && big <= 16384);
    CHECK_INT(f.dp.largest_image_tokens, big);
    CHECK_INT(f.dp.largest_prompt_index, 4);
    CHECK_INT(r.plan_image_tokens, big);
    CHECK_INT(r.max_model_len, f.dp.largest_prompt + 128);
    CHECK_INT(r.plan.max_model_len, r.max_model_len);
    CHECK_INT(r.plan.max_image_tokens, big);
    CHECK_INT(r.auto_image_tokens, 0);
    /* KV cache: the batched engine's pool, 28 layers x (K, V) x 1024 x 64 tokens x 2 bytes a block; without
     * a budget what one request at a time took, never less than one whole context */
    CHECK(r.kv_blocks >= (r.max_model_len + 63) / 64);
    CHECK_INT(r.plan.kv_blocks, r.kv_blocks);
    CHECK_INT(r.plan.sequences, r.batch);
    CHECK_NEAR(r.plan.kv_cache, 2.0 * 28 * 1024 * 64 * 2 * r.kv_blocks / 1048576.0, 1e-9);
    CHECK_CONTAINS(r.sized_for, "= largest prompt ");
    CHECK_CONTAINS(r.sized_for, "(sample 4) + 128 answer tokens");
    CHECK_CONTAINS(r.sized_for, "6 of 7 samples planned, 1 unreadable");
    /* the same plan as the CUDA backend makes from the engine options the fit sets (qvl_fit_engine_opts):
     * its batched plan with these sequences and this pool, no cap */
    qvl_engine_opts eo = qvl_engine_opts_default();
    qvl_fit_engine_opts(&r, &eo);
    CHECK_INT(eo.max_batch, r.batch);
    CHECK_INT(eo.kv_blocks, r.kv_blocks);
    qvl_plan_inputs in = {.max_model_len = eo.max_model_len, .max_image_tokens = eo.plan_image_tokens,
                          .sequences = eo.max_batch, .kv_blocks = eo.kv_blocks, .token_budget = eo.token_budget,
                          .vision_tokens = eo.vision_tokens, .image_cache_tokens = eo.image_cache_tokens};
    qvl_mem_plan same;
    CHECK_INT(qvl_mem_plan_batched(&f.cfg, -1, &in, -1, 0, &same), 0);
    CHECK_NEAR(same.total, r.plan.total, 0);
    CHECK_INT(same.kv_blocks, r.kv_blocks);
    /* a cap lowers both */
    rq.max_image_tokens = 2048;
    CHECK_INT(plan_fixture_fit(&f, &rq, &r), 0);
    CHECK_INT(r.plan_image_tokens, f.dp.largest_image_tokens);
    CHECK(r.plan_image_tokens <= 2048 && r.plan_image_tokens > 1900);
    CHECK(r.max_model_len < 2048 + 128 + 40);
    plan_fixture_teardown(&f);
}

TEST(plan_fit_auto_fits_the_largest_cap_under_the_budget) {
    plan_fixture f;
    if (plan_fixture_setup(&f, "fit.json")) return;
    qvl_fit_request rq = qvl_fit_request_default();
    qvl_fit full, r;
    CHECK_INT(plan_fixture_fit(&f, &rq, &full), 0);
    int before[PLAN_N_IMAGES];
    for (int i = 0; i < PLAN_N_IMAGES; i++) before[i] = f.dp.samples[i].image_tokens;
    long budgets[] = {5200, 5600, 6000, 7000};
    for (int b = 0; b < 4; b++) {
        rq = qvl_fit_request_default();
        rq.gpu_mem_mib = budgets[b];
        rq.auto_fit = 1;
        CHECK_INT(plan_fixture_fit(&f, &rq, &r), 0);
        CHECK(r.auto_image_tokens >= QVL_FIT_MIN_IMAGE_TOKENS);
        CHECK(r.plan.total + QVL_FIT_CONTEXT_MARGIN_MIB <= (double)budgets[b]);   /* fits, with the margin */
        CHECK(r.plan_image_tokens <= r.auto_image_tokens);
        long down = 0;
        for (int i = 0; i < PLAN_N_IMAGES; i++) {
            down += before[i] > r.auto_image_tokens;
            /* only samples above the cap change */
            if (before[i] <= r.auto_image_tokens) CHECK_INT(f.dp.samples[i].image_tokens, before[i]);
            else CHECK(f.dp.samples[i].image_tokens <= r.auto_image_tokens);
        }
        CHECK_INT(r.n_auto_downscaled, down);
        CHECK(down >= 1);
        CHECK_CONTAINS(r.sized_for, "auto-fit to --gpu-mem");
        CHECK(!strcmp(r.params.max_pixels == r.auto_image_tokens * 1024 ? "ok" : "no", "ok"));
        /* one token more does not fit even one sequence: the cap is the largest */
        qvl_fit_request one = qvl_fit_request_default();
        one.max_image_tokens = r.auto_image_tokens + 1;
        one.gpu_mem_mib = budgets[b];
        qvl_fit above;
        CHECK_INT(plan_fixture_fit(&f, &one, &above), -1);
        CHECK_CONTAINS(qvl_error(), "below the plan for this data at these pixel settings");
        CHECK_CONTAINS(qvl_error(), "1 sequence of up to ");
    }
    /* a budget that fits without a cap changes nothing */
    rq.gpu_mem_mib = (long)full.plan.total + 100;
    CHECK_INT(plan_fixture_fit(&f, &rq, &r), 0);
    CHECK_INT(r.auto_image_tokens, 0);
    CHECK_INT(r.plan_image_tokens, full.plan_image_tokens);
    cJSON *j = qvl_fit_json(&r, &f.dp, &rq);
    CHECK(cJSON_IsNull(cJSON_GetObjectItem(j, "auto_fit")));
    cJSON_Delete(j);
    plan_fixture_teardown(&f);
}

/* The FP8 KV cache halves the KV term, so under one budget the auto-fit admits larger images (or a
 * budget refused with BF16 fits): at a 32768-token context the 2B KV cache is 3584 MiB BF16, 1792 FP8. */
TEST(plan_fit_kv_fp8_fits_larger_images_under_the_budget) {
    plan_fixture f;
    if (plan_fixture_setup(&f, "fit.json")) return;
    qvl_fit b16, f8;
    qvl_fit_request rq = qvl_fit_request_default();
    rq.max_model_len = 32768, rq.gpu_mem_mib = 8500, rq.auto_fit = 1;
    CHECK_INT(plan_fixture_fit(&f, &rq, &b16), 0);
    rq.kv_dtype = QVL_PLAN_KV_FP8;
    CHECK_INT(plan_fixture_fit(&f, &rq, &f8), 0);
    /* BF16: one whole context (512 blocks of 7 MiB) is all that fits; FP8: 3.5 MiB blocks, room for
     * every sample at once */
    CHECK_INT(b16.kv_blocks, 512);
    CHECK_NEAR(b16.plan.kv_cache, 3584.0, 1e-9);
    CHECK_NEAR(f8.plan.kv_cache, 3.5 * f8.kv_blocks, 1e-9);
    CHECK_INT(f8.kv_blocks, f8.kv_blocks_needed);
    CHECK_INT(f8.batch, 6);
    /* BF16: images capped (the 4000x3000 and 8000x6000 ones and the document); FP8: every image whole */
    CHECK(b16.auto_image_tokens >= QVL_FIT_MIN_IMAGE_TOKENS && b16.auto_image_tokens < 4096);
    CHECK(b16.n_auto_downscaled > 0);
    CHECK_INT(f8.auto_image_tokens, 0);
    CHECK_INT(f8.n_auto_downscaled, 0);
    CHECK(f8.plan_image_tokens > 4 * b16.plan_image_tokens);
    CHECK(f8.plan.total <= 8500 - QVL_FIT_CONTEXT_MARGIN_MIB);
    /* 7000 MiB: BF16 does not fit even the smallest cap; FP8 fits with a cap */
    rq.gpu_mem_mib = 7000;
    CHECK_INT(plan_fixture_fit(&f, &rq, &f8), 0);
    CHECK(f8.auto_image_tokens >= QVL_FIT_MIN_IMAGE_TOKENS);
    rq.kv_dtype = QVL_PLAN_KV_BF16;
    CHECK_INT(plan_fixture_fit(&f, &rq, &b16), -1);
    CHECK_CONTAINS(qvl_error(), "KV cache 3584 for 512 blocks: 1 sequence of up to 32768 tokens");
    plan_fixture_teardown(&f);
}

TEST(plan_fit_refuses_a_budget_too_small_up_front) {
    plan_fixture f;
    if (plan_fixture_setup(&f, "fit.json")) return;
    qvl_fit_request rq = qvl_fit_request_default();
    qvl_fit r;
    rq.auto_fit = 1;
    rq.gpu_mem_mib = 4600;   /* weights 4058 + context 512 fit, the rest does not */
    CHECK_INT(plan_fixture_fit(&f, &rq, &r), -1);
    CHECK_CONTAINS(qvl_error(), "gpu-mem: 4600 MiB is below what even a cap of 64 image tokens per image needs: ");
    CHECK_CONTAINS(qvl_error(), "weights 4058 + KV cache ");
    CHECK(strstr(qvl_error(), "weights alone") == NULL);
    rq.gpu_mem_mib = 3000;
    CHECK_INT(plan_fixture_fit(&f, &rq, &r), -1);
    CHECK_CONTAINS(qvl_error(), "; the weights alone do not fit");
    /* explicit pixel options: no auto-fit, the plan at those settings is refused */
    rq.gpu_mem_mib = 5000;
    rq.max_image_tokens = 16384;
    CHECK_INT(plan_fixture_fit(&f, &rq, &r), -1);
    CHECK_CONTAINS(qvl_error(), "below the plan for this data at these pixel settings");
    CHECK(strchr(qvl_error(), '\n') == NULL);
    plan_fixture_teardown(&f);
}

TEST(plan_fit_max_model_len_below_the_largest_prompt) {
    plan_fixture f;
    if (plan_fixture_setup(&f, "fit.json")) return;
    qvl_fit_request rq = qvl_fit_request_default();
    qvl_fit r;
    rq.max_model_len = 4096;   /* the 4000x3000 and 8000x6000 images do not fit */
    CHECK_INT(plan_fixture_fit(&f, &rq, &r), 0);
    CHECK_INT(r.max_model_len, 4096);
    CHECK_INT(f.dp.n_overflow, 2);
    CHECK_INT(f.dp.n_ok, 4);
    CHECK(f.dp.largest_prompt < 4096);
    CHECK_INT(r.plan_image_tokens, f.dp.largest_image_tokens);
    CHECK_CONTAINS(r.sized_for, "context 4096 tokens (--max-model-len)");
    CHECK_CONTAINS(r.sized_for, "2 over the context (skipped)");
    rq.downscale = 1;
    CHECK_INT(plan_fixture_fit(&f, &rq, &r), 0);
    CHECK_INT(f.dp.n_downscaled, 2);
    CHECK_INT(f.dp.n_ok, 6);
    CHECK(f.dp.largest_prompt <= 4095 && f.dp.largest_prompt > 3900);   /* shrunk to fit context - 1 */
    plan_fixture_teardown(&f);
}

TEST(plan_fit_mem_cli_data) {
    char *out = NULL, *err = NULL;
    char *path = plan_dataset_json("fit.json");
    CHECK_INT(test_qvl(&out, &err, "mem --model %s --data %s --images " PLAN_IMAGES, plan_model_2b(), path), 0);
    CHECK_CONTAINS(out, "kv_cache ");
    CHECK_CONTAINS(out, "sized for ");
    CHECK_CONTAINS(out, "(sample 4) + 128 answer tokens; vision for ");
    free(out), free(err);
    CHECK_INT(test_qvl(&out, &err, "mem --model %s --data %s --images " PLAN_IMAGES " --gpu-mem 5500 --json", plan_model_2b(), path), 0);
    cJSON *j = cJSON_Parse(out);
    CHECK(j != NULL);
    cJSON *dp = cJSON_GetObjectItem(j, "data_plan"), *af = dp ? cJSON_GetObjectItem(dp, "auto_fit") : NULL;
    CHECK(af && cJSON_IsObject(af));
    if (af) {
        CHECK_INT(cJSON_GetObjectItem(af, "budget_mib")->valueint, 5500);
        CHECK(cJSON_GetObjectItem(af, "max_image_tokens")->valueint >= 64);
        CHECK(cJSON_GetObjectItem(j, "total")->valuedouble <= 5500 - QVL_FIT_CONTEXT_MARGIN_MIB);
    }
    CHECK_CONTAINS(err, "qvl mem: auto-fit: at most ");
    cJSON_Delete(j);
    free(out), free(err);
    CHECK_INT(test_qvl(NULL, &err, "mem --model %s --data %s --images " PLAN_IMAGES " --gpu-mem 4600", plan_model_2b(), path), 1);
    CHECK_CONTAINS(err, "qvl: gpu-mem: 4600 MiB is below what even a cap of 64 image tokens per image needs");
    free(err);
    CHECK_INT(test_qvl(NULL, &err, "mem --model %s --data /no/such.json", plan_model_2b()), 1);
    CHECK_CONTAINS(err, "qvl: /no/such.json: ");
    free(err);
    CHECK_INT(test_qvl(NULL, &err, "mem --model %s --kv-dtype fp16", plan_model_2b()), 2);
    CHECK_CONTAINS(err, "--kv-dtype: 'fp16' is not bf16 or fp8");
    free(err);
    /* fp8 halves the KV cache in the plan */
    CHECK_INT(test_qvl(&out, NULL, "mem --model %s --max-model-len 16384 --kv-dtype fp8", plan_model_2b()), 0);
    CHECK_CONTAINS(out, "kv_cache                 896.00 MiB (16384 tokens, fp8)");
    free(out);
    free(path);
}

/* qvl eval (CPU, the tiny OCR model) sizes its context from the data and says so in the report and
 * the summary. */
TEST(plan_fit_eval_reports_what_the_plan_was_sized_for) {
    char *out = NULL, *err = NULL;
    const char *dir = test_tmpdir();
    CHECK_INT(test_qvl(&out, &err, "eval --model models/qvl-tiny-ocr --data tests/fixtures/ocrbench/json/OCRBench.json "
                                   "--device cpu --threads 2 --limit 3 --max-new-tokens 40 --out %s/fit.jsonl", dir), 0);
    CHECK_CONTAINS(err, "qvl eval: memory plan ");
    CHECK_CONTAINS(err, "context 81 tokens = largest prompt 41 (sample 0) + 40 answer tokens");
    CHECK_CONTAINS(out, "memory_plan: {\"sized_for\":\"context 81 tokens");
    char path[512];
    snprintf(path, sizeof path, "%s/fit.json", dir);
    cJSON *j = test_read_json(path);
    cJSON *mp = j ? cJSON_GetObjectItem(cJSON_GetObjectItem(j, "settings"), "memory_plan") : NULL;
    CHECK(mp != NULL);
    if (mp) {
        CHECK_INT(cJSON_GetObjectItem(mp, "max_model_len")->valueint, 81);
        CHECK_INT(cJSON_GetObjectItem(mp, "largest_prompt")->valueint, 41);
        CHECK_INT(cJSON_GetObjectItem(mp, "samples_planned")->valueint, 3);
        /* the batch and the pool, the batched engine's plan (the CPU engine keeps its own batch) */
        CHECK(cJSON_GetObjectItem(mp, "batch")->valueint >= 1);
        CHECK_INT(cJSON_GetObjectItem(mp, "kv_block_tokens")->valueint, 64);
        CHECK(cJSON_GetObjectItem(mp, "kv_blocks")->valueint >= 2);   /* one context of 81 tokens */
        CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(mp, "batch_from")), "plan");
        /* the CPU engine's own pool (16 slots of a whole 81-token context) and the most of it in use */
        cJSON *kp = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "settings"), "kv_pool");
        CHECK_INT(cJSON_GetObjectItem(kp, "blocks")->valueint, 16 * 2);
        CHECK_INT(cJSON_GetObjectItem(kp, "block_tokens")->valueint, 64);
        int peak = cJSON_GetObjectItem(kp, "peak_blocks")->valueint;
        CHECK(peak >= 1 && peak <= 3 * 2);   /* 3 samples of at most 2 blocks each */
    }
    cJSON_Delete(j);
    free(out), free(err);
}
