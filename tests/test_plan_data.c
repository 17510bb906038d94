/* Header probes (image/probe.h) against the decoders, and the data plan's token counts
 * (eval/plan_data.h) against what the engine itself counts on real samples. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval/dataset.h"
#include "eval/plan_data.h"
#include "image/image.h"
#include "image/probe.h"
#include "model/config.h"
#include "qvl.h"
#include "test.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"
#include "util/file.h"

#define IMAGES "tests/fixtures/image/images"
#define TINY_OCR "models/qvl-tiny-ocr"

static uint32_t next_rand(uint32_t *s) {
    *s = *s * 1664525u + 1013904223u;
    return *s >> 8;
}

/* The probe agrees with the decoder: same size when both succeed; a decodable file always probes;
 * a refused header fails both with the same message. */
static void check_probe_vs_decode(const uint8_t *d, size_t n, const char *name, int *same, int *both_fail) {
    qvl_image img;
    int w = -1, h = -1;
    qvl_error_clear();
    int prc = qvl_image_probe(d, n, name, &w, &h);
    char perr[512];
    snprintf(perr, sizeof perr, "%s", qvl_error());
    int drc = qvl_image_decode(d, n, name, &img);
    if (drc == 0) {
        if (prc != 0) test_fail(__FILE__, __LINE__, "%s: decodes but the probe fails: %s", name, perr);
        else if (w != img.width || h != img.height)
            test_fail(__FILE__, __LINE__, "%s: probe %dx%d, decoded %dx%d", name, w, h, img.width, img.height);
        else (*same)++;
        qvl_image_free(&img);
    } else if (prc != 0) {
        CHECK(strncmp(perr, name, strlen(name)) == 0);
        CHECK(strchr(perr, '\n') == NULL);
        (*both_fail)++;
    }
}

TEST(image_probe_matches_decoder_on_every_fixture) {
    DIR *dir = opendir(IMAGES);
    CHECK(dir != NULL);
    if (!dir) return;
    int same = 0, both_fail = 0, files = 0;
    struct dirent *e;
    while ((e = readdir(dir))) {
        if (e->d_name[0] == '.') continue;
        char path[512];
        snprintf(path, sizeof path, IMAGES "/%s", e->d_name);
        size_t n;
        uint8_t *d = (uint8_t *)qvl_read_file(path, &n);
        if (!d) continue;
        files++;
        check_probe_vs_decode(d, n, e->d_name, &same, &both_fail);
        /* the file form agrees with the memory form */
        int w1, h1, w2, h2;
        int r1 = qvl_image_probe(d, n, path, &w1, &h1), r2 = qvl_image_probe_file(path, &w2, &h2);
        CHECK_INT(r1, r2);
        if (!r1 && !r2) CHECK(w1 == w2 && h1 == h2);
        free(d);
    }
    closedir(dir);
    CHECK(files >= 60);
    CHECK(same >= 55);       /* every good fixture */
    CHECK(both_fail >= 5);   /* the bad_ ones whose header is bad */
    /* named sizes: the EXIF-rotated JPEG keeps its stored size (PIL's open + convert does not rotate) */
    int w, h;
    CHECK_INT(qvl_image_probe_file(IMAGES "/jpeg_exif_rotate_240x160.jpg", &w, &h), 0);
    CHECK(w == 240 && h == 160);
    CHECK_INT(qvl_image_probe_file(IMAGES "/png_huge_8000x6000.png", &w, &h), 0);
    CHECK(w == 8000 && h == 6000);
    CHECK_INT(qvl_image_probe_file(IMAGES "/gif_anim_64x64.gif", &w, &h), 0);
    CHECK(w == 64 && h == 64);
    CHECK(qvl_image_probe_file(IMAGES "/unsupported_tiff_32x32.tiff", &w, &h) != 0);
    CHECK_CONTAINS(qvl_error(), "unsupported image format (TIFF)");
    CHECK(qvl_image_probe_file(IMAGES "/bad_huge_100000x100000.png", &w, &h) != 0);
    CHECK_CONTAINS(qvl_error(), "image too large");
    CHECK(qvl_image_probe_file("no/such/image.png", &w, &h) != 0);
    CHECK_STR(qvl_error(), "no/such/image.png: cannot open");
}

/* Truncations and flipped bytes: the probe never says yes where the decoder says no to the header,
 * never gives another size, never crashes (ASan in CI). */
