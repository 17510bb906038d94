/* Parity of the CPU reference forward pass with transformers on the tiny fixtures
 * (tests/fixtures/tiny, made by tools/gen_tiny_models.py): every stage within a relative error
 * max|qvl - ref| / max|ref| <= 1e-4 in float32, and the reference's greedy tokens reproduced
 * (teacher-forced) at every step whose reference top1-top2 margin exceeds 1e-3.
 * QVL_TEST_VERBOSE=1 prints the error figures of each case. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "io/npy.h"
#include "model/model.h"
#include "test.h"
#include "util/error.h"

#define FIX "tests/fixtures/tiny"
static const double TOL = 1e-4, MARGIN = 1e-3;

static int load(const char *dir, const char *name, qvl_npy *a) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s.npy", dir, name);
    return qvl_npy_read(path, a);
}

static double rel_err(const float *got, const float *ref, size_t n) {
    double md = 0, mr = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - ref[i]);
        if (!(d <= md)) md = d; /* NaN propagates as a failure */
        if (fabs(ref[i]) > mr) mr = fabs(ref[i]);
    }
    return mr > 0 ? md / mr : md;
}

static int verbose(void) { return getenv("QVL_TEST_VERBOSE") != NULL; }

/* Compares dump DUMPDIR/NAME.npy with REFDIR/NAME.npy; returns the relative error (or 1e9). */
static double compare_dump(const char *dumpdir, const char *refdir, const char *name) {
    qvl_npy got, ref;
    if (load(refdir, name, &ref) != 0) {
        test_fail(__FILE__, __LINE__, "reference %s/%s missing: %s", refdir, name, qvl_error());
        return 1e9;
    }
    if (load(dumpdir, name, &got) != 0) {
        test_fail(__FILE__, __LINE__, "qvl did not dump %s: %s", name, qvl_error());
        qvl_npy_free(&ref);
        return 1e9;
    }
    double e = 1e9;
    if (got.nbytes != ref.nbytes)
        test_fail(__FILE__, __LINE__, "%s: %zu bytes dumped, reference has %zu", name, got.nbytes, ref.nbytes);
    else
        e = rel_err(got.data, ref.data, ref.nbytes / 4);
    if (!(e <= TOL)) test_fail(__FILE__, __LINE__, "%s (%s): relative error %.3g > %g", name, refdir, e, TOL);
    if (verbose()) fprintf(stderr, "    %-22s %.2e\n", name, e);
    qvl_npy_free(&got);
    qvl_npy_free(&ref);
    return e;
}

static const char *CASES[] = {"img_square", "img_wide", "img_resize", "two_images", "text_only"};

/* Runs one case of one model: vision (per stage when single-image), positions, prefill stages,
 * last-position logits, then 32 teacher-forced decode steps. */
