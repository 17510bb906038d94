/* qvl serve's image URLs (src/serve/media.c): data: URLs (media type, parameters, base64) and the
 * byte and pixel caps checked from the image header before decoding; file and remote URLs are
 * refused (no folder is allowed here). */
#include <stdlib.h>

#include "fuzz.h"
#include "serve/media.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *url = fuzz_cstr(data, size);
    serve_media_policy p = {.allowed_dir = NULL, .max_bytes = 64 << 10, .max_pixels = 1 << 20};
    size_t n = 0;
    int status = 0;
    char err[512];
    err[0] = 0;
    uint8_t *img = serve_media_load(url, "messages[0].content[0]", &p, &n, &status, err, sizeof err);
    if (img) {
        if (n == 0 || (long)n > p.max_bytes) fuzz_fail("an accepted image is empty or over the byte cap");
        free(img);
    } else if ((status != 400 && status != 413 && status != 500) || !err[0]) {
        fuzz_fail("a refusal without status or message");
    }
    free(url);
    return 0;
}
