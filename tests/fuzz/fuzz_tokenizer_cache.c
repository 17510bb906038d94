/* The tokenizer's binary cache file (src/tokenizer/tokenizer_cache.c). The input is a cache file;
 * the harness sets its key fields (JSON size and hash) and its payload length and checksum to
 * match, so that the fuzzer reaches the table checks behind the checksum (a cache tampered with
 * consistently must still never index out of bounds). A tokenizer that loads then encodes and
 * decodes a fixed text. */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "tokenizer/tokenizer_internal.h"

/* Offsets in the cache header (tokenizer_cache.c, cache_header). */
enum { HDR_JSON_SIZE = 16, HDR_JSON_HASH = 24, HDR_PAYLOAD_LEN = 72, HDR_PAYLOAD_HASH = 80, HDR_SIZE = 88 };
enum { KEY_SIZE = 12345 };
#define KEY_HASH 0x0123456789abcdefull

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < HDR_SIZE) return 0;
    uint8_t *buf = malloc(size);
    if (!buf) abort();
    memcpy(buf, data, size);
    uint64_t v = KEY_SIZE;
    memcpy(buf + HDR_JSON_SIZE, &v, 8);
    v = KEY_HASH;
    memcpy(buf + HDR_JSON_HASH, &v, 8);
    v = size - HDR_SIZE;
    memcpy(buf + HDR_PAYLOAD_LEN, &v, 8);
    v = tok_hash_bytes(buf + HDR_SIZE, size - HDR_SIZE);
    memcpy(buf + HDR_PAYLOAD_HASH, &v, 8);
    fuzz_write("tokenizer-0123456789abcdef-12345.bin", buf, size);
    free(buf);
    qvl_tokenizer *tok = tok_cache_load(fuzz_dir(), "tokenizer.json", KEY_SIZE, KEY_HASH);
    if (!tok) return 0;
    static const char text[] = "<|im_start|>user\nHello, world! 123 \xe4\xbd\xa0\xe5\xa5\xbd  \n<|im_end|>";
    int32_t *ids = NULL;
    size_t n = 0;
    if (qvl_tokenizer_encode(tok, text, sizeof text - 1, &ids, &n) == 0) {
        for (size_t i = 0; i < n; i++)
            if (ids[i] < 0 || ids[i] >= tok->n_tokens) fuzz_fail("encode gave an id out of range");
        free(qvl_tokenizer_decode(tok, ids, n, 0));
        free(ids);
    }
    qvl_tokenizer_free(tok);
    return 0;
}
