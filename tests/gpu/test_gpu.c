/* GPU tests (build/qvl-gpu-tests, `make test-gpu`; need a CUDA device): the CUDA model against the
 * tiny transformers fixtures (per-stage errors, teacher-forced greedy tokens), the memory cap, bad
 * input; and, when QVL_REAL_DIR names a folder made by tools/gen_real_shape_models.py, the
 * real-shape run whose dumps that script then compares with transformers F32 and BF16.
 * QVL_TEST_VERBOSE=1 prints the figures. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "backend/cuda/cuda_device.h"
#include "io/npy.h"
#include "model/model_cuda.h"
#include "gpu_test.h"
#include "../test.h"
#include "util/error.h"


static int load(const char *dir, const char *name, qvl_npy *a) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s.npy", dir, name);
    return qvl_npy_read(path, a);
}

/* max|got - ref| / max|ref| and the relative L2 error. */
static void errs(const float *got, const float *ref, size_t n, double *rel_max, double *rel_l2) {
    double md = 0, mr = 0, d2 = 0, r2 = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - ref[i]);
        if (!(d <= md)) md = d;
        if (fabs(ref[i]) > mr) mr = fabs(ref[i]);
        d2 += d * d;
        r2 += (double)ref[i] * ref[i];
    }
    *rel_max = mr > 0 ? md / mr : md;
    *rel_l2 = r2 > 0 ? sqrt(d2 / r2) : sqrt(d2);
}

/* BF16 end to end against the F32 reference: relative L2 error per stage must stay below this. */
static const double STAGE_L2 = 0.05;

static double compare(const char *dumpdir, const char *refdir, const char *name) {
    qvl_npy got, ref;
    if (load(refdir, name, &ref) != 0) return -1;
    if (load(dumpdir, name, &got) != 0) {
        test_fail(__FILE__, __LINE__, "no dump of %s: %s", name, qvl_error());
        qvl_npy_free(&ref);
        return 1e9;
    }
    double rm = 1e9, l2 = 1e9;
    if (got.nbytes == ref.nbytes)
        errs(got.data, ref.data, ref.nbytes / 4, &rm, &l2);
    else
        test_fail(__FILE__, __LINE__, "%s: %zu bytes dumped, reference %zu", name, got.nbytes, ref.nbytes);
    if (!(l2 <= STAGE_L2)) test_fail(__FILE__, __LINE__, "%s (%s): relative L2 error %.3g > %g", name, refdir, l2, STAGE_L2);
    if (verbose()) printf("    %-22s rel-L2 %.2e  max %.2e\n", name, l2, rm);
    qvl_npy_free(&got);
    qvl_npy_free(&ref);
    return l2;
}

static const char *CASES[] = {"img_square", "img_wide", "img_resize", "two_images", "text_only"};
static int g_checked, g_agree;

