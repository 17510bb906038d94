/* The memory plan: figures computed by hand from the real 2B/8B shapes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cuda_device.h"
#include "backend/cuda/cuda_quant.h"
#include "io/safetensors.h"
#include "model/config.h"
#include "model/mem_plan.h"
#include "model/tensor_check.h"
#include "test.h"
#include "util/error.h"

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
    /* linear in the patch count (flash-style attention) except the MLP's hidden rows, bounded at one
     * chunk of 4096 patches (both images have at least that many): 4x the pixels adds 12288 patches
     * x (x, y, qkv) = 5 x 1152 and 3072 tokens x (merger + 3 deepstack) x 4096, BF16 */
    CHECK_NEAR((big.vision_activations - small.vision_activations) * 1048576.0,
               12288.0 * 5 * 1152 * 2 + 3072.0 * 4 * 4096 * 2, 0);
    CHECK_INT(small.vision_mlp_chunk, 4096);
    CHECK(small.kv_cache == big.kv_cache);
}

/* A context shorter than the text reserve (accepted by every command) plans an image as long as the
 * whole context; no context at all is refused. */
TEST(mem_plan_short_context_plans_the_whole_context) {
    qvl_config cfg;
    CHECK_INT(qvl_config_load("tests/fixtures/configs/2b", &cfg), 0);
    qvl_mem_plan p;
    CHECK_INT(qvl_mem_plan_compute(&cfg, -1, 100, 16777216, -1, &p), 0);
    CHECK_INT(p.max_model_len, 100);
    CHECK_INT(p.max_image_tokens, 100);
    CHECK_INT(qvl_mem_plan_compute(&cfg, -1, 0, 16777216, -1, &p), -1);
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
    CHECK_INT(test_qvl(&out, NULL, "mem --model tests/fixtures/configs/2b --batch 4 --json"), 0);
    CHECK_CONTAINS(out, "\"sequences\": 4");
    free(out);
    CHECK_INT(test_qvl(NULL, &err, "mem --model tests/fixtures/configs/2b --batch 0"), 2);
    CHECK_CONTAINS(err, "--batch 0: must be at least 1");
    free(err);
    CHECK_INT(test_qvl(NULL, &err, "mem --model /nonexistent"), 1);
    CHECK_CONTAINS(err, "qvl: /nonexistent");
    free(err);
}

/* The plan's arena part is the CUDA backend's arena to the byte (cuda_model.cu layout_buffers; the
 * GPU test gpu_mem_plan_is_the_arena checks it on a device): the 2B shapes at the settings of the
 * 2B benchmark (12517 tokens, 12483584 pixels = 12191 image tokens = 48764 patches), whose arena
 * measured 6627 MiB (6628.14 with the device sampler's buffers added since). */
TEST(mem_plan_is_the_cuda_arena_2b_by_hand) {
    qvl_config cfg;
    CHECK_INT(qvl_config_load("tests/fixtures/configs/2b", &cfg), 0);
    qvl_mem_plan p;
    CHECK_INT(qvl_mem_plan_compute(&cfg, 4057.95 * 1048576.0, 12517, 12483584, 500, &p), 0);
    CHECK_INT(p.max_image_tokens, 12191);
    const double MiB = 1048576.0;
    /* patches x (x, y, qkv) + one MLP chunk's hidden rows (4096 x 4096) + (merger + 3 deepstack) x
     * tokens x hidden, BF16 */
    CHECK_NEAR(p.vision_activations * MiB,
               48764.0 * (1024 + 1024 + 3072) * 2 + 4096.0 * 4096 * 2 + 4.0 * 12191 * 2048 * 2, 0);
    CHECK_INT(p.vision_mlp_chunk, QVL_PLAN_VISION_MLP_CHUNK);
    /* rotary tables (2048 + 64*4 bytes); a 2048-token chunk of x, y, qkv (2048 + 2*1024), attention
     * (2048), gate|up (2*6144), SwiGLU (6144); BF16 logits; ids, positions, image rows (each rounded
     * up to 256 bytes), next id, step; decode attention scratch 8 x 64 x 32 x 130 floats; 32 MiB
     * cuBLASLt workspace */
    double ws = 2048 + 256 + 2048.0 * (2048 + 2048 + 4096 + 2048 + 12288 + 6144) * 2 + 151936 * 2 + 50176 + 150272 +
                50176 + 256 + 256 + 8.0 * 64 * 32 * 130 * 4 + 32 * MiB +
                /* device sampler: state (256), flags (151936 -> 152064), F32 logits, 12517 uniforms
                 * (-> 100352); the kernels' counters (QVL_PLAN_SYNC_BYTES) */
                256 + 152064 + 151936 * 4 + 100352 + 1536;
    CHECK_NEAR((p.workspace - p.cuda_runtime) * MiB, ws, 0);
    CHECK_NEAR(p.kv_cache * MiB, 2.0 * 28 * 12517 * 1024 * 2, 0);
    /* 6628.14 before the vision MLP ran in chunks: (48764 - 4096) x 4096 BF16 = 348.97 MiB less */
    CHECK_NEAR(qvl_mem_plan_arena_mib(&p), 6628.14 - 44668.0 * 4096 * 2 / MiB, 0.005);
    CHECK_NEAR(p.total, 500 + qvl_mem_plan_arena_mib(&p) + p.cuda_runtime, 1e-9);
    CHECK_NEAR(p.cuda_runtime, QVL_CUDA_RUNTIME_ESTIMATE_MIB, 0);
}