static void run_case(qvl_model *m, const char *model, const char *cname) {
    const qvl_config *cfg = qvl_model_config(m);
    const int D = cfg->text.hidden_size, V = cfg->text.vocab_size;
    char cdir[256], rdir[300], ddir[512];
    snprintf(cdir, sizeof cdir, FIX "/ref/%s", cname);
    snprintf(rdir, sizeof rdir, "%s/%s", cdir, model);
    snprintf(ddir, sizeof ddir, "%s/dump_%s_%s", test_tmpdir(), model, cname);
    mkdir(ddir, 0755);
    if (verbose()) fprintf(stderr, "  %s / %s\n", model, cname);

    qvl_npy ids_a, grid_a = {0}, px_a = {0}, pos_a;
    CHECK_INT(load(cdir, "input_ids", &ids_a), 0);
    CHECK_INT(load(rdir, "position_ids", &pos_a), 0);
    int has_img = load(cdir, "image_grid_thw", &grid_a) == 0;
    if (has_img) CHECK_INT(load(cdir, "pixel_values", &px_a), 0);
    int n = (int)ids_a.shape[0];
    int32_t *ids = malloc(n * sizeof *ids);
    for (int i = 0; i < n; i++) ids[i] = (int32_t)((int64_t *)ids_a.data)[i];

    /* Vision tower, image by image; outputs concatenated as the reference batches them. */
    int n_img = has_img ? (int)grid_a.shape[0] : 0;
    qvl_vision_out imgs[4] = {0};
    qvl_model_set_dump_dir(m, ddir);
    const float *px = has_img ? px_a.data : NULL;
    int tok_total = 0;
    for (int i = 0; i < n_img; i++) {
        const int64_t *g = (int64_t *)grid_a.data + 3 * i;
        qvl_pixel_values pv = {(float *)px, (int)(g[0] * g[1] * g[2]), (int)px_a.shape[1], (int)g[0], (int)g[1],
                               (int)g[2], (int)g[1] * 16, (int)g[2] * 16, (int)(g[0] * g[1] * g[2] / 4)};
        CHECK_INT(qvl_model_encode_image(m, &pv, &imgs[i]), 0);
        px += (size_t)pv.num_patches * pv.row_len;
        tok_total += imgs[i].n_tokens;
    }
    if (n_img == 1) {
        /* The interpolated position table alone: the reference's embed - patch_embed. */
        qvl_npy pe, emb, ours;
        if (load(rdir, "vision.patch_embed", &pe) == 0 && load(rdir, "vision.embed", &emb) == 0 &&
            load(ddir, "vision.pos_embed", &ours) == 0) {
            size_t cnt = emb.nbytes / 4;
            float *ref_pos = malloc(emb.nbytes);
            for (size_t i = 0; i < cnt; i++) ref_pos[i] = ((float *)emb.data)[i] - ((float *)pe.data)[i];
            double e = ours.nbytes == emb.nbytes ? rel_err(ours.data, ref_pos, cnt) : 1e9;
            /* Tighter than TOL: only the subtraction's rounding is allowed, so a one-ulp shift of
             * the sample points (e.g. torch's older symmetric linspace, 2.5e-6 here) fails. */
            if (!(e <= 5e-7)) test_fail(__FILE__, __LINE__, "%s %s: vision.pos_embed relative error %.3g", model, cname, e);
            if (verbose()) fprintf(stderr, "    %-22s %.2e (vs embed - patch_embed)\n", "vision.pos_embed", e);
            free(ref_pos);
            qvl_npy_free(&pe);
            qvl_npy_free(&emb);
            qvl_npy_free(&ours);
        } else
            test_fail(__FILE__, __LINE__, "%s %s: position-table dumps missing", model, cname);
        const char *stages[] = {"vision.patch_embed", "vision.embed", "vision.merger"};
        for (int k = 0; k < 3; k++) compare_dump(ddir, rdir, stages[k]);
        for (int b = 0; b < cfg->vision.depth; b++) {
            char nm[32];
            snprintf(nm, sizeof nm, "vision.block%d", b);
            compare_dump(ddir, rdir, nm);
        }
    }
    if (n_img > 0) { /* merger + deepstack outputs of all images against the reference's batch */
        float *cat = malloc((size_t)tok_total * D * sizeof(float));
        for (int j = -1; j < cfg->vision.n_deepstack; j++) {
            char nm[32];
            if (j < 0)
                snprintf(nm, sizeof nm, "vision.merger");
            else
                snprintf(nm, sizeof nm, "vision.deepstack%d", j);
            size_t off = 0;
            for (int i = 0; i < n_img; i++) {
                const float *src = j < 0 ? imgs[i].embeds : imgs[i].deepstack[j];
                memcpy(cat + off, src, (size_t)imgs[i].n_tokens * D * sizeof(float));
                off += (size_t)imgs[i].n_tokens * D;
            }
            qvl_npy ref;
            if (load(rdir, nm, &ref) == 0) {
                CHECK_INT(ref.nbytes, off * sizeof(float));
                double e = ref.nbytes == off * sizeof(float) ? rel_err(cat, ref.data, off) : 1e9;
                if (!(e <= TOL)) test_fail(__FILE__, __LINE__, "%s %s %s: relative error %.3g", model, cname, nm, e);
                if (verbose()) fprintf(stderr, "    %-22s %.2e (API, all images)\n", nm, e);
                qvl_npy_free(&ref);
            } else
                test_fail(__FILE__, __LINE__, "missing reference %s/%s", rdir, nm);
        }
        free(cat);
    }

    /* MRoPE positions. */
    int32_t *pos = malloc(3 * (size_t)n * sizeof *pos);
    int grids[4][3], delta = 0;
    for (int i = 0; i < n_img; i++)
        for (int k = 0; k < 3; k++) grids[i][k] = (int)((int64_t *)grid_a.data)[3 * i + k];
    CHECK_INT(qvl_mrope_positions(ids, n, cfg->image_token_id, (const int(*)[3])grids, n_img, 2, pos, &delta), 0);
    int pos_bad = 0, max_pos = 0;
    for (int i = 0; i < 3 * n; i++) {
        int64_t r = ((int64_t *)pos_a.data)[i];
        pos_bad += pos[i] != r;
        if (r > max_pos) max_pos = (int)r;
    }
    CHECK_INT(pos_bad, 0);
    CHECK_INT(delta, max_pos + 1 - n);

    /* Prefill: every text stage, then the last-position logits. */
    qvl_seq *s = qvl_seq_new(m, n + 40);
    float *logits = malloc((size_t)V * sizeof(float));
    CHECK_INT(qvl_seq_prefill(m, s, ids, n, imgs, n_img, logits), 0);
    qvl_model_set_dump_dir(m, NULL);
    compare_dump(ddir, rdir, "text.embed");
    for (int l = 0; l < cfg->text.num_layers; l++) {
        char nm[32];
        snprintf(nm, sizeof nm, "text.layer%d.in", l);
        compare_dump(ddir, rdir, nm);
        snprintf(nm, sizeof nm, "text.layer%d.out", l);
        compare_dump(ddir, rdir, nm);
    }
    compare_dump(ddir, rdir, "text.norm");

    qvl_npy stats, top_ids, top_vals, full;
    CHECK_INT(load(rdir, "logits_stats", &stats), 0);
    CHECK_INT(load(rdir, "logits_top_ids", &top_ids), 0);
    CHECK_INT(load(rdir, "logits_top_vals", &top_vals), 0);
    double absmax = ((float *)stats.data)[0], e_top = 0;
    for (int k = 0; k < (int)top_ids.shape[0]; k++) {
        double d = fabs(logits[((int64_t *)top_ids.data)[k]] - ((float *)top_vals.data)[k]) / absmax;
        if (!(d <= e_top)) e_top = d;
    }
    if (!(e_top <= TOL)) test_fail(__FILE__, __LINE__, "%s %s: top-256 logits relative error %.3g", model, cname, e_top);
    if (verbose()) fprintf(stderr, "    %-22s %.2e (top 256)\n", "logits", e_top);
    if (load(rdir, "logits_last", &full) == 0) {
        double e = rel_err(logits, full.data, (size_t)V);
        if (!(e <= TOL)) test_fail(__FILE__, __LINE__, "%s %s: logits relative error %.3g", model, cname, e);
        if (verbose()) fprintf(stderr, "    %-22s %.2e (all %d)\n", "logits", e, V);
        qvl_npy_free(&full);
    }

    /* Teacher-forced greedy steps: feed the reference token, compare our argmax with it. */
    qvl_npy gtok, gmar, gtop;
    CHECK_INT(load(rdir, "gen_tokens", &gtok), 0);
    CHECK_INT(load(rdir, "gen_margins", &gmar), 0);
    CHECK_INT(load(rdir, "gen_top1", &gtop), 0);
    int steps = (int)gtok.shape[0], checked = 0, agree = 0;
    double e_step = 0;
    for (int t = 0; t < steps; t++) {
        int64_t want = ((int64_t *)gtok.data)[t];
        int best = 0;
        for (int v = 1; v < V; v++)
            if (logits[v] > logits[best]) best = v;
        if (((float *)gmar.data)[t] > MARGIN) {
            checked++;
            agree += best == want;
            if (best != want) test_fail(__FILE__, __LINE__, "%s %s step %d: token %d, reference %lld", model, cname, t, best, (long long)want);
        }
        double d = fabs(logits[want] - ((float *)gtop.data)[t]) / absmax;
        if (!(d <= e_step)) e_step = d;
        if (t + 1 < steps) CHECK_INT(qvl_seq_decode(m, s, (int32_t)want, logits), 0);
    }
    if (!(e_step <= TOL)) test_fail(__FILE__, __LINE__, "%s %s: decode top-1 logit relative error %.3g", model, cname, e_step);
    CHECK_INT(agree, checked);
    CHECK_INT(qvl_seq_len(s), n + steps - 1);
    if (verbose()) fprintf(stderr, "    greedy: %d/%d steps agree (margin > %g), top-1 logit err %.2e\n", agree, checked, MARGIN, e_step);

    qvl_npy_free(&gtok);
    qvl_npy_free(&gmar);
    qvl_npy_free(&gtop);
    qvl_npy_free(&stats);
    qvl_npy_free(&top_ids);
    qvl_npy_free(&top_vals);
    free(logits);
    qvl_seq_free(s);
    free(pos);
    for (int i = 0; i < n_img; i++) qvl_vision_out_free(&imgs[i]);
    free(ids);
    qvl_npy_free(&ids_a);
    qvl_npy_free(&pos_a);
    if (has_img) {
        qvl_npy_free(&grid_a);
        qvl_npy_free(&px_a);
    }
}

static void run_model(const char *model) {
    char dir[256];
    snprintf(dir, sizeof dir, FIX "/%s", model);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    qvl_model *m = qvl_model_open(dir, 2);
    if (!m) {
        test_fail(__FILE__, __LINE__, "open %s: %s", dir, qvl_error());
        return;
    }
    for (size_t c = 0; c < sizeof CASES / sizeof *CASES; c++) run_case(m, model, CASES[c]);
    qvl_model_close(m);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (verbose()) fprintf(stderr, "  %s: %.2f s\n", model, (t1.tv_sec - t0.tv_sec) + 1e-9 * (t1.tv_nsec - t0.tv_nsec));
}

TEST(forward_tiny_tied_matches_reference) { run_model("tied"); }
TEST(forward_tiny_untied_matches_reference) { run_model("untied"); }
