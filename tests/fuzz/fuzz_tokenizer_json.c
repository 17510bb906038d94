/* tokenizer.json loading (normalizer, pre-tokenizer regex, vocabulary, merges, added tokens); a
 * tokenizer that loads then encodes and decodes a fixed text. */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "tokenizer/tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    qvl_tokenizer *tok = qvl_tokenizer_load(fuzz_write("tokenizer.json", data, size));
    if (!tok) return 0;
    static const char text[] = "<|im_start|>user\nHello, world! 123 \xe4\xbd\xa0\xe5\xa5\xbd  \n<|im_end|>";
    int32_t *ids = NULL;
    size_t n = 0;
    if (qvl_tokenizer_encode(tok, text, sizeof text - 1, &ids, &n) == 0) {
        for (size_t i = 0; i < n; i++)
            if (ids[i] < 0 || ids[i] >= qvl_tokenizer_vocab_size(tok)) fuzz_fail("encode gave an id out of range");
        char *back = qvl_tokenizer_decode(tok, ids, n, 0);
        free(back);
        free(ids);
    }
    qvl_tokenizer_free(tok);
    return 0;
}