TEST(mem_cli_says_how_the_context_is_known) {
    char *out = NULL;
    CHECK_INT(test_qvl(&out, NULL, "mem --model tests/fixtures/configs/2b --max-model-len 12517 --max-pixels 12483584"), 0);
    if (qvl_cuda_device_count() > 0)
        CHECK_CONTAINS(out, " MiB (measured: ");   /* nvml process, or cudaMemGetInfo device used */
    else
        CHECK_CONTAINS(out, "cuda_context             512.00 MiB (estimate: no GPU here)\n");
    CHECK_CONTAINS(out, "vision_activations       698.70 MiB (largest image; MLP in chunks of 4096 patches)\n");
    free(out);
    CHECK_INT(test_qvl(&out, NULL, "mem --model tests/fixtures/configs/2b --json"), 0);
    if (qvl_cuda_device_count() == 0) CHECK_CONTAINS(out, "\"cuda_context_measured\": false, \"cuda_context_measure\": null, ");
    free(out);
}

/* `qvl mem` for a quantized checkpoint shows the weights as the GPU keeps them (packed Linears, the
 * dequantization scratch, no host-kept embedding: qvl_cuda_weight_bytes), the same in the batched
 * plan (--batch N > 1, the CUDA backend's) as in the one-sequence plan. */
TEST(mem_cli_quantized_weights_batched_and_single) {
    const char *models[] = {"awq", "fp8"};
    for (int i = 0; i < 2; i++) {
        char dir[128], cmd[256], want[64];
        snprintf(dir, sizeof dir, "tests/fixtures/quant/%s", models[i]);
        qvl_config cfg;
        qvl_safetensors *st = NULL;
        if (qvl_config_load(dir, &cfg) || !(st = qvl_st_open(dir))) {
            test_fail(__FILE__, __LINE__, "%s: %s", dir, qvl_error());
            continue;
        }
        const double wq = qvl_cuda_weight_bytes(&cfg, st) / 1048576.0;
        qvl_st_close(st);
        snprintf(want, sizeof want, "\"weights\": %.2f,", wq);
        for (int batch = 1; batch <= 4; batch += 3) {
            char *out = NULL;
            snprintf(cmd, sizeof cmd, "mem --model %s --max-model-len 512 --batch %d --json", dir, batch);
            CHECK_INT(test_qvl(&out, NULL, cmd), 0);
            CHECK_CONTAINS(out, want);
            if (batch > 1) CHECK_CONTAINS(out, "\"sequences\": 4");
            free(out);
        }
        /* far below the BF16 bytes of the same checkpoint */
        int n = 0;
        qvl_tensor_spec *s = qvl_expected_tensors(&cfg, &n);
        double bf16 = 0;
        for (int k = 0; k < n; k++) bf16 += 2.0 * (double)qvl_tensor_spec_numel(&s[k]);
        free(s);
        CHECK(wq * 1048576.0 < bf16);
    }
}