static void run_case(const char *model, const char *cname) {
    char mdir[256], cdir[256], rdir[320], ddir[512];
    snprintf(mdir, sizeof mdir, FIX "/%s", model);
    snprintf(cdir, sizeof cdir, FIX "/ref/%s", cname);
    snprintf(rdir, sizeof rdir, "%s/%s", cdir, model);
    snprintf(ddir, sizeof ddir, "%s/gpu_%s_%s", test_tmpdir(), model, cname);
    mkdir(ddir, 0755);
    qvl_npy ids_a, grid_a = {0}, px_a = {0};
    if (load(cdir, "input_ids", &ids_a)) {
        test_fail(__FILE__, __LINE__, "%s: %s", cdir, qvl_error());
        return;
    }
    int has_img = load(cdir, "image_grid_thw", &grid_a) == 0;
    if (has_img) CHECK_INT(load(cdir, "pixel_values", &px_a), 0);
    int n = (int)ids_a.shape[0];
    int32_t *ids = malloc(n * sizeof *ids);
    for (int i = 0; i < n; i++) ids[i] = (int32_t)((int64_t *)ids_a.data)[i];
    qvl_cuda_opts o = {.max_model_len = 512, .max_pixels = 1 << 20};
    qvl_tuning_from_env(&o.tuning);
    o.tuning.dump_dir = ddir;
    qvl_cuda_model *m = qvl_cuda_model_open(mdir, &o);
    if (!m) {
        test_fail(__FILE__, __LINE__, "open %s: %s", mdir, qvl_error());
        goto done;
    }
    if (verbose()) printf("  %s / %s (%d tokens)\n", model, cname, n);
    const qvl_config *cfg = qvl_cuda_model_config(m);
    int n_img = has_img ? (int)grid_a.shape[0] : 0;
    const float *px = has_img ? px_a.data : NULL;
    for (int i = 0; i < n_img; i++) {
        const int64_t *g = (int64_t *)grid_a.data + 3 * i;
        qvl_pixel_values pv = {(float *)px, (int)(g[0] * g[1] * g[2]), (int)px_a.shape[1], (int)g[0], (int)g[1],
                               (int)g[2], (int)g[1] * 16, (int)g[2] * 16, (int)(g[0] * g[1] * g[2] / 4)};
        CHECK_INT(qvl_cuda_encode_image(m, &pv), 0);
        px += (size_t)pv.num_patches * pv.row_len;
    }
    int next = qvl_cuda_prefill(m, ids, n);
    CHECK(next >= 0);
    if (n_img == 1) {
        const char *st[] = {"vision.patch_embed", "vision.embed", "vision.merger", "vision.deepstack0"};
        for (int k = 0; k < 4; k++) compare(ddir, rdir, st[k]);
        for (int b = 0; b < cfg->vision.depth; b++) {
            char nm[32];
            snprintf(nm, sizeof nm, "vision.block%d", b);
            compare(ddir, rdir, nm);
        }
    }
    compare(ddir, rdir, "text.embed");
    for (int l = 0; l < cfg->text.num_layers; l++) {
        char nm[32];
        snprintf(nm, sizeof nm, "text.layer%d.out", l);
        compare(ddir, rdir, nm);
    }
    compare(ddir, rdir, "text.norm");

    /* Teacher-forced greedy: our argmax where the reference's top1-top2 margin clears bf16 noise. */
    qvl_npy gtok, gmar, stats;
    CHECK_INT(load(rdir, "gen_tokens", &gtok), 0);
    CHECK_INT(load(rdir, "gen_margins", &gmar), 0);
    CHECK_INT(load(rdir, "logits_stats", &stats), 0);
    double absmax = ((float *)stats.data)[0];
    int steps = (int)gtok.shape[0], checked = 0, agree = 0, all_agree = 0;
    for (int t = 0; t < steps && next >= 0; t++) {
        int64_t want = ((int64_t *)gtok.data)[t];
        all_agree += next == want;
        if (((float *)gmar.data)[t] > 0.02 * absmax) {
            checked++;
            agree += next == want;
            if (next != want)
                test_fail(__FILE__, __LINE__, "%s %s step %d: token %d, reference %lld (margin %.3g)", model, cname, t,
                          next, (long long)want, ((float *)gmar.data)[t]);
        }
        if (t + 1 < steps) next = qvl_cuda_decode(m, (int32_t)want);
    }
    g_checked += checked, g_agree += agree;
    if (verbose()) printf("    greedy: %d/%d agree where margin > 2%% of max|logit|, %d/%d overall\n", agree, checked,
                          all_agree, steps);
    qvl_npy_free(&gtok), qvl_npy_free(&gmar), qvl_npy_free(&stats);
done:
    qvl_cuda_model_close(m);
    free(ids);
    qvl_npy_free(&ids_a), qvl_npy_free(&grid_a), qvl_npy_free(&px_a);
}

