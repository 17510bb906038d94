/* qvl serve's request handling without the HTTP layer: a POST /v1/chat/completions body parsed into a
 * qvl request (src/serve/chat_request.c: messages, parts, sampling fields, stop strings), its images
 * (src/serve/media.c: data URLs, base64, the size and pixel caps from the header), then the answer
 * pieces built from it (src/serve/stop.c, chat_response.c). Limits are small so the caps are met. */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "serve/chat_request.h"
#include "serve/chat_response.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    serve_chat_limits lim = {.max_images = 4, .max_messages = 32, .default_max_tokens = 16, .default_seed = 1,
                             .media = {.allowed_dir = NULL, .max_bytes = 64 << 10, .max_pixels = 1 << 20}};
    serve_chat c;
    int status = 0;
    char err[512];
    err[0] = 0;
    if (serve_chat_parse((const char *)data, size, &lim, &c, &status, err, sizeof err)) {
        if (status != 400 && status != 413 && status != 500) fuzz_fail("a refusal without a 400/413/500 status");
        if (!err[0]) fuzz_fail("a refusal without a message");
        char *j = serve_error_json(status, err);
        free(j);
    } else {
        if (c.n_images > lim.max_images) fuzz_fail("more images than the limit");
        if (c.req.n_messages > lim.max_messages) fuzz_fail("more messages than the limit");
        /* The body's text as generated text against the request's stop strings. */
        size_t n = size < 256 ? size : 256;
        long at = serve_stop_find(&c.stops, (const char *)data, n, 0);
        if (at >= (long)n) fuzz_fail("stop match past the text");
        if (serve_stop_safe_len(&c.stops, (const char *)data, n) > n) fuzz_fail("safe length past the text");
    }
    serve_chat_free(&c);
    return 0;
}
