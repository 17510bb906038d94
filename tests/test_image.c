/* Image pipeline unit tests: smart_resize, pixel options, resize properties, patch layout,
 * normalization, bad inputs and `qvl preprocess`. Parity with the reference: test_image_parity.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "image/image.h"
#include "io/npy.h"
#include "test.h"
#include "util/error.h"

#define IMG "tests/fixtures/image/images/"

TEST(image_smart_resize_examples) {
    int h, w;
    CHECK_INT(qvl_smart_resize(768, 1024, 32, 65536, 16777216, &h, &w), 0); /* spec 2.1 example */
    CHECK_INT(h, 768);
    CHECK_INT(w, 1024);
    CHECK_INT(qvl_smart_resize(80, 112, 32, 4096, 16777216, &h, &w), 0);  /* 2.5 -> 2, 3.5 -> 4 */
    CHECK_INT(h, 64);
    CHECK_INT(w, 128);
    CHECK_INT(qvl_smart_resize(1, 1, 32, 65536, 16777216, &h, &w), 0);    /* min-pixels branch */
    CHECK_INT(h, 256);
    CHECK_INT(w, 256);
    CHECK_INT(qvl_smart_resize(6000, 8000, 32, 65536, 16777216, &h, &w), 0); /* max-pixels branch */
    CHECK_INT(h, 3520);
    CHECK_INT(w, 4704);
    CHECK(h * (long)w <= 16777216);
    CHECK_INT(qvl_smart_resize(10, 2000, 32, 65536, 16384, &h, &w), 0);   /* max(32, .) clamp */
    CHECK_INT(h, 32);
    CHECK_INT(qvl_smart_resize(1, 200, 32, 65536, 16777216, &h, &w), 0);  /* ratio 200 is allowed */
    CHECK_INT(qvl_smart_resize(1, 201, 32, 65536, 16777216, &h, &w), -1);
    CHECK_CONTAINS(qvl_error(), "absolute aspect ratio must be smaller than 200");
    CHECK_INT(qvl_smart_resize(0, 10, 32, 65536, 16777216, &h, &w), -1);
}

TEST(image_pixel_options) {
    qvl_image_params p = qvl_image_params_default();
    CHECK_INT(p.min_pixels, 65536);
    CHECK_INT(p.max_pixels, 16777216);
    CHECK_INT(qvl_image_params_set_pixels(&p, -1, -1, 256), 0);
    CHECK_INT(p.max_pixels, 262144);
    CHECK_INT(p.min_pixels, 65536);
    CHECK_INT(qvl_image_params_set_pixels(&p, -1, -1, 16), 0); /* cap below min: min follows */
    CHECK_INT(p.max_pixels, 16384);
    CHECK_INT(p.min_pixels, 16384);
    p = qvl_image_params_default();
    CHECK_INT(qvl_image_params_set_pixels(&p, 4096, 1000000, -1), 0);
    CHECK_INT(p.min_pixels, 4096);
    CHECK_INT(p.max_pixels, 1000000);
    CHECK_INT(qvl_image_params_set_pixels(&p, 2000000, -1, -1), -1);
    CHECK_CONTAINS(qvl_error(), "exceeds");
    CHECK_INT(qvl_image_params_set_pixels(&p, 0, -1, -1), -1);
}

/* A constant image stays constant through any resize (weights sum to 1 within rounding), and an
 * unchanged size is an exact copy. */
TEST(image_resize_constant_and_identity) {
    int sizes[][4] = {{1, 1, 256, 256}, {37, 53, 64, 32}, {300, 20, 32, 96}, {64, 64, 64, 64}, {500, 10, 32, 32}};
    for (size_t t = 0; t < sizeof sizes / sizeof sizes[0]; t++) {
        int ih = sizes[t][0], iw = sizes[t][1], oh = sizes[t][2], ow = sizes[t][3];
        uint8_t *in = malloc((size_t)ih * iw * 3), *out = malloc((size_t)oh * ow * 3);
        for (size_t i = 0; i < (size_t)ih * iw; i++) in[3 * i] = 77, in[3 * i + 1] = 0, in[3 * i + 2] = 255;
        CHECK_INT(qvl_resize_bicubic(in, ih, iw, out, oh, ow, 2), 0);
        int bad = 0;
        for (size_t i = 0; i < (size_t)oh * ow; i++) bad += out[3 * i] != 77 || out[3 * i + 1] != 0 || out[3 * i + 2] != 255;
        CHECK_INT(bad, 0);
        free(in);
        free(out);
    }
    uint8_t in[6 * 4 * 3], out[6 * 4 * 3];
    for (int i = 0; i < 72; i++) in[i] = (uint8_t)(i * 37);
    CHECK_INT(qvl_resize_bicubic(in, 6, 4, out, 6, 4, 1), 0);
    CHECK(memcmp(in, out, sizeof in) == 0);
}

