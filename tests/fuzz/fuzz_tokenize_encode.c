/* Encoding arbitrary bytes with the real Qwen3 tokenizer (models/tokenizer/tokenizer.json): invalid
 * UTF-8 is refused, never a crash; for accepted text the ids decode, and the decoded text (the NFC
 * form of the input) encodes to the same ids again. */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "tokenizer/tokenizer.h"

static qvl_tokenizer *tok;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!tok && !(tok = qvl_tokenizer_load(fuzz_repo_path("models/tokenizer/tokenizer.json")))) abort();
    int32_t *ids = NULL;
    size_t n = 0;
    if (qvl_tokenizer_encode(tok, (const char *)data, size, &ids, &n)) return 0;
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= qvl_tokenizer_vocab_size(tok)) fuzz_fail("encode gave an id out of range");
    size_t len = 0;
    char *back = qvl_tokenizer_decode_len(tok, ids, n, 0, &len);
    if (!back) fuzz_fail("decode of encoded ids failed");
    int32_t *ids2 = NULL;
    size_t n2 = 0;
    if (qvl_tokenizer_encode(tok, back, len, &ids2, &n2) == 0) {
        /* encode(decode(encode(x))) == encode(x): the tokenizer's ids are a fixed point. */
        if (n2 != n || memcmp(ids, ids2, n * sizeof *ids)) fuzz_fail("encode(decode(ids)) != ids");
    } else {
        fuzz_fail("decode of encoded ids gave text that does not encode");
    }
    free(ids2);
    free(back);
    free(ids);
    return 0;
}