TEST(gpu_tiny_parity) {
    if (!have_gpu()) return;
    for (int mi = 0; mi < 2; mi++)
        for (size_t c = 0; c < sizeof CASES / sizeof *CASES; c++) run_case(mi ? "untied" : "tied", CASES[c]);
    printf("    tiny greedy agreement: %d/%d checked steps\n", g_agree, g_checked);
    CHECK(g_checked > 100);
}

TEST(gpu_mem_cap) {
    if (!have_gpu()) return;
    qvl_cuda_opts o = {.max_model_len = 4096, .max_pixels = 1 << 20, .gpu_mem_mib = 64};
    qvl_cuda_model *m = qvl_cuda_model_open(FIX "/tied", &o);
    CHECK(m == NULL);
    CHECK_CONTAINS(qvl_error(), "gpu-mem: 64 MiB is below the plan's");
    CHECK_CONTAINS(qvl_error(), "lower --max-model-len or --max-pixels");
    qvl_cuda_model_close(m);
    o.gpu_mem_mib = 4096;
    m = qvl_cuda_model_open(FIX "/tied", &o);
    CHECK(m != NULL);
    if (!m) return;
    const qvl_mem_plan *p = qvl_cuda_model_plan(m);
    double arena = qvl_cuda_model_arena_mib(m), plan_arena = p->total - p->cuda_context;
    printf("    plan %.1f MiB (context %.1f measured=%d, weights %.1f, kv %.1f, vision %.1f, workspace %.1f); arena %.1f; "
           "device used peak %.1f\n",
           p->total, p->cuda_context, p->cuda_context_measured, p->weights, p->kv_cache, p->vision_activations,
           p->workspace, arena, qvl_cuda_model_peak_mib(m));
    CHECK(p->cuda_context_measured);
    CHECK(arena <= plan_arena + 1.0); /* the arena never exceeds what the plan shows */
    CHECK(p->cuda_context + arena <= 4096);
    /* Bad input: ids outside the vocabulary, an image larger than the plan admits. */
    int32_t bad[2] = {1, 200000};
    CHECK_INT(qvl_cuda_prefill(m, bad, 2), -1);
    CHECK_CONTAINS(qvl_error(), "outside the vocabulary");
    static float px[64 * 64 * 1536];
    qvl_pixel_values pv = {px, 64 * 64 * 2, 1536, 2, 64, 64, 1024, 1024, 64 * 64 * 2 / 4};
    CHECK_INT(qvl_cuda_encode_image(m, &pv), -1);
    CHECK_CONTAINS(qvl_error(), "the memory plan admits");
    qvl_cuda_model_close(m);
}

/* QVL_REAL_DIR: input_ids, pixel_values, image_grid_thw, tf_ids (teacher-forced continuation) made
 * by tools/gen_real_shape_models.py; writes dumps + top1.npy + timing under QVL_REAL_DIR/qvl. */