TEST(image_probe_matches_decoder_on_corrupt_inputs) {
    static const char *files[] = {"jpeg_444_photo_333x217.jpg", "jpeg_progressive_640x480.jpg", "jpeg_cmyk_200x150.jpg",
                                  "png_interlaced_rgb_233x177.png", "png_pal4_50x40.png", "webp_lossy_alpha_200x150.webp",
                                  "gif_interlaced_150x150.gif", "bmp4_31x17.bmp", "bmp16_565_40x30.bmp"};
    uint32_t seed = 777;
    int same = 0, both_fail = 0;
    for (size_t f = 0; f < sizeof files / sizeof files[0]; f++) {
        char path[256];
        snprintf(path, sizeof path, IMAGES "/%s", files[f]);
        size_t n;
        uint8_t *orig = (uint8_t *)qvl_read_file(path, &n);
        CHECK(orig != NULL);
        if (!orig) continue;
        for (int t = 0; t < 16; t++) {
            size_t cut = t < 8 ? (size_t)next_rand(&seed) % (n < 400 ? n : 400) : (size_t)next_rand(&seed) % n;
            uint8_t *copy = malloc(n);
            memcpy(copy, orig, n);
            if (t % 2) {   /* flip 1-4 bytes in the first 300 (the header) */
                for (int k = 0; k < 1 + (t % 4); k++) copy[next_rand(&seed) % (n < 300 ? n : 300)] ^= (uint8_t)(1 + next_rand(&seed) % 255);
                cut = n;
            }
            uint8_t *exact = malloc(cut ? cut : 1);   /* exact size: ASan sees any over-read */
            memcpy(exact, copy, cut);
            check_probe_vs_decode(exact, cut, files[f], &same, &both_fail);
            free(exact);
            free(copy);
        }
        free(orig);
    }
    CHECK(same + both_fail > 0);
}

/* Runs the engine (CPU, tiny OCR model) on every sample of a dataset with the given settings and
 * checks the plan's counts against each result: prompt tokens, image tokens, downscale, overflow. */
static void check_against_engine(const char *data, long max_model_len, long max_image_tokens, int downscale,
                                 int *checked, long *changed) {
    qvl_config cfg;
    CHECK_INT(qvl_config_load(TINY_OCR, &cfg), 0);
    qvl_dataset ds;
    CHECK_INT(qvl_dataset_load(data, NULL, 1, &ds), 0);
    qvl_tokenizer *tok = qvl_tokenizer_load(TINY_OCR);
    CHECK(tok != NULL);
    if (!tok) return;
    qvl_data_plan dp;
    CHECK_INT(qvl_data_plan_probe(&ds, 0, ds.n_samples, tok, &dp), 0);
    qvl_image_params ip = qvl_config_image_params(&cfg);
    CHECK_INT(qvl_image_params_set_pixels(&ip, -1, -1, max_image_tokens > 0 ? max_image_tokens : -1), 0);
    CHECK_INT(qvl_data_plan_settle(&dp, &cfg, &ip, max_model_len, downscale, 1), 0);

    qvl_engine_opts o = qvl_engine_opts_default();
    o.model_dir = TINY_OCR;
    o.device = QVL_DEVICE_CPU;
    o.threads = 2;
    o.max_model_len = max_model_len;
    o.max_image_tokens = max_image_tokens;
    qvl_engine *e = qvl_engine_open(&o);
    CHECK(e != NULL);
    int largest = 0;
    for (long i = 0; e && i < ds.n_samples; i++) {
        const qvl_sample *s = &ds.samples[i];
        const qvl_plan_sample *p = &dp.samples[i];
        CHECK_INT(p->index, s->index);
        if (s->error) {
            CHECK_INT(p->status, QVL_PLAN_FAILED);
            continue;
        }
        char name[64];
        snprintf(name, sizeof name, "sample %ld image", s->index);
        qvl_request r = {.image_path = s->image_path, .image_data = s->image_data, .image_size = s->image_size,
                         .image_name = name, .prompt = s->question};
        qvl_gen_opts g = qvl_gen_opts_default();
        g.max_new_tokens = 1;
        g.on_overflow_downscale = downscale;
        qvl_result res;
        int rc = qvl_generate(e, &r, &g, &res);
        if (rc != 0) {
            if (p->status == QVL_PLAN_OK)
                test_fail(__FILE__, __LINE__, "%s sample %ld: the plan runs it, the engine fails: %s", data, s->index,
                          qvl_last_error());
            continue;
        }
        if (p->status != QVL_PLAN_OK) {
            test_fail(__FILE__, __LINE__, "%s sample %ld: the engine runs it, the plan says %s", data, s->index, p->error);
        } else {
            CHECK_INT(p->prompt_tokens, res.prompt_tokens);
            CHECK_INT(p->image_tokens, res.image_tokens);
            CHECK_INT(p->full_image_tokens != p->image_tokens ? p->full_image_tokens : 0, res.downscaled_from_tokens);
            if (res.prompt_tokens > largest) largest = res.prompt_tokens;
            (*checked)++;
        }
        qvl_result_free(&res);
    }
    CHECK_INT(dp.largest_prompt, largest);
    *changed += dp.n_downscaled + dp.n_overflow;
    qvl_engine_close(e);
    qvl_data_plan_free(&dp);
    qvl_tokenizer_free(tok);
    qvl_dataset_free(&ds);
}

