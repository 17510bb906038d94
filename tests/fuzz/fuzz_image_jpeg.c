/* The jpeg decoder (src/image/decode_jpeg.c) with the header probe (image.h). */
#include "image.h"

static int fuzz_image_magic(const uint8_t *data, size_t size) { return size >= 3 && !memcmp(data, "\xff\xd8\xff", 3); }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    return fuzz_image(data, size, "fuzz.jpeg", qvl_decode_jpeg);
}
