/* The webp decoder (src/image/decode_webp.c) with the header probe (image.h). */
#include "image.h"

static int fuzz_image_magic(const uint8_t *data, size_t size) { return size >= 12 && !memcmp(data, "RIFF", 4) && !memcmp(data + 8, "WEBP", 4); }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    return fuzz_image(data, size, "fuzz.webp", qvl_decode_webp);
}
