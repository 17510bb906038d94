/* The png decoder (src/image/decode_png.c) with the header probe (image.h). */
#include "image.h"

static int fuzz_image_magic(const uint8_t *data, size_t size) { return size >= 8 && !memcmp(data, "\x89PNG\r\n\x1a\n", 8); }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    return fuzz_image(data, size, "fuzz.png", qvl_decode_png);
}
