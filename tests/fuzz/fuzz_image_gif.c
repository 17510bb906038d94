/* The gif decoder (src/image/decode_gif.c) with the header probe (image.h). */
#include "image.h"

static int fuzz_image_magic(const uint8_t *data, size_t size) { return size >= 6 && (!memcmp(data, "GIF87a", 6) || !memcmp(data, "GIF89a", 6)); }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    return fuzz_image(data, size, "fuzz.gif", qvl_decode_gif);
}
