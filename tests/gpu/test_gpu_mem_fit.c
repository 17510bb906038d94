/* Memory fitted to the work on the device (issue 15):
 * - gpu_vision_chunks_same_result: the vision MLP in chunks of 64 patches gives the logits of one
 *   chunk (tiny model, a 1000x800 image: 3120 patches), and the plan is the arena in both.
 * - gpu_mem_fit_never_above_budget: randomized image sizes and budgets through the same plan and
 *   engine options as `qvl eval` (eval/plan_fit.h): every budget the plan accepts is never exceeded
 *   by the measured process peak (NVML), the plan is within QVL_FIT_TOLERANCE (default 2%) of it,
 *   and budgets below the smallest cap are refused before anything is allocated. Environment:
 *   QVL_FIT_MODEL (default the tiny tied fixture; the real check is a real-shape model, e.g. the 2B
 *   of tests/gpu/gen_bench_model.py), QVL_FIT_IMAGES (default 1000), QVL_FIT_BUDGETS (default 20),
 *   QVL_FIT_MAX_SIDE (default 6000 pixels), QVL_FIT_SEED. One line "FIT ..." per budget, then
 *   "FITSUMMARY ...". */
#include <math.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval/plan_fit.h"
#include "gpu_test.h"
#include "model/model_cuda.h"
#include "qvl.h"
#include "tokenizer/chat.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"

static long env_long(const char *k, long d) {
    const char *v = getenv(k);
    return v && *v ? atol(v) : d;
}

static uint64_t rng_state = 88172645463325252ULL;
static double uniform(void) {   /* xorshift64* in [0, 1) */
    rng_state ^= rng_state >> 12, rng_state ^= rng_state << 25, rng_state ^= rng_state >> 27;
    return (double)((rng_state * 2685821657736338717ULL) >> 11) / 9007199254740992.0;
}

/* A w x h PNG with a little pattern (content does not matter for memory; compression level 1). */
static int write_png(const char *path, int w, int h) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    unsigned char *row = malloc((size_t)w * 3);
    if (!png || !info || !row || setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        free(row);
        fclose(f);
        return -1;
    }
    png_init_io(png, f);
    png_set_compression_level(png, 1);
    png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (int y = 0; y < h; y++) {
        for (int x = 0; x < w * 3; x++) row[x] = (unsigned char)((x / 3 + y) & 0xe0);
        png_write_row(png, row);
    }
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    free(row);
    return fclose(f);
}

TEST(gpu_vision_chunks_same_result) {
    if (!have_gpu()) return;
    char img[512];
    snprintf(img, sizeof img, "%s/big1000x800.png", test_tmpdir());
    CHECK_INT(write_png(img, 1000, 800), 0);
    qvl_image im;
    CHECK_INT(qvl_image_load(img, &im), 0);
    qvl_tokenizer *tok = qvl_tokenizer_load(FIX "/tied");
    CHECK(tok != NULL);
    if (!tok) return;
    float *logits[2] = {NULL, NULL};
    int vocab = 0;
    for (int k = 0; k < 2; k++) {
        qvl_cuda_opts o = {.max_model_len = 4096, .max_pixels = 1 << 20, .vision_mlp_chunk = k ? 64 : 0};
        qvl_cuda_model *m = qvl_cuda_model_open(FIX "/tied", &o);
        CHECK(m != NULL);
        if (!m) break;
        const qvl_mem_plan *p = qvl_cuda_model_plan(m);
        CHECK_NEAR(qvl_mem_plan_arena_mib(p), qvl_cuda_model_arena_mib(m), 0.01);
        CHECK_INT(p->vision_mlp_chunk, k ? 64 : 1024 * 4);
        qvl_image_params ip = qvl_config_image_params(qvl_cuda_model_config(m));
        ip.max_pixels = 1 << 20;
        qvl_pixel_values pv;
        CHECK_INT(qvl_image_preprocess(&im, &ip, &pv), 0);
        CHECK(pv.num_patches > 3000);
        int32_t *ids = NULL;
        size_t n = 0;
        CHECK_INT(qvl_chat_encode_single(tok, "What is written?", pv.image_tokens, &ids, &n), 0);
        qvl_cuda_clear_images(m);
        CHECK_INT(qvl_cuda_encode_image(m, &pv), 0);
        CHECK(qvl_cuda_prefill(m, ids, (int)n) >= 0);
        vocab = qvl_cuda_model_config(m)->text.vocab_size;
        logits[k] = malloc((size_t)vocab * sizeof(float));
        CHECK_INT(qvl_cuda_logits(m, logits[k]), 0);
        free(ids);
        qvl_pixel_values_free(&pv);
        qvl_cuda_model_close(m);
    }
    if (logits[0] && logits[1]) {
        double worst = 0, scale = 0;
        int a0 = 0, a1 = 0;
        for (int i = 0; i < vocab; i++) {
            worst = fmax(worst, fabs(logits[0][i] - logits[1][i]));
            scale = fmax(scale, fabs(logits[0][i]));
            if (logits[0][i] > logits[0][a0]) a0 = i;
            if (logits[1][i] > logits[1][a1]) a1 = i;
        }
        printf("    chunks of 64 vs one chunk: max |logit diff| %.3g (max |logit| %.3g), argmax %d / %d\n", worst, scale,
               a0, a1);
        CHECK(worst <= 0.02 * scale);
        CHECK_INT(a0, a1);
    }
    free(logits[0]), free(logits[1]);
    qvl_image_free(&im);
    qvl_tokenizer_free(tok);
}

