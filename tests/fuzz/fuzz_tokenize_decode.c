/* Decoding arbitrary ids with the real Qwen3 tokenizer, whole and streamed: byte 0 picks
 * skip_special (bit 0) and whether ids are taken raw (bit 1: negative and huge ids) or modulo a bit
 * over the vocabulary, then little-endian int32 ids. Ids >= 0 must always decode; the same ids go
 * through the streaming decoder. */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "tokenizer/tokenizer.h"

static qvl_tokenizer *tok;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!tok && !(tok = qvl_tokenizer_load(fuzz_repo_path("models/tokenizer/tokenizer.json")))) abort();
    if (size < 1) return 0;
    int skip = data[0] & 1;
    size_t n = (size - 1) / 4;
    int32_t *ids = malloc((n ? n : 1) * sizeof *ids);
    if (!ids) abort();
    for (size_t i = 0; i < n; i++) {
        const uint8_t *p = data + 1 + 4 * i;
        uint32_t v = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
        /* Mostly ids near the vocabulary, so that the fuzzer meets real tokens. */
        ids[i] = (data[0] & 2) ? (int32_t)v : (int32_t)(v % 152000u);
    }
    size_t len = 0;
    char *text = qvl_tokenizer_decode_len(tok, ids, n, skip, &len);
    int any_negative = 0;
    for (size_t i = 0; i < n; i++) any_negative |= ids[i] < 0;
    if (!text && !any_negative) fuzz_fail("decode refused ids that are all >= 0");
    if (!any_negative) {
        qvl_detok_stream *s = qvl_detok_stream_new(tok, skip);
        if (!s) abort();
        for (size_t i = 0; i < n; i++) {
            (void)qvl_detok_stream_push(s, ids[i]);
            (void)qvl_detok_stream_last_len(s);
        }
        (void)qvl_detok_stream_flush(s);
        qvl_detok_stream_free(s);
    }
    free(text);
    free(ids);
    return 0;
}