TEST(plan_data_prompt_tokens_equal_the_engines) {
    int checked = 0;
    long changed = 0;
    /* real OCRBench images of every source dataset, default pixel limits, then a tighter cap */
    check_against_engine("tests/fixtures/ocrbench/json/OCRBench.json", -1, -1, 0, &checked, &changed);
    check_against_engine("tests/fixtures/ocrbench/json/OCRBench.json", -1, 16, 0, &checked, &changed);
    CHECK_INT(changed, 0);
    /* a short context that most prompts overflow: downscaled by the engine's rule, or failed */
    check_against_engine("tests/fixtures/ocrbench/json/OCRBench.json", 38, -1, 1, &checked, &changed);
    CHECK(changed >= 5);
    changed = 0;
    check_against_engine("tests/fixtures/ocrbench/json/OCRBench.json", 38, -1, 0, &checked, &changed);
    CHECK(changed >= 5);
    /* base64 images in a TSV (in-memory probe) */
    check_against_engine("tests/fixtures/ocrbench/OCRBench.tsv", -1, -1, 0, &checked, &changed);
    CHECK(checked >= 40);
}

TEST(plan_data_unreadable_headers_fail_and_are_ignored) {
    const char *dir = test_tmpdir();
    char *good = qvl_path_join(dir, "good.png"), *bad = qvl_path_join(dir, "bad.png");
    size_t n;
    char *png = qvl_read_file(IMAGES "/png_rgb_text_1280x720.png", &n);
    CHECK(png != NULL);
    FILE *f = fopen(good, "wb");
    fwrite(png, 1, n, f);
    fclose(f);
    f = fopen(bad, "wb");
    fwrite(png, 1, 20, f);   /* cut inside IHDR */
    fclose(f);
    free(png);
    char json[1024];
    snprintf(json, sizeof json,
             "[{\"dataset_name\": \"x\", \"id\": 0, \"image_path\": \"good.png\", \"question\": \"what is written?\", "
             "\"answers\": \"a\", \"type\": \"Regular Text Recognition\"},"
             "{\"dataset_name\": \"x\", \"id\": 1, \"image_path\": \"bad.png\", \"question\": \"what is written here in the "
             "image, please?\", \"answers\": \"a\", \"type\": \"Regular Text Recognition\"},"
             "{\"dataset_name\": \"x\", \"id\": 2, \"image_path\": \"missing.png\", \"question\": \"q\", "
             "\"answers\": \"a\", \"type\": \"Regular Text Recognition\"}]");
    char *path = test_tmp_file("OCRBench.json", json, strlen(json));
    qvl_dataset ds;
    CHECK_INT(qvl_dataset_load(path, NULL, 1, &ds), 0);
    qvl_config cfg;
    CHECK_INT(qvl_config_load(TINY_OCR, &cfg), 0);
    qvl_tokenizer *tok = qvl_tokenizer_load(TINY_OCR);
    qvl_data_plan dp;
    CHECK_INT(qvl_data_plan_probe(&ds, 0, ds.n_samples, tok, &dp), 0);
    qvl_image_params ip = qvl_config_image_params(&cfg);
    CHECK_INT(qvl_data_plan_settle(&dp, &cfg, &ip, -1, 0, 128), 0);
    CHECK_INT(dp.n, 3);
    CHECK_INT(dp.n_ok, 1);
    CHECK_INT(dp.n_failed, 2);
    CHECK_INT(dp.samples[1].status, QVL_PLAN_FAILED);
    CHECK_CONTAINS(dp.samples[1].error, "bad.png: corrupt or truncated PNG");
    CHECK(dp.samples[2].status == QVL_PLAN_FAILED && dp.samples[2].error != NULL);
    /* 1280x720 under the tiny model's 65536-pixel limit: 64 tokens (smart_resize) */
    CHECK_INT(dp.samples[0].image_tokens, qvl_plan_image_tokens(1280, 720, &ip));
    CHECK_INT(dp.largest_prompt, dp.samples[0].prompt_tokens);
    CHECK_INT(dp.largest_prompt_index, 0);
    CHECK(dp.samples[0].cost > 0 && dp.total_cost == dp.samples[0].cost);
    /* settle again with a context that the good sample overflows: skip, then downscale */
    long M = dp.samples[0].prompt_tokens - 5;
    CHECK_INT(qvl_data_plan_settle(&dp, &cfg, &ip, M, 0, 128), 0);
    CHECK_INT(dp.n_overflow, 1);
    CHECK_INT(dp.n_ok, 0);
    CHECK_INT(dp.largest_prompt, 0);
    CHECK_INT(qvl_data_plan_settle(&dp, &cfg, &ip, M, 1, 128), 0);
    CHECK_INT(dp.n_ok, 1);
    CHECK_INT(dp.n_downscaled, 1);
    CHECK(dp.largest_prompt <= M - 1);
    qvl_data_plan_free(&dp);
    qvl_tokenizer_free(tok);
    qvl_dataset_free(&ds);
    free(path), free(good), free(bad);
}

TEST(plan_cost_grows_with_the_work) {
    qvl_config cfg;
    CHECK_INT(qvl_config_load(TINY_OCR, &cfg), 0);
    double a = qvl_plan_cost(&cfg, 16, 40, 16), b = qvl_plan_cost(&cfg, 64, 88, 16), c = qvl_plan_cost(&cfg, 64, 88, 32);
    CHECK(a > 2e-3 && b > a && c > b);
}