/* The same bytes whatever the thread count (rows are split, sums are integers). */
TEST(image_resize_threads_agree) {
    int ih = 123, iw = 457, oh = 320, ow = 224;
    uint8_t *in = malloc((size_t)ih * iw * 3), *a = malloc((size_t)oh * ow * 3), *b = malloc((size_t)oh * ow * 3);
    for (size_t i = 0; i < (size_t)ih * iw * 3; i++) in[i] = (uint8_t)((i * 2654435761u) >> 13);
    CHECK_INT(qvl_resize_bicubic(in, ih, iw, a, oh, ow, 1), 0);
    CHECK_INT(qvl_resize_bicubic(in, ih, iw, b, oh, ow, 7), 0);
    CHECK(memcmp(a, b, (size_t)oh * ow * 3) == 0);
    free(in);
    free(a);
    free(b);
}

/* Patch layout: row = 2x2 merge block order, column = ((c*2 + t)*16 + py)*16 + px. */
TEST(image_patch_layout) {
    int h = 64, w = 96;
    uint8_t *rgb = malloc((size_t)h * w * 3);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int c = 0; c < 3; c++) rgb[(y * w + x) * 3 + c] = (uint8_t)((x + 3 * y + 85 * c) & 255);
    qvl_image_params p = qvl_image_params_default();
    qvl_pixel_values pv;
    CHECK_INT(qvl_image_patchify(rgb, h, w, &p, &pv), 0);
    CHECK_INT(pv.num_patches, 4 * 6);
    CHECK_INT(pv.row_len, 1536);
    CHECK_INT(pv.grid_t, 1);
    CHECK_INT(pv.grid_h, 4);
    CHECK_INT(pv.grid_w, 6);
    CHECK_INT(pv.image_tokens, 6);
    int bad = 0;
    for (int i = 0; i < pv.num_patches; i++) {
        int iw = i % 2, ih = (i / 2) % 2, blk = i / 4, bc = blk % 3, br = blk / 3;
        int prow = 2 * br + ih, pcol = 2 * bc + iw;
        for (int c = 0; c < 3; c++)
            for (int t = 0; t < 2; t++)
                for (int py = 0; py < 16; py++)
                    for (int px = 0; px < 16; px++) {
                        int y = prow * 16 + py, x = pcol * 16 + px;
                        float want = ((float)rgb[(y * w + x) * 3 + c] - 127.5f) / 127.5f;
                        float got = pv.data[(size_t)i * 1536 + ((c * 2 + t) * 16 + py) * 16 + px];
                        bad += memcmp(&want, &got, 4) != 0;
                    }
    }
    CHECK_INT(bad, 0);
    CHECK_NEAR(pv.data[0], -1.0, 0); /* pixel (0,0) red = 0 */
    qvl_pixel_values_free(&pv);
    free(rgb);
}

TEST(image_normalize_values) {
    uint8_t rgb[32 * 32 * 3];
    for (int i = 0; i < 32 * 32 * 3; i++) rgb[i] = (uint8_t)(i % 3 == 0 ? 0 : i % 3 == 1 ? 255 : 127);
    qvl_image_params p = qvl_image_params_default();
    qvl_pixel_values pv;
    CHECK_INT(qvl_image_patchify(rgb, 32, 32, &p, &pv), 0);
    CHECK_NEAR(pv.data[0], -1.0, 0);
    CHECK_NEAR(pv.data[512], 1.0, 0);            /* c = 1 */
    CHECK(pv.data[1024] == (127.0f - 127.5f) / 127.5f); /* c = 2 */
    qvl_pixel_values_free(&pv);
}

static void check_refused(const char *file, const char *reason) {
    qvl_image img;
    qvl_error_clear();
    CHECK_INT(qvl_image_load(file, &img), -1);
    CHECK_CONTAINS(qvl_error(), file);
    CHECK_CONTAINS(qvl_error(), reason);
    CHECK(strchr(qvl_error(), '\n') == NULL);
    CHECK(img.rgb == NULL);
}

