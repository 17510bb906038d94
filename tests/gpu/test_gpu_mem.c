/* GPU memory: the plan's arena part equals the arena the CUDA backend reserves (tiny model), and
 * the engine's plan against the measured process peak (NVML) on a model and image given by the
 * environment (tests/gpu/bench_sizes.sh and the real-shape checks use it):
 *   QVL_MEM_MODEL (default the tiny tied fixture), QVL_MEM_IMAGE, QVL_MEM_LEN (max-model-len),
 *   QVL_MEM_PIXELS (max-pixels), QVL_MEM_NEW (new tokens, default 16), QVL_MEM_TOLERANCE (default
 *   0.02: |plan - peak| / peak allowed; the tiny model is checked for the arena only).
 * Prints one line "MEMJSON {...}" with every figure. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cuda_batch.h"
#include "backend/cuda/cuda_device.h"
#include "backend/cuda/cuda_nvml.h"
#include "model/model_cuda.h"
#include "qvl.h"
#include "../test.h"
#include "util/error.h"

#define TINY "tests/fixtures/tiny/tied"

static long env_long(const char *k, long d) {
    const char *v = getenv(k);
    return v && *v ? atol(v) : d;
}

TEST(gpu_mem_plan_is_the_arena) {
    if (qvl_cuda_device_count() <= 0) {
        test_fail(__FILE__, __LINE__, "no CUDA device");
        return;
    }
    qvl_cuda_opts o = {.max_model_len = 4096, .max_pixels = 1 << 20};
    qvl_cuda_model *m = qvl_cuda_model_open(TINY, &o);
    CHECK(m != NULL);
    if (!m) return;
    const qvl_mem_plan *p = qvl_cuda_model_plan(m);
    printf("    plan arena part %.4f MiB, arena %.4f MiB\n", qvl_mem_plan_arena_mib(p), qvl_cuda_model_arena_mib(m));
    CHECK_NEAR(qvl_mem_plan_arena_mib(p), qvl_cuda_model_arena_mib(m), 0.01);
    qvl_cuda_model_close(m);
}

/* The batched model (the backend's) with either KV type: the plan's arena part is the arena, and the
 * FP8 pool is half the BF16 one for the same blocks (1 byte per element), the rest unchanged. */
TEST(gpu_mem_plan_is_the_arena_batched_kv_fp8) {
    if (qvl_cuda_device_count() <= 0) {
        test_fail(__FILE__, __LINE__, "no CUDA device");
        return;
    }
    double kv[2] = {0, 0}, arena[2] = {0, 0};
    for (int fp8 = 0; fp8 < 2; fp8++) {
        qvl_cuda_opts o = {.max_model_len = 4096, .max_pixels = 1 << 20, .kv_dtype = fp8 ? QVL_PLAN_KV_FP8 : QVL_PLAN_KV_BF16,
                           .gpu_mem_mib = 4096, .batched = 1, .max_seqs = 4, .kv_blocks = 200, .kv_block_tokens = 64};
        qvl_cuda_batch *b = qvl_cuda_batch_open(TINY, &o);
        CHECK(b != NULL);
        if (!b) {
            printf("    open: %s\n", qvl_error());
            return;
        }
        const qvl_cuda_model *m = qvl_cuda_batch_model(b);
        const qvl_mem_plan *p = qvl_cuda_model_plan(m);
        printf("    %s KV: %ld blocks, kv %.4f MiB; plan arena part %.4f MiB, arena %.4f MiB\n", fp8 ? "fp8" : "bf16",
               p->kv_blocks, p->kv_cache, qvl_mem_plan_arena_mib(p), qvl_cuda_model_arena_mib(m));
        CHECK_INT(p->kv_dtype, fp8 ? QVL_PLAN_KV_FP8 : QVL_PLAN_KV_BF16);
        CHECK_INT((int)p->kv_blocks, 200);
        CHECK_NEAR(qvl_mem_plan_arena_mib(p), qvl_cuda_model_arena_mib(m), 0.01);
        kv[fp8] = p->kv_cache, arena[fp8] = qvl_cuda_model_arena_mib(m);
        qvl_cuda_batch_close(b);
    }
    CHECK_NEAR(kv[1], kv[0] / 2, 0.01);
    CHECK_NEAR(arena[0] - arena[1], kv[0] / 2, 0.01);
    /* the one-sequence path keeps its BF16 cache: fp8 is refused there in one line */
    qvl_cuda_opts o1 = {.max_model_len = 4096, .max_pixels = 1 << 20, .kv_dtype = QVL_PLAN_KV_FP8};
    CHECK(qvl_cuda_model_open(TINY, &o1) == NULL);
    CHECK_CONTAINS(qvl_error(), "kv-dtype: fp8 runs on the batched CUDA path");
}

