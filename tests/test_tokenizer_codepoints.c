/* Every Unicode scalar value, encoded inside a probe string, gives the reference's ids
 * (tools/gen_tokenizer_codepoints.py): this pins down the regex classes (\p{L}, \p{N}, \s under
 * the reference's Unicode tables), NFC next to a letter, and byte-level BPE for all of Unicode. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test.h"
#include "tokenizer/normalize.h"
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

typedef unsigned long long (*cp_hash_fn)(void *ctx, uint32_t cp);

/* Checks the block hashes in `fixture` (lines "first hash", one per block of 256 code points, as
 * the generator writes them): a block's hash folds hash_cp of each of its code points, 0 for a
 * surrogate. Reports the first 10 blocks that differ. */
static void check_block_hashes(const char *fixture, const char *what, cp_hash_fn hash_cp, void *ctx) {
    FILE *f = fopen(fixture, "r");
    CHECK(f != NULL);
    if (!f) return;
    unsigned first;
    unsigned long long want;
    int blocks = 0, same = 0;
    while (fscanf(f, "%x %llx", &first, &want) == 2) {
        unsigned long long h = 0;
        for (uint32_t cp = first; cp < first + 256; cp++)
            h = h * 1000003ull + (cp < 0xD800 || cp > 0xDFFF ? hash_cp(ctx, cp) : 0);
        blocks++;
        if (h == want) same++;
        else if (blocks - same <= 10)
            test_fail(__FILE__, __LINE__, "%s of U+%04X..U+%04X differ", what, first, first + 255);
    }
    fclose(f);
    fprintf(stderr, "    %s sweep: %d/%d blocks of 256 identical\n", what, same, blocks);
    CHECK_INT(blocks, 0x110000 / 256);
    CHECK_INT(same, blocks);
}

/* The ids of the probe around cp: their count, then each id. */
static unsigned long long hash_probe_ids(void *ctx, uint32_t cp) {
    const qvl_tokenizer *tok = ctx;
    char s[64];
    size_t n = make_probe(cp, s);
    int32_t *ids;
    size_t m;
    unsigned long long hc = 0;
    if (qvl_tokenizer_encode(tok, s, n, &ids, &m) == 0) {
        hc = m;
        for (size_t i = 0; i < m; i++) hc = hc * 1000003ull + (unsigned long long)ids[i];
        free(ids);
    }
    return hc;
}

TEST(tokenizer_parity_every_codepoint) {
    const qvl_tokenizer *tok = test_qwen_tokenizer();
    CHECK(tok != NULL);
    if (!tok) return;
    check_block_hashes("tests/fixtures/tokenizer/codepoint_blocks.txt", "ids", hash_probe_ids, (void *)tok);
}

typedef struct {
    const qvl_tokenizer *tok;
    tok_splitter *sp;
} split_ctx;

/* The byte lengths of the pieces the Split regex cuts the probe around cp into: count, lengths. */
static unsigned long long hash_split_lengths(void *arg, uint32_t cp) {
    split_ctx *x = arg;
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
    while (pos < n && np < 30 && tok_split_next(x->tok, x->sp, s, n, pos, &ms, &me) == 1) {
        if (ms > pos) lens[np++] = ms - pos;
        lens[np++] = me - ms;
        pos = me;
    }
    if (pos < n) lens[np++] = n - pos;
    unsigned long long hc = np;
    for (size_t i = 0; i < np; i++) hc = hc * 1000003ull + lens[i];
    return hc;
}

/* The pre-tokenizer alone: for every code point, the pieces the Split regex cuts the probe
 * "a" c c "'s" c "1" c "\n" c "x " c "  " c into have the reference's byte lengths. This is where
 * a letter/number/space class difference shows even when BPE happens to hide it. */
TEST(tokenizer_parity_every_codepoint_split) {
    const qvl_tokenizer *tok = test_qwen_tokenizer();
    if (!tok) return;
    split_ctx x = {tok, tok_splitter_new(tok)};
    check_block_hashes("tests/fixtures/tokenizer/split_blocks.txt", "split", hash_split_lengths, &x);
    tok_splitter_free(x.sp);
}

/* Parses "X,Y,Z" hex code points; returns the count. */
static int parse_cps(const char *h, uint32_t *out, int max) {
    int m = 0;
    while (*h && *h != ' ' && *h != '\n' && m < max) {
        char *end;
        out[m++] = (uint32_t)strtoul(h, &end, 16);
        h = end + (*end == ',');
    }
    return m;
}

/* NFC of every code point between marks of several combining classes equals the reference
 * normalizer's (tools/gen_tokenizer_nfc_sweep.py lists the code points where NFC changes the
 * probe; for all others the probe must come out unchanged). */
TEST(tokenizer_parity_every_codepoint_nfc) {
    FILE *f = fopen("tests/fixtures/tokenizer/nfc_sweep.txt", "r");
    CHECK(f != NULL);
    if (!f) return;
    static uint32_t want_cps[0x110000 / 32]; /* bit set: listed code points */
    static char line[2048];
    memset(want_cps, 0, sizeof want_cps);
    int differ = 0, listed = 0;
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 1) rewind(f);
        uint32_t cp = 0;
        while (pass == 0 ? fgets(line, sizeof line, f) != NULL : cp < 0x110000) {
            uint32_t expect[64];
            int n_expect;
            if (pass == 0) {
                cp = (uint32_t)strtoul(line, NULL, 16);
                const char *nfc_col = strchr(strchr(line, ' ') + 1, ' ');
                if (!nfc_col || cp >= 0x110000) continue;
                n_expect = parse_cps(nfc_col + 1, expect, 64);
                want_cps[cp / 32] |= 1u << (cp % 32);
                listed++;
            } else {
                if ((cp >= 0xD800 && cp <= 0xDFFF) || (want_cps[cp / 32] >> (cp % 32) & 1)) {
                    cp++;
                    continue;
                }
                n_expect = 0;
            }
            uint32_t probe[9] = {'a', cp, 0x323, cp, 0x93C, 0x301, cp, 0x5B0, cp};
            if (pass == 1) memcpy(expect, probe, sizeof probe), n_expect = 9;
            char s[64];
            size_t n = 0, len;
            for (int i = 0; i < 9; i++) n += (size_t)utf8_put(probe[i], s + n);
            char *nfc = tok_nfc(s, n, &len);
            char e[300];
            size_t ne = 0;
            for (int i = 0; i < n_expect; i++) ne += (size_t)utf8_put(expect[i], e + ne);
            if (!nfc || len != ne || memcmp(nfc, e, ne)) {
                if (differ++ < 10) test_fail(__FILE__, __LINE__, "NFC of the probe around U+%04X differs", cp);
            }
            free(nfc);
            if (pass == 1) cp++;
        }
    }
    fclose(f);
    fprintf(stderr, "    NFC sweep: %d code points listed, %d differ\n", listed, differ);
    CHECK(listed > 10000);
    CHECK_INT(differ, 0);
}
