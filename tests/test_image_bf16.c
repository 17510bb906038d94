/* BF16 pixel_values (qvl_image_params.out_bf16, the CUDA path's input): bit for bit the bfloat16
 * rounding (nearest, ties to even) of the F32 pixel_values, on the image fixtures, into the
 * caller's buffer, one thread or several, default and non-default normalisation; a buffer too
 * small is an error. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "image/image.h"
#include "test.h"
#include "util/error.h"

#define IMG "tests/fixtures/image/images/"

/* Reference rounding written independently of preprocess.c: the two bf16 neighbours of x by
 * truncation, the nearer wins, an exact tie goes to the even one (finite x only). */
static uint16_t ref_bf16(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    uint32_t lo = u & 0xffff0000u, rest = u & 0xffffu;
    uint16_t down = (uint16_t)(lo >> 16), up = (uint16_t)(down + 1);
    if (rest > 0x8000u) return up;
    if (rest < 0x8000u) return down;
    return (down & 1) ? up : down;
}

/* Preprocesses path both ways under p; returns the number of mismatching values (-1: failure). */
static long compare(const char *path, qvl_image_params p, int *patches) {
    qvl_image img;
    if (qvl_image_load(path, &img)) return -1;
    qvl_pixel_values a = {0}, b = {0};
    long bad = -1;
    p.out_bf16 = 0;
    if (qvl_image_preprocess(&img, &p, &a) == 0) {
        size_t n = (size_t)a.num_patches * a.row_len;
        uint16_t *buf = malloc(n * 2 + 64);
        buf[n] = 0x1234; /* must stay: nothing written past the image */
        p.out_bf16 = 1, p.bf16_buf = buf, p.bf16_buf_bytes = n * 2 + 64;
        if (qvl_image_preprocess(&img, &p, &b) == 0 && b.data == NULL && b.num_patches == a.num_patches &&
            b.row_len == a.row_len && b.grid_h == a.grid_h && b.grid_w == a.grid_w && b.image_tokens == a.image_tokens &&
            buf[n] == 0x1234) {
            bad = 0;
            for (size_t i = 0; i < n; i++) bad += buf[i] != ref_bf16(a.data[i]);
            *patches = a.num_patches;
        }
        qvl_pixel_values_free(&b);
        free(buf);
    }
    qvl_pixel_values_free(&a);
    qvl_image_free(&img);
    return bad;
}

TEST(image_bf16_reference_rounding) {
    CHECK_INT(ref_bf16(1.0f), 0x3f80);
    CHECK_INT(ref_bf16(-1.0f), 0xbf80);
    CHECK_INT(ref_bf16(1.00390625f), 0x3f80); /* 1 + 2^-8: a tie, to even (down) */
    CHECK_INT(ref_bf16(1.01171875f), 0x3f82); /* 1 + 3*2^-8: a tie, to even (up) */
    CHECK_INT(ref_bf16(1.005f), 0x3f81);
}

TEST(image_bf16_pixels_match_f32) {
    static const char *files[] = {"jpeg_420_text_800x600.jpg", "png_noise_odd_311x187.png", "jpeg_ocr_131x58.jpg",
                                  "png_rgba_320x240.png",      "gif_200x100.gif",           "bmp24_123x45.bmp",
                                  "png_wide_500x10.png",       "jpeg_1x1.jpg"};
    for (size_t f = 0; f < sizeof files / sizeof *files; f++) {
        char path[256];
        snprintf(path, sizeof path, IMG "%s", files[f]);
        qvl_image_params p = qvl_image_params_default();
        p.threads = (int)(f % 3) + 1;
        int patches = 0;
        long bad = compare(path, p, &patches);
        if (bad != 0) test_fail(__FILE__, __LINE__, "%s: %ld bf16 values differ (-1: failed)", files[f], bad);
        CHECK(patches >= 256);
    }
    /* Non-default normalisation (values with more mantissa bits, so the rounding is exercised). */
    qvl_image_params p = qvl_image_params_default();
    const float mean[3] = {0.48145466f, 0.4578275f, 0.40821073f}, std[3] = {0.26862954f, 0.26130258f, 0.27577711f};
    memcpy(p.image_mean, mean, sizeof mean), memcpy(p.image_std, std, sizeof std);
    p.threads = 2;
    int patches = 0;
    CHECK_INT(compare(IMG "png_noise_odd_311x187.png", p, &patches), 0);
    CHECK_INT(compare(IMG "jpeg_422_photo_257x131.jpg", p, &patches), 0);
}

TEST(image_bf16_buffer_too_small_is_an_error) {
    qvl_image img;
    CHECK_INT(qvl_image_load(IMG "jpeg_ocr_131x58.jpg", &img), 0);
    qvl_image_params p = qvl_image_params_default();
    uint16_t small[16];
    p.out_bf16 = 1, p.bf16_buf = small, p.bf16_buf_bytes = sizeof small;
    qvl_pixel_values pv;
    CHECK_INT(qvl_image_preprocess(&img, &p, &pv), -1);
    CHECK_CONTAINS(qvl_error(), "bytes of BF16 pixels, the buffer holds 32");
    CHECK(pv.data == NULL);
    p.bf16_buf = NULL, p.bf16_buf_bytes = 1 << 30;
    CHECK_INT(qvl_image_preprocess(&img, &p, &pv), -1);
    CHECK_CONTAINS(qvl_error(), "the buffer holds 0");
    qvl_image_free(&img);
}
