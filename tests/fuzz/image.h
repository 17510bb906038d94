/* One image decoder under the fuzzer (fuzz_image_*.c): the header probe (src/image/probe.c) and
 * the decoder must agree: when both accept an input they give the same size. Inputs whose header
 * declares more than FUZZ_IMAGE_PIXELS are not decoded (a legitimately huge image is slow, not a
 * bug; the server refuses them from the header: serve_media_load). */
#ifndef QVL_TESTS_FUZZ_IMAGE_H
#define QVL_TESTS_FUZZ_IMAGE_H
#include "fuzz.h"
#include "image/decode_internal.h"
#include "image/probe.h"

#define FUZZ_IMAGE_PIXELS (1L << 20)

#include <string.h>

/* 1 when data starts as this format does (each harness defines it as decode.c dispatches). */
static int fuzz_image_magic(const uint8_t *data, size_t size);

static inline int fuzz_image(const uint8_t *data, size_t size, const char *name,
                             int (*decode)(const uint8_t *, size_t, const char *, qvl_image *)) {
    /* The decoders sit behind qvl_image_decode's dispatch by magic bytes; inputs without this
     * format's magic never reach them there, and the probe would read them as another format. */
    if (!fuzz_image_magic(data, size)) return 0;
    int w = 0, h = 0;
    int probed = qvl_image_probe(data, size, name, &w, &h) == 0;
    if (probed && (w < 1 || h < 1)) fuzz_fail("probe accepted an empty size");
    if (probed && (long)w * h > FUZZ_IMAGE_PIXELS) return 0;
    qvl_image img = {0};   /* as qvl_image_decode runs the decoders: zeroed, freed on failure */
    if (decode(data, size, name, &img)) {
        qvl_image_free(&img);
        return 0;
    }
    if (img.width < 1 || img.height < 1 || !img.rgb) fuzz_fail("decoder accepted an empty image");
    if (probed && (img.width != w || img.height != h)) fuzz_fail("probe and decoder disagree on the size");
    /* Every pixel byte was written (ASan/UBSan cannot see uninitialized reads; this at least reads
     * all of them). */
    unsigned sum = 0;
    for (size_t i = 0; i < (size_t)img.width * img.height * 3; i++) sum += img.rgb[i];
    fuzz_sink = sum;
    qvl_image_free(&img);
    return 0;
}
#endif
