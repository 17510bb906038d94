/* Packed int4 and FP8 on the GPU (backend/cuda/cuda_quant.cu) against the CPU reference path on the
 * fixtures of tests/fixtures/quant (FP8: inputs quantized per token as transformers does): the GEMVs (1..8 rows) and the
 * dequantize + BF16 GEMM path (many rows) give the float64 product of the exactly dequantized
 * weights with the BF16 inputs within BF16 output rounding; then decode-shaped timings at real 8B
 * shapes (random int4 weights, group 128) beside the BF16 GEMV of the same shape; then the CUDA
 * model on the quantized fixtures against their transformers references (stages, greedy tokens). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sys/stat.h>

#include "backend/cuda/cuda_quant.h"
#include "gpu_test.h"
#include "io/npy.h"
#include "model/model_cuda.h"
#include "model/config.h"
#include "model/tensor_check.h"
#include "util/error.h"

static uint16_t to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

static float from_bf16(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* max |got - ref| / max |ref| of y = x @ deq(w)^T for M rows by the chosen path */
static double check_product(const qvl_qweight *w, int M, int force_gemm) {
    uint16_t *x = malloc((size_t)M * w->K * 2);
    float *y = malloc((size_t)M * w->N * 4), *wd = malloc((size_t)w->N * w->K * 4);
    uint32_t h = 12345;
    for (size_t i = 0; i < (size_t)M * w->K; i++) {
        h = h * 1664525u + 1013904223u;
        x[i] = to_bf16(((float)(h >> 8) / 16777216.f - 0.5f) * 4.f);
    }
    qvl_qweight_dequant_rows(w, 0, w->N, wd);
    float *xr = malloc((size_t)M * w->K * 4); /* the reference's input: FP8 quantizes it per token */
    for (size_t i = 0; i < (size_t)M * w->K; i++) xr[i] = from_bf16(x[i]);
    if (w->kind == QVL_QW_FP8)
        for (int m = 0; m < M; m++) qvl_fp8_act_quant_row(xr + (size_t)m * w->K, w->K, w->group);
    double e = 1e9;
    if (qvl_cuda_qlin_run_host(w, x, M, force_gemm, y, 0, NULL) == 0) {
        double md = 0, mr = 0;
        for (int m = 0; m < M; m++)
            for (int n = 0; n < w->N; n++) {
                double r = 0;
                for (int k = 0; k < w->K; k++) r += (double)xr[(size_t)m * w->K + k] * wd[(size_t)n * w->K + k];
                double d = fabs(y[(size_t)m * w->N + n] - r);
                if (!(d <= md)) md = d;
                if (fabs(r) > mr) mr = fabs(r);
            }
        e = md / mr;
    } else
        test_fail(__FILE__, __LINE__, "%s", qvl_error());
    free(x);
    free(xr);
    free(y);
    free(wd);
    return e;
}