TEST(gpu_mem_nvml_report) {
    if (qvl_cuda_device_count() <= 0) {
        test_fail(__FILE__, __LINE__, "no CUDA device");
        return;
    }
    const char *model = getenv("QVL_MEM_MODEL"), *image = getenv("QVL_MEM_IMAGE");
    int tiny = !model || !model[0];
    if (tiny) model = TINY, image = TINY "/../images/shapes96x128.png";
    /* a meter of the test's own, beside the engine's, for the figures between the steps */
    qvl_gpu_meter mt;
    qvl_gpu_meter_start(&mt);
    qvl_engine_opts o = qvl_engine_opts_default();
    o.model_dir = model;
    o.device = QVL_DEVICE_CUDA;
    o.max_model_len = env_long("QVL_MEM_LEN", tiny ? 2048 : 0);
    o.max_pixels = env_long("QVL_MEM_PIXELS", 0);
    qvl_engine *e = qvl_engine_open(&o);
    CHECK(e != NULL);
    if (!e) {
        printf("    open: %s\n", qvl_last_error());
        return;
    }
    double after_open = qvl_gpu_meter_sample(&mt), after[2] = {-1, -1};
    qvl_request req = {.image_path = image, .prompt = "What is written in the image?"};
    qvl_gen_opts g = qvl_gen_opts_default();
    g.max_new_tokens = (int)env_long("QVL_MEM_NEW", 16);
    int image_tokens = 0;
    for (int i = 0; i < 2; i++) {
        qvl_result r;
        int rc = qvl_generate(e, &req, &g, &r);
        CHECK_INT(rc, 0);
        if (rc) printf("    generate: %s\n", qvl_last_error());
        image_tokens = r.image_tokens;
        qvl_result_free(&r);
        after[i] = qvl_gpu_meter_sample(&mt);
    }
    qvl_memory_info mi;
    CHECK_INT(qvl_engine_memory(e, &mi), 0);
    double err = mi.peak_mib > 0 ? (mi.plan_total - mi.peak_mib) / mi.peak_mib : 0;
    printf("MEMJSON {\"model\": \"%s\", \"image_tokens\": %d, \"measure\": \"%s\", \"note\": \"%s\", "
           "\"baseline_device_used\": %.1f, \"context\": %.2f, \"context_measure\": \"%s\", \"after_open\": %.2f, "
           "\"after_generate\": [%.2f, %.2f], \"peak\": %.2f, \"cuda_used_peak\": %.2f, \"plan\": {\"cuda_context\": %.2f, "
           "\"weights\": %.2f, \"kv_cache\": %.2f, \"vision_activations\": %.2f, \"workspace\": %.2f, \"total\": %.2f}, "
           "\"arena\": %.2f, \"max_model_len\": %ld, \"max_image_tokens\": %ld, \"plan_minus_peak\": %.2f, "
           "\"rel_error\": %.5f, \"peak_minus_context_arena\": %.2f}\n",
           model, image_tokens, mi.peak_measure, mi.note, mt.baseline_mib, mi.plan_cuda_context, mi.plan_context_measure,
           after_open, after[0], after[1], mi.peak_mib, mi.cuda_used_peak_mib, mi.plan_cuda_context, mi.plan_weights,
           mi.plan_kv_cache, mi.plan_vision_activations, mi.plan_workspace, mi.plan_total, mi.arena_mib,
           mi.plan_max_model_len, mi.plan_max_image_tokens, mi.plan_total - mi.peak_mib, err,
           mi.peak_mib - mi.plan_cuda_context - mi.arena_mib);
    fflush(stdout);
    CHECK(mi.has_plan);
    /* the plan's arena part (its workspace holds the runtime estimate too) is the arena */
    CHECK_NEAR(mi.plan_weights + mi.plan_kv_cache + mi.plan_vision_activations + mi.plan_workspace -
                   QVL_CUDA_RUNTIME_ESTIMATE_MIB, mi.arena_mib, 0.01);
    double tol = getenv("QVL_MEM_TOLERANCE") ? atof(getenv("QVL_MEM_TOLERANCE")) : 0.02;
    if (!tiny && mt.measure != QVL_GPU_MEASURE_NONE && !(fabs(err) <= tol))
        test_fail(__FILE__, __LINE__, "plan %.1f MiB vs measured peak %.1f MiB (%s): %+.2f%%, over %.1f%%", mi.plan_total,
                  mi.peak_mib, mi.peak_measure, 100 * err, 100 * tol);
    qvl_engine_close(e);
}