TEST(image_bad_inputs) {
    check_refused(IMG "bad_truncated.jpg", "truncated");
    check_refused(IMG "bad_truncated_baseline.jpg", "truncated");
    check_refused(IMG "bad_truncated.png", "truncated");
    check_refused(IMG "bad_corrupt.png", "corrupt");
    check_refused(IMG "bad_zero_size.png", "PNG");
    check_refused(IMG "bad_huge_100000x100000.png", "too large");
    check_refused(IMG "bad_huge_65000x65000.jpg", "too large");
    check_refused(IMG "bad_empty.png", "empty");
    check_refused(IMG "bad_text.jpg", "unrecognized image format");
    check_refused(IMG "bad_truncated.gif", "GIF");
    check_refused(IMG "bad_truncated.webp", "WebP");
    check_refused(IMG "bad_truncated.bmp", "truncated");
    check_refused(IMG "unsupported_tiff_32x32.tiff", "unsupported image format (TIFF)");
    check_refused(IMG "no_such_file.png", "No such file");
    qvl_image img;
    CHECK_INT(qvl_image_load(IMG "png_named_as.jpg", &img), 0); /* format from magic bytes */
    CHECK_INT(img.width, 90);
    CHECK_INT(img.height, 70);
    qvl_image_free(&img);
}

TEST(image_cli_preprocess) {
    char *out = NULL, *err = NULL, npy[512];
    snprintf(npy, sizeof npy, "%s/pv.npy", test_tmpdir());
    CHECK_INT(test_qvl(&out, &err, "preprocess --image " IMG "jpeg_420_text_800x600.jpg --npy %s", npy), 0);
    CHECK_STR(out, "{\"grid_thw\": [1, 38, 50], \"resized\": [608, 800], \"image_tokens\": 475, \"num_patches\": 1900}\n");
    qvl_npy a;
    CHECK_INT(qvl_npy_read(npy, &a), 0);
    CHECK_STR(a.dtype, "<f4");
    CHECK_INT(a.shape[0], 1900);
    CHECK_INT(a.shape[1], 1536);
    qvl_npy_free(&a);
    free(out), free(err);
    CHECK_INT(test_qvl(&out, &err, "preprocess --image " IMG "jpeg_420_text_800x600.jpg --npy=%s --max-image-tokens 100", npy), 0);
    CHECK_CONTAINS(out, "\"image_tokens\": 88"); /* 256x352: under the cap of 100 */
    free(out), free(err);
    CHECK_INT(test_qvl(&out, &err, "preprocess --image " IMG "jpeg_1x1.jpg --npy %s --min-pixels 4096", npy), 0);
    CHECK_CONTAINS(out, "\"resized\": [64, 64]");
    free(out), free(err);
    CHECK_INT(test_qvl(&out, &err, "preprocess --npy %s", npy), 2);
    CHECK_CONTAINS(err, "qvl: preprocess: --image FILE is required");
    free(out), free(err);
    CHECK_INT(test_qvl(&out, &err, "preprocess --image " IMG "bad_truncated.png --npy %s", npy), 1);
    CHECK_CONTAINS(err, "qvl: " IMG "bad_truncated.png: ");
    free(out), free(err);
    CHECK_INT(test_qvl(&out, &err, "preprocess --image " IMG "png_aspect_bad_3x700.png --npy %s", npy), 1);
    CHECK_CONTAINS(err, "png_aspect_bad_3x700.png: absolute aspect ratio must be smaller than 200");
    free(out), free(err);
    CHECK_INT(test_qvl(&out, &err, "preprocess --image x.png --npy %s --min-pixels 10 --max-pixels 5", npy), 2);
    CHECK_CONTAINS(err, "exceeds");
    free(out), free(err);
}

/* --model takes the pixel limits from the folder's preprocessor_config.json (the tiny fixture
 * model uses min 4096); the result must equal the real processor's pixel_values stored by
 * tools/gen_tiny_models.py (transformers 5.17 on the GPU machine) for the same image. */
TEST(image_cli_preprocess_model_matches_tiny_reference) {
    char *out = NULL, *err = NULL, npy[512];
    snprintf(npy, sizeof npy, "%s/tiny.npy", test_tmpdir());
    CHECK_INT(test_qvl(&out, &err, "preprocess --model tests/fixtures/tiny/tied --image tests/fixtures/tiny/images/odd80x112.png --npy %s", npy), 0);
    CHECK_STR(out, "{\"grid_thw\": [1, 4, 8], \"resized\": [64, 128], \"image_tokens\": 8, \"num_patches\": 32}\n");
    qvl_npy a, ref;
    CHECK_INT(qvl_npy_read(npy, &a), 0);
    CHECK_INT(qvl_npy_read("tests/fixtures/tiny/ref/img_resize/pixel_values.npy", &ref), 0);
    CHECK_INT(a.nbytes, ref.nbytes);
    CHECK(a.nbytes == ref.nbytes && memcmp(a.data, ref.data, a.nbytes) == 0);
    qvl_npy_free(&a);
    qvl_npy_free(&ref);
    free(out), free(err);
    CHECK_INT(test_qvl(&out, &err, "preprocess --model /nonexistent --image x.png --npy %s", npy), 1);
    CHECK_CONTAINS(err, "qvl: ");
    free(out), free(err);
}