TEST(gpu_quant_products) {
    if (!have_gpu()) return;
    const char *models[] = {"ct_asym", "ct_sym", "awq", "fp8"};
    for (int mi = 0; mi < 4; mi++) {
        char dir[128];
        snprintf(dir, sizeof dir, "tests/fixtures/quant/%s", models[mi]);
        qvl_config cfg;
        qvl_safetensors *st = NULL;
        if (qvl_config_load(dir, &cfg) || !(st = qvl_st_open(dir))) {
            test_fail(__FILE__, __LINE__, "%s", qvl_error());
            continue;
        }
        int n = 0, tested = 0;
        qvl_tensor_spec *s = qvl_expected_tensors(&cfg, &n);
        for (int i = 0; i < n; i++) {
            if (!qvl_quant_linear_stored(&cfg, st, &s[i])) continue;
            qvl_qweight *w = qvl_qweight_load(&cfg, st, &s[i]);
            qvl_cuda_qlin d;
            if (!w || !qvl_cuda_qlin_plan_loaded(w, &d)) {
                test_fail(__FILE__, __LINE__, "%s: %s not on the GPU path", models[mi], s[i].name);
                qvl_qweight_free(w);
                continue;
            }
            /* F32 accumulation differs from float64 by ~1e-6; the BF16 output rounding is 2^-9 of
             * the element, so relative to max |y| 4e-3 holds; the GEMM path also rounds AWQ's fp16
             * weights to BF16 (2^-9 per weight, averaging out over K). */
            const int rows[] = {1, 3, 8, 40};
            for (int r = 0; r < 4; r++) {
                double e = check_product(w, rows[r], 0);
                if (!(e <= (rows[r] > 8 && (w->round == QVL_QW_ROUND_F16 || w->kind == QVL_QW_FP8) ? 8e-3 : 4e-3)))
                    test_fail(__FILE__, __LINE__, "%s %s M=%d: relative error %.3g", models[mi], s[i].name, rows[r], e);
                if (verbose()) fprintf(stderr, "  %s %-52s M=%-2d %.2e\n", models[mi], s[i].name, rows[r], e);
            }
            double eg = check_product(w, 2, 1);
            if (!(eg <= 8e-3)) test_fail(__FILE__, __LINE__, "%s %s forced GEMM: relative error %.3g", models[mi], s[i].name, eg);
            tested++;
            qvl_qweight_free(w);
        }
        CHECK(tested >= 14);
        free(s);
        qvl_st_close(st);
    }
}

/* Decode-shaped timing at 8B shapes: per layer q|k|v (6144 x 4096), o (4096 x 4096), gate|up
 * (24576 x 4096), down (4096 x 12288). Prints one table; fails only if the int4 GEMV is slower than
 * the BF16 one over the layer. */
TEST(gpu_quant_int4_decode_speed) {
    if (!have_gpu()) return;
    static const struct {
        const char *name;
        int N, K;
    } shapes[] = {{"qkv", 6144, 4096}, {"o", 4096, 4096}, {"gate_up", 24576, 4096}, {"down", 4096, 12288}};
    double tq = 0, tb = 0;
    fprintf(stderr, "  int4 decode GEMV vs BF16 (8B shapes, M=1, group 128)\n  %-8s %7s %7s %9s %9s %6s\n", "linear", "N", "K",
            "int4 us", "bf16 us", "x");
    for (int i = 0; i < 4; i++) {
        qvl_qweight w;
        memset(&w, 0, sizeof w);
        w.kind = QVL_QW_INT4, w.N = shapes[i].N, w.K = shapes[i].K, w.group = 128, w.round = QVL_QW_ROUND_BF16;
        size_t G = (size_t)w.N * w.K / 128;
        w.q = malloc((size_t)w.N * w.K / 2);
        w.zero = malloc(G);
        w.scale = malloc(G * 4);
        for (size_t k = 0; k < (size_t)w.N * w.K / 2; k++) w.q[k] = (uint8_t)(k * 2654435761u >> 13);
        for (size_t k = 0; k < G; k++) w.zero[k] = 8, w.scale[k] = 0.01f;
        uint16_t *x = calloc(w.K, 2);
        float *y = malloc((size_t)w.N * 4);
        for (int k = 0; k < w.K; k++) x[k] = to_bf16(0.01f * (k % 7));
        double mq = 0, mb = 0;
        CHECK_INT(qvl_cuda_qlin_run_host(&w, x, 1, 0, y, 50, &mq), 0);
        CHECK_INT(qvl_cuda_bf16_gemv_ms(w.N, w.K, 50, &mb), 0);
        fprintf(stderr, "  %-8s %7d %7d %9.1f %9.1f %6.2f\n", shapes[i].name, w.N, w.K, mq * 1e3, mb * 1e3, mb / mq);
        tq += mq, tb += mb;
        free(x);
        free(y);
        free(w.q);
        free(w.zero);
        free(w.scale);
    }
    fprintf(stderr, "  %-24s %9.1f %9.1f %6.2f  (x 36 layers: %.2f vs %.2f ms per token)\n", "layer", tq * 1e3, tb * 1e3, tb / tq,
            36 * tq, 36 * tb);
    CHECK(tq < tb);
}

