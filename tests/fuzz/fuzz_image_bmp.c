/* The bmp decoder (src/image/decode_bmp.c) with the header probe (image.h). */
#include "image.h"

static int fuzz_image_magic(const uint8_t *data, size_t size) { return size >= 2 && !memcmp(data, "BM", 2); }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    return fuzz_image(data, size, "fuzz.bmp", qvl_decode_bmp);
}
