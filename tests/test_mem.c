/* The memory plan: figures computed by hand from the real 2B/8B shapes. */
#include <stdlib.h>

#include "model/config.h"
#include "model/mem_plan.h"
#include "test.h"

TEST(mem_plan_kv_cache_2b_by_hand) {
    qvl_config cfg;
    CHECK_INT(qvl_config_load("tests/fixtures/configs/2b", &cfg), 0);
    qvl_mem_plan p;
    CHECK_INT(qvl_mem_plan_compute(&cfg, -1, 16384, 16777216, -1, &p), 0);
    /* 28 layers x (K,V) x 8 kv heads x 128 dims x 16384 tokens x 2 bytes = 1792 MiB */
    CHECK_NEAR(p.kv_cache, 1792.0, 1e-9);
    /* the image is capped by the context: 16384 - 256 reserved tokens, 1024 pixels each */
    CHECK_INT(p.max_image_tokens, 16128);
    CHECK_INT(p.max_image_pixels, 16128L * 1024);
    CHECK_INT(p.cuda_context_measured, 0);
    CHECK_NEAR(p.cuda_context, QVL_CUDA_CONTEXT_ESTIMATE_MIB, 0);
    /* weights from the config: 2,127,532,032 parameters in BF16 */
    CHECK_NEAR(p.weights, 2127532032.0 * 2 / 1048576.0, 1e-6);
    CHECK_NEAR(p.total, p.cuda_context + p.weights + p.kv_cache + p.vision_activations + p.workspace, 1e-6);
}

TEST(mem_plan_pixels_bound_the_vision_activations) {
    qvl_config cfg;
    CHECK_INT(qvl_config_load("tests/fixtures/configs/8b", &cfg), 0);
    qvl_mem_plan small, big;
    CHECK_INT(qvl_mem_plan_compute(&cfg, -1, 32768, 1024 * 1024, 400, &small), 0);
    CHECK_INT(qvl_mem_plan_compute(&cfg, -1, 32768, 4096 * 1024, 400, &big), 0);
    CHECK_INT(small.max_image_tokens, 1024);
    CHECK_INT(small.cuda_context_measured, 1);
    CHECK_NEAR(small.cuda_context, 400, 0);
    /* activations are linear in the patch count (flash-style attention): 4x the pixels, 4x memory */
    CHECK_NEAR(big.vision_activations / small.vision_activations, 4.0, 1e-9);
    CHECK(small.kv_cache == big.kv_cache);
}

TEST(mem_plan_rejects_tiny_context) {
    qvl_config cfg;
    CHECK_INT(qvl_config_load("tests/fixtures/configs/2b", &cfg), 0);
    qvl_mem_plan p;
    CHECK_INT(qvl_mem_plan_compute(&cfg, -1, 100, 16777216, -1, &p), -1);
}

TEST(mem_cli_budget_refusal_names_what_to_lower) {
    char *out = NULL, *err = NULL;
    CHECK_INT(test_qvl(&out, &err, "mem --model tests/fixtures/configs/2b --max-model-len 16384 --gpu-mem 6000"), 1);
    CHECK_CONTAINS(out, "kv_cache");
    CHECK_CONTAINS(err, "--gpu-mem is 6000 MiB");
    CHECK_CONTAINS(err, "lower --max-model-len");
    free(out);
    free(err);
    CHECK_INT(test_qvl(&out, &err, "mem --model tests/fixtures/configs/2b --gpu-mem 1000"), 1);
    CHECK_CONTAINS(err, "weights and CUDA context alone");
    free(out);
    free(err);
}

TEST(mem_cli_json_and_batch) {
    char *out = NULL, *err = NULL;
    CHECK_INT(test_qvl(&out, NULL, "mem --model tests/fixtures/configs/2b --max-model-len=16384 --json"), 0);
    CHECK_CONTAINS(out, "\"kv_cache\": 1792.00");
    CHECK_CONTAINS(out, "\"max_image_tokens\": 16128");
    free(out);
    CHECK_INT(test_qvl(NULL, &err, "mem --model tests/fixtures/configs/2b --batch 4"), 2);
    CHECK_CONTAINS(err, "not supported yet");
    free(err);
    CHECK_INT(test_qvl(NULL, &err, "mem --model /nonexistent"), 1);
    CHECK_CONTAINS(err, "qvl: /nonexistent");
    free(err);
}