/* ---- the CUDA model on the quantized tiny fixtures ------------------------------------------------ */

static int load_q(const char *dir, const char *name, qvl_npy *a) {
    char path[4096];
    if (snprintf(path, sizeof path, "%s/%s.npy", dir, name) >= (int)sizeof path) return -1;
    return qvl_npy_read(path, a);
}

/* relative L2 error of got against ref */
static double rel_l2(const float *got, const float *ref, size_t n) {
    double d2 = 0, r2 = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)got[i] - ref[i];
        d2 += d * d;
        r2 += (double)ref[i] * ref[i];
    }
    return r2 > 0 ? sqrt(d2 / r2) : sqrt(d2);
}

/* One case of tests/fixtures/quant on the CUDA model: every stage within l2 (relative L2) of the
 * float32 transformers reference on the dequantized weights, the teacher-forced greedy tokens
 * where the reference's margin clears 2% of max |logit| (greedy). Returns the worst stage error. */
static double quant_case(const char *model, const char *cname, double l2, int greedy) {
    char mdir[256], idir[256], rdir[320], ddir[512];
    snprintf(mdir, sizeof mdir, "tests/fixtures/quant/%s", model);
    snprintf(idir, sizeof idir, "tests/fixtures/quant/inputs/%s", cname);
    snprintf(rdir, sizeof rdir, "%s/ref/%s", mdir, cname);
    snprintf(ddir, sizeof ddir, "%s/gpu_q_%s_%s", test_tmpdir(), model, cname);
    mkdir(ddir, 0755);
    double worst = 0;
    qvl_npy ids_a, grid_a = {0}, px_a = {0};
    if (load_q(idir, "input_ids", &ids_a)) {
        test_fail(__FILE__, __LINE__, "%s: %s", idir, qvl_error());
        return 1e9;
    }
    int has_img = load_q(idir, "image_grid_thw", &grid_a) == 0;
    if (has_img) CHECK_INT(load_q(idir, "pixel_values", &px_a), 0);
    int n = (int)ids_a.shape[0];
    int32_t *ids = malloc(n * sizeof *ids);
    for (int i = 0; i < n; i++) ids[i] = (int32_t)((int64_t *)ids_a.data)[i];
    qvl_cuda_opts o = {.max_model_len = 512, .max_pixels = 1 << 20};
    qvl_tuning_from_env(&o.tuning);
    o.tuning.dump_dir = ddir;
    qvl_cuda_model *m = qvl_cuda_model_open(mdir, &o);
    if (!m) {
        test_fail(__FILE__, __LINE__, "open %s: %s", mdir, qvl_error());
        worst = 1e9;
        goto done;
    }
    const qvl_config *cfg = qvl_cuda_model_config(m);
    if (has_img) {
        const int64_t *g = grid_a.data;
        qvl_pixel_values pv = {px_a.data, (int)(g[0] * g[1] * g[2]), (int)px_a.shape[1], (int)g[0], (int)g[1], (int)g[2],
                               (int)g[1] * 16, (int)g[2] * 16, (int)(g[0] * g[1] * g[2] / 4)};
        CHECK_INT(qvl_cuda_encode_image(m, &pv), 0);
    }
    int next = qvl_cuda_prefill(m, ids, n);
    CHECK(next >= 0);
    char names[16][32];
    int nn = 0;
    if (has_img) {
        for (int b = 0; b < cfg->vision.depth; b++) snprintf(names[nn++], 32, "vision.block%d", b);
        snprintf(names[nn++], 32, "vision.merger");
        for (int j = 0; j < cfg->vision.n_deepstack; j++) snprintf(names[nn++], 32, "vision.deepstack%d", j);
    }
    for (int l = 0; l < cfg->text.num_layers; l++) snprintf(names[nn++], 32, "text.layer%d.out", l);
    snprintf(names[nn++], 32, "text.norm");
    for (int k = 0; k < nn; k++) {
        qvl_npy got, ref;
        if (load_q(rdir, names[k], &ref) || load_q(ddir, names[k], &got)) {
            test_fail(__FILE__, __LINE__, "%s %s: %s missing: %s", model, cname, names[k], qvl_error());
            continue;
        }
        double e = got.nbytes == ref.nbytes ? rel_l2(got.data, ref.data, ref.nbytes / 4) : 1e9;
        if (e > worst) worst = e;
        if (!(e <= l2)) test_fail(__FILE__, __LINE__, "%s %s %s: relative L2 %.3g > %g", model, cname, names[k], e, l2);
        if (verbose()) printf("    %-8s %-4s %-18s rel-L2 %.2e\n", model, cname, names[k], e);
        qvl_npy_free(&got);
        qvl_npy_free(&ref);
    }
    qvl_npy full, gtok, gmar;
    CHECK_INT(load_q(rdir, "logits_last", &full), 0);
    CHECK_INT(load_q(rdir, "gen_tokens", &gtok), 0);
    CHECK_INT(load_q(rdir, "gen_margins", &gmar), 0);
    double absmax = 0;
    for (size_t i = 0; i < full.nbytes / 4; i++) absmax = fmax(absmax, fabs(((float *)full.data)[i]));
    int steps = (int)gtok.shape[0], checked = 0, agree = 0;
    for (int t = 0; t < steps && next >= 0; t++) {
        int64_t want = ((int64_t *)gtok.data)[t];
        agree += next == want;
        if (greedy && ((float *)gmar.data)[t] > 0.02 * absmax) {
            checked++;
            if (next != want)
                test_fail(__FILE__, __LINE__, "%s %s step %d: token %d, reference %lld", model, cname, t, next, (long long)want);
        }
        if (t + 1 < steps) next = qvl_cuda_decode(m, (int32_t)want);
    }
    if (verbose()) printf("    %-8s %-4s greedy %d/%d agree (%d checked); arena %.1f MiB\n", model, cname, agree, steps, checked,
                          qvl_cuda_model_arena_mib(m));
    qvl_npy_free(&full), qvl_npy_free(&gtok), qvl_npy_free(&gmar);
done:
    qvl_cuda_model_close(m);
    free(ids);
    qvl_npy_free(&ids_a), qvl_npy_free(&grid_a), qvl_npy_free(&px_a);
    return worst;
}