/* One budget: a fresh dataset of n random images, the plan's verdict, and if accepted the run. */
static void one_budget(const char *model, int b, int n, int max_side, double tol, int *accepted, int *refused,
                       int *images_run, double *worst_err) {
    char dir[512], path[600];
    snprintf(dir, sizeof dir, "%s/fit%d", test_tmpdir(), b);
    snprintf(path, sizeof path, "mkdir -p %s", dir);
    CHECK_INT(system(path), 0);
    char *json = malloc((size_t)n * 256 + 16);
    size_t len = 0;
    len += (size_t)sprintf(json + len, "[");
    for (int i = 0; i < n; i++) {
        /* log-uniform area between 32x32 and max_side^2, aspect up to 1:20 either way */
        double area = exp(log(1024.0) + uniform() * (log((double)max_side * max_side) - log(1024.0)));
        double aspect = exp((uniform() * 2 - 1) * log(20.0));
        int w = (int)fmax(16, fmin(max_side, sqrt(area * aspect))), h = (int)fmax(16, fmin(max_side, sqrt(area / aspect)));
        snprintf(path, sizeof path, "%s/%d.png", dir, i);
        CHECK_INT(write_png(path, w, h), 0);
        len += (size_t)sprintf(json + len, "%s{\"dataset_name\": \"fit\", \"id\": %d, \"image_path\": \"%d.png\", "
                               "\"question\": \"What is written in the image?\", \"answers\": \"x\", \"type\": \"Regular "
                               "Text Recognition\"}", i ? "," : "", i, i);
    }
    sprintf(json + len, "]");
    snprintf(path, sizeof path, "%s/OCRBench.json", dir);
    FILE *f = fopen(path, "w");
    fputs(json, f);
    fclose(f);
    free(json);
    qvl_config cfg;
    qvl_dataset ds;
    CHECK_INT(qvl_config_load(model, &cfg), 0);
    CHECK_INT(qvl_dataset_load(path, NULL, 1, &ds), 0);
    /* the range of sensible budgets: the plan at the smallest cap .. the plan without a cap */
    qvl_fit_request rq = qvl_fit_request_default();
    rq.max_new_tokens = 4;
    qvl_data_plan dp;
    qvl_fit full, small, fit;
    CHECK_INT(qvl_fit_dataset(&cfg, model, &ds, 0, ds.n_samples, &rq, &dp, &full), 0);
    qvl_data_plan_free(&dp);
    /* a budget of 1 MiB is refused, the fit then holding the smallest plan (the smallest cap, one
     * sequence, lean passes: eval/plan_fit.h) */
    rq.gpu_mem_mib = 1, rq.auto_fit = 1;
    CHECK_INT(qvl_fit_dataset(&cfg, model, &ds, 0, ds.n_samples, &rq, &dp, &small), -1);
    qvl_data_plan_free(&dp);
    rq.gpu_mem_mib = -1, rq.auto_fit = 0;
    /* every fifth budget below the smallest plan: refused up front */
    double lo = small.plan.total + QVL_FIT_CONTEXT_MARGIN_MIB + 1, hi = full.plan.total + 64;
    long budget = b % 5 == 4 ? (long)(small.plan.total - 20) : (long)(lo + uniform() * (hi - lo));
    rq.gpu_mem_mib = budget;
    rq.auto_fit = 1;
    int rc = qvl_fit_dataset(&cfg, model, &ds, 0, ds.n_samples, &rq, &dp, &fit);
    if (rc) {
        CHECK(b % 5 == 4);
        CHECK_CONTAINS(qvl_error(), "gpu-mem: ");
        printf("FIT budget=%ld refused: %s\n", budget, qvl_error());
        (*refused)++;
    } else {
        CHECK(b % 5 != 4);
        qvl_engine_opts eo = qvl_engine_opts_default();
        eo.model_dir = model;
        eo.device = QVL_DEVICE_CUDA;
        eo.gpu_mem_mib = budget;
        qvl_fit_engine_opts(&fit, &eo);
        qvl_engine *e = qvl_engine_open(&eo);
        CHECK(e != NULL);
        int ran = 0;
        for (long i = 0; e && i < ds.n_samples; i++) {
            if (dp.samples[i].status != QVL_PLAN_OK) continue;
            qvl_request r = {.image_path = ds.samples[i].image_path, .prompt = ds.samples[i].question};
            qvl_gen_opts g = qvl_gen_opts_default();
            g.max_new_tokens = 4;
            qvl_result res;
            if (qvl_generate(e, &r, &g, &res) != 0) {
                test_fail(__FILE__, __LINE__, "budget %ld sample %ld: %s", budget, i, qvl_last_error());
                continue;
            }
            CHECK_INT(res.prompt_tokens, dp.samples[i].prompt_tokens);
            qvl_result_free(&res);
            ran++;
        }
        if (e) {
            qvl_memory_info mi;
            qvl_engine_memory(e, &mi);
            double err = (mi.plan_total - mi.peak_mib) / mi.peak_mib;
            printf("FIT budget=%ld cap=%ld downscaled=%ld images=%d plan=%.1f peak=%.1f (%s) err=%+.3f%% ctx=%ld vis_tokens=%ld "
                   "batch=%d kv_blocks=%ld passes=%s\n",
                   budget, fit.auto_image_tokens, fit.n_auto_downscaled, ran, mi.plan_total, mi.peak_mib, mi.peak_measure,
                   100 * err, fit.max_model_len, fit.plan_image_tokens, fit.batch, fit.kv_blocks,
                   fit.passes == QVL_FIT_PASSES_LEAN ? "lean" : "full");
            if (mi.peak_mib > (double)budget)
                test_fail(__FILE__, __LINE__, "budget %ld MiB: measured peak %.1f MiB is above it", budget, mi.peak_mib);
            if (!(fabs(err) <= tol))
                test_fail(__FILE__, __LINE__, "budget %ld: plan %.1f vs peak %.1f: %+.2f%%", budget, mi.plan_total,
                          mi.peak_mib, 100 * err);
            if (fabs(err) > *worst_err) *worst_err = fabs(err);
            qvl_engine_close(e);
        }
        (*accepted)++;
        *images_run += ran;
    }
    qvl_data_plan_free(&dp);
    qvl_dataset_free(&ds);
    snprintf(path, sizeof path, "rm -rf %s", dir);
    CHECK_INT(system(path), 0);
}

TEST(gpu_mem_fit_never_above_budget) {
    if (!have_gpu()) return;
    const char *model = getenv("QVL_FIT_MODEL");
    if (!model || !model[0]) model = FIX "/tied";
    int images = (int)env_long("QVL_FIT_IMAGES", 1000), budgets = (int)env_long("QVL_FIT_BUDGETS", 20);
    int max_side = (int)env_long("QVL_FIT_MAX_SIDE", 6000);
    rng_state ^= (uint64_t)env_long("QVL_FIT_SEED", 1) * 0x9E3779B97F4A7C15ULL;
    double tol = getenv("QVL_FIT_TOLERANCE") ? atof(getenv("QVL_FIT_TOLERANCE")) : 0.02;
    int accepted = 0, refused = 0, run = 0;
    double worst = 0;
    for (int b = 0; b < budgets; b++)
        one_budget(model, b, (images + budgets - 1) / budgets, max_side, tol, &accepted, &refused, &run, &worst);
    printf("FITSUMMARY model=%s budgets=%d accepted=%d refused=%d images_run=%d worst_plan_error=%.3f%%\n", model,
           budgets, accepted, refused, run, 100 * worst);
    CHECK(accepted > 0);
}