TEST(gpu_real_shape) {
    const char *dir = getenv("QVL_REAL_DIR");
    if (!dir) {
        printf("    (QVL_REAL_DIR not set: nothing to run)\n");
        return;
    }
    if (!have_gpu()) return;
    char model[1024], out[1024];
    snprintf(model, sizeof model, "%s/model", dir);
    snprintf(out, sizeof out, "%s/qvl", dir);
    mkdir(out, 0755);
    qvl_npy ids_a, px_a, grid_a, tf_a;
    if (load(dir, "input_ids", &ids_a) || load(dir, "pixel_values", &px_a) || load(dir, "image_grid_thw", &grid_a) ||
        load(dir, "tf_ids", &tf_a)) {
        test_fail(__FILE__, __LINE__, "%s", qvl_error());
        return;
    }
    int n = (int)ids_a.shape[0], T = (int)tf_a.shape[0];
    int32_t *ids = malloc(n * sizeof *ids), *top1 = malloc((T + 1) * sizeof *top1);
    for (int i = 0; i < n; i++) ids[i] = (int32_t)((int64_t *)ids_a.data)[i];
    qvl_cuda_opts o = {.max_model_len = n + T + 8, .max_pixels = 1 << 21};
    qvl_tuning_from_env(&o.tuning);
    o.tuning.dump_dir = out; /* the vision and prefill stages; decoding dumps nothing */
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    qvl_cuda_model *m = qvl_cuda_model_open(model, &o);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    CHECK(m != NULL);
    if (!m) {
        printf("    open: %s\n", qvl_error());
        return;
    }
    printf("    open %.2f s\n", (t1.tv_sec - t0.tv_sec) + 1e-9 * (t1.tv_nsec - t0.tv_nsec));
    const int64_t *g = grid_a.data;
    qvl_pixel_values pv = {px_a.data, (int)(g[0] * g[1] * g[2]), (int)px_a.shape[1], (int)g[0], (int)g[1], (int)g[2],
                           (int)g[1] * 16, (int)g[2] * 16, (int)(g[0] * g[1] * g[2] / 4)};
    CHECK_INT(qvl_cuda_encode_image(m, &pv), 0);
    top1[0] = qvl_cuda_prefill(m, ids, n);
    CHECK(top1[0] >= 0);
    {
        int V = qvl_cuda_model_config(m)->text.vocab_size;
        float *lg = malloc((size_t)V * sizeof(float));
        char lp[1100];
        snprintf(lp, sizeof lp, "%s/logits_last.npy", out);
        int64_t sh[1] = {V};
        CHECK_INT(qvl_cuda_logits(m, lg), 0);
        CHECK_INT(qvl_npy_write(lp, "<f4", sh, 1, lg), 0);
        free(lg);
    }
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int t = 0; t < T && top1[t] >= 0; t++) top1[t + 1] = qvl_cuda_decode(m, (int32_t)((int64_t *)tf_a.data)[t]);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double s = (t1.tv_sec - t0.tv_sec) + 1e-9 * (t1.tv_nsec - t0.tv_nsec);
    printf("    %d teacher-forced decode steps: %.3f ms/step; arena %.0f MiB, device used peak %.0f MiB\n", T,
           1e3 * s / T, qvl_cuda_model_arena_mib(m), qvl_cuda_model_peak_mib(m));
    CHECK(top1[T] >= 0);
    char path[1100];
    snprintf(path, sizeof path, "%s/top1.npy", out);
    int64_t shape[1] = {T + 1};
    CHECK_INT(qvl_npy_write(path, "<i4", shape, 1, top1), 0);
    qvl_cuda_model_close(m);
    free(ids), free(top1);
    qvl_npy_free(&ids_a), qvl_npy_free(&px_a), qvl_npy_free(&grid_a), qvl_npy_free(&tf_a);
}

/* The CLI on the CUDA backend: same greedy answer as the CPU on the tiny model (its margins are
 * wide: 248/248 checked steps agree above), the cap refused with the breakdown, peak reported. */
TEST(gpu_cli_run) {
    if (!have_gpu()) return;
    const char *args = "run --model " FIX "/tied --image " FIX "/images/shapes96x128.png --prompt 'What is written here?' "
                       "--max-new-tokens 12 --max-model-len 1024";
    char *out_cpu = NULL, *out_gpu = NULL, *err = NULL;
    CHECK_INT(test_qvl(&out_cpu, NULL, "%s --device cpu", args), 0);
    CHECK_INT(test_qvl(&out_gpu, &err, "%s --device cuda", args), 0);
    CHECK_STR(out_gpu, out_cpu);
    CHECK_CONTAINS(err, "NVIDIA");
    if (verbose()) printf("    cpu: %s    gpu: %s    %s", out_cpu, out_gpu, err);
    free(out_cpu), free(out_gpu), free(err);
    err = NULL;
    CHECK_INT(test_qvl(NULL, &err, "%s --device cuda --gpu-mem 100", args), 1);
    CHECK_CONTAINS(err, "qvl: gpu-mem: 100 MiB is below the plan's");
    free(err);
}