/* int4 fixtures: the BF16 GPU bar of test_gpu.c (relative L2 0.05 per stage) and greedy tokens. */
TEST(gpu_quant_fixture_parity) {
    if (!have_gpu()) return;
    const char *models[] = {"ct_asym", "ct_sym", "awq"};
    for (int mi = 0; mi < 3; mi++) {
        quant_case(models[mi], "img", 0.05, 1);
        quant_case(models[mi], "text", 0.05, 1);
    }
}

/* FP8: the FP8 products match the CPU reference path within 5.2e-3 (gpu_quant_products runs the fp8
 * fixture too), but the text stages miss the fixture's float32 reference by 6.5e-2..9.6e-2 relative
 * L2 on an H100 (2026-12-05). That is the BF16 activations, not a mismatch (docs/model.md 7.4): each
 * packed Linear rounds its input to e4m3 codes, and bf16 noise moves codes by whole e4m3 steps; on
 * the CPU, rounding only those inputs to bf16 gives 3e-2..1.3e-1 for FP8 against 2e-3..9e-3 for int4.
 * The bar allows that, greedy not asserted. */
TEST(gpu_quant_fp8_fixture_known_gap) {
    if (!have_gpu()) return;
    quant_case("fp8", "img", 0.15, 0);
    quant_case("fp8", "text", 0.15, 0);
}
