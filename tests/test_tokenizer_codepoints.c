/* Every Unicode scalar value, encoded inside a probe string, gives the reference's ids
 * (tools/gen_tokenizer_codepoints.py): this pins down the regex classes (\p{L}, \p{N}, \s under
 * the reference's Unicode tables), NFC next to a letter, and byte-level BPE for all of Unicode. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test.h"
#include "tokenizer/pretok.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"

const qvl_tokenizer *test_qwen_tokenizer(void);

/* The probe "a" c "1" c " " c c "\n" c, as in the generator; returns its length (c may be U+0000). */
static size_t make_probe(uint32_t cp, char *s) {
    char c[4];
    int k = utf8_put(cp, c);
    const char *lits[] = {"a", NULL, "1", NULL, " ", NULL, NULL, "\n", NULL};
    size_t n = 0;
    for (int i = 0; i < 9; i++) {
        if (lits[i]) s[n++] = lits[i][0];
        else memcpy(s + n, c, (size_t)k), n += (size_t)k;
    }
    return n;
}

TEST(tokenizer_parity_every_codepoint) {
    const qvl_tokenizer *tok = test_qwen_tokenizer();
    CHECK(tok != NULL);
    if (!tok) return;
    FILE *f = fopen("tests/fixtures/tokenizer/codepoint_blocks.txt", "r");
    CHECK(f != NULL);
    if (!f) return;
    unsigned first;
    unsigned long long want;
    int blocks = 0, same = 0;
    while (fscanf(f, "%x %llx", &first, &want) == 2) {
        unsigned long long h = 0;
        for (uint32_t cp = first; cp < first + 256; cp++) {
            unsigned long long hc = 0;
            if (cp < 0xD800 || cp > 0xDFFF) {
                char s[64];
                size_t n = make_probe(cp, s);
                int32_t *ids;
                size_t m;
                if (qvl_tokenizer_encode(tok, s, n, &ids, &m) == 0) {
                    hc = m;
                    for (size_t i = 0; i < m; i++) hc = hc * 1000003ull + (unsigned long long)ids[i];
                    free(ids);
                }
            }
            h = h * 1000003ull + hc;
        }
        blocks++;
        if (h == want) same++;
        else if (blocks - same <= 10) test_fail(__FILE__, __LINE__, "code points U+%04X..U+%04X differ", first, first + 255);
    }
    fclose(f);
    fprintf(stderr, "    code point sweep: %d/%d blocks of 256 identical\n", same, blocks);
    CHECK_INT(blocks, 0x110000 / 256);
    CHECK_INT(same, blocks);
}

/* The pre-tokenizer alone: for every code point, the pieces the Split regex cuts the probe
 * "a" c c "'s" c "1" c "\n" c "x " c "  " c into have the reference's byte lengths. This is where
 * a letter/number/space class difference shows even when BPE happens to hide it. */
TEST(tokenizer_parity_every_codepoint_split) {
    const qvl_tokenizer *tok = test_qwen_tokenizer();
    if (!tok) return;
    FILE *f = fopen("tests/fixtures/tokenizer/split_blocks.txt", "r");
    CHECK(f != NULL);
    if (!f) return;
    tok_splitter *sp = tok_splitter_new(tok);
    unsigned first;
    unsigned long long want;
    int blocks = 0, same = 0;
    while (fscanf(f, "%x %llx", &first, &want) == 2) {
        unsigned long long h = 0;
        for (uint32_t cp = first; cp < first + 256; cp++) {
            unsigned long long hc = 0;
            if (cp < 0xD800 || cp > 0xDFFF) {
                char c[4], s[80];
                int k = utf8_put(cp, c);
                const char *lits[] = {"a", NULL, NULL, "'s", NULL, "1", NULL, "\n", NULL, "x ", NULL, "  ", NULL};
                size_t n = 0;
                for (int i = 0; i < 13; i++) {
                    size_t m = lits[i] ? strlen(lits[i]) : (size_t)k;
                    memcpy(s + n, lits[i] ? lits[i] : c, m);
                    n += m;
                }
                size_t lens[32], np = 0, pos = 0, ms, me;
                while (pos < n && np < 30 && tok_split_next(tok, sp, s, n, pos, &ms, &me) == 1) {
                    if (ms > pos) lens[np++] = ms - pos;
                    lens[np++] = me - ms;
                    pos = me;
                }
                if (pos < n) lens[np++] = n - pos;
                hc = np;
                for (size_t i = 0; i < np; i++) hc = hc * 1000003ull + lens[i];
            }
            h = h * 1000003ull + hc;
        }
        blocks++;
        if (h == want) same++;
        else if (blocks - same <= 10) test_fail(__FILE__, __LINE__, "split of U+%04X..U+%04X differs", first, first + 255);
    }
    fclose(f);
    tok_splitter_free(sp);
    fprintf(stderr, "    split sweep: %d/%d blocks of 256 identical\n", same, blocks);
    CHECK_INT(blocks, 0x110000 / 256);
    CHECK_INT(same, blocks);
}
