/* Corrupted inputs: every fixture image truncated at many points and with bytes flipped (fixed
 * seed) must decode or fail with one line naming the item, never crash (run under ASan in CI). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "image/image.h"
#include "test.h"
#include "util/error.h"
#include "util/file.h"

static const char *files[] = {
    "jpeg_444_photo_333x217.jpg", "jpeg_progressive_640x480.jpg", "jpeg_cmyk_200x150.jpg",
    "jpeg_ycck_160x120.jpg", "jpeg_restart_400x300.jpg", "png_interlaced_rgb_233x177.png",
    "png_pal4_50x40.png", "png_gray16_128x64.png", "png_rgba16_90x60.png", "webp_lossy_alpha_200x150.webp",
    "webp_lossless_alpha_99x77.webp", "gif_interlaced_150x150.gif", "gif_anim_64x64.gif",
    "bmp4_31x17.bmp", "bmp16_565_40x30.bmp", "bmp8_pal_100x80.bmp", "bmp24_topdown_50x20.bmp",
};

static uint32_t next_rand(uint32_t *s) {
    *s = *s * 1664525u + 1013904223u;
    return *s >> 8;
}

static void check_one(const uint8_t *d, size_t n, const char *name, int *decoded, int *refused) {
    qvl_image img;
    qvl_error_clear();
    if (qvl_image_decode(d, n, name, &img) == 0) {
        CHECK(img.rgb != NULL && img.width > 0 && img.height > 0);
        (*decoded)++;
        qvl_image_free(&img);
    } else {
        CHECK(img.rgb == NULL);
        CHECK(strncmp(qvl_error(), name, strlen(name)) == 0);
        CHECK(strchr(qvl_error(), '\n') == NULL);
        (*refused)++;
    }
}

TEST(image_corrupt_inputs_never_crash) {
    uint32_t seed = 12345;
    int decoded = 0, refused = 0;
    for (size_t f = 0; f < sizeof files / sizeof files[0]; f++) {
        char path[256];
        snprintf(path, sizeof path, "tests/fixtures/image/images/%s", files[f]);
        size_t n;
        uint8_t *orig = (uint8_t *)qvl_read_file(path, &n);
        CHECK(orig != NULL);
        if (!orig) continue;
        uint8_t *buf = malloc(n);
        for (int t = 0; t < 12; t++) { /* truncations, spread over the file */
            size_t cut = (size_t)next_rand(&seed) % n;
            uint8_t *copy = malloc(cut ? cut : 1); /* exact size, so ASan sees any over-read */
            memcpy(copy, orig, cut);
            check_one(copy, cut, files[f], &decoded, &refused);
            free(copy);
        }
        for (int t = 0; t < 12; t++) { /* 1-8 random bytes changed */
            memcpy(buf, orig, n);
            int k = 1 + (int)(next_rand(&seed) % 8);
            for (int i = 0; i < k; i++) buf[next_rand(&seed) % n] = (uint8_t)next_rand(&seed);
            check_one(buf, n, files[f], &decoded, &refused);
        }
        free(buf);
        free(orig);
    }
    CHECK(decoded > 0);
    CHECK(refused > 0);
}
