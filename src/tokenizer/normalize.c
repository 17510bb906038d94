/* NFC as the reference tokenizer computes it. Its normalizer (the Rust crate
 * unicode-normalization-alignments) carries older Unicode data than utf8proc: some combining marks
 * added since (and a few other characters) are plain starters to it, never reordered, decomposed
 * or composed. Splitting the text at those characters and normalizing the pieces with utf8proc
 * gives exactly that: a starter that composes with nothing separates NFC into independent runs.
 * The list was derived from tools/gen_tokenizer_nfc_sweep.py (every code point, probed between
 * marks of several combining classes) against the Debian utf8proc that scripts/install-deps.sh
 * installs; tests/test_tokenizer_codepoints.c checks the whole sweep. */
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "tokenizer/normalize.h"
#include "tokenizer/utf8.h"
#include "util/error.h"

static const uint32_t reference_starters[][2] = {
    {0x7FD, 0x7FD},     {0x898, 0x89F},     {0x8CA, 0x8D3},     {0x9FE, 0x9FE},     {0xC3C, 0xC3C},
    {0xD3B, 0xD3C},     {0xEBA, 0xEBA},     {0x1715, 0x1715},   {0x1ABF, 0x1ACE},   {0x1DF6, 0x1DFA},
    {0xA82C, 0xA82C},   {0x10D24, 0x10D27}, {0x10EAB, 0x10EAC}, {0x10EFD, 0x10EFF}, {0x10F46, 0x10F50},
    {0x10F82, 0x10F85}, {0x11070, 0x11070}, {0x1133B, 0x1133B}, {0x1145E, 0x1145E}, {0x11839, 0x1183A},
    {0x11938, 0x11938}, {0x1193D, 0x1193E}, {0x11943, 0x11943}, {0x119E0, 0x119E0}, {0x11A34, 0x11A34},
    {0x11A47, 0x11A47}, {0x11A99, 0x11A99}, {0x11D42, 0x11D42}, {0x11D44, 0x11D45}, {0x11D97, 0x11D97},
    {0x11F41, 0x11F42}, {0x16FF0, 0x16FF1}, {0x1E08F, 0x1E08F}, {0x1E130, 0x1E136}, {0x1E2AE, 0x1E2AE},
    {0x1E2EC, 0x1E2EF}, {0x1E4EC, 0x1E4EF},
};

static int is_reference_starter(uint32_t cp) {
    size_t lo = 0, hi = sizeof reference_starters / sizeof reference_starters[0];
    if (cp < reference_starters[0][0]) return 0;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (cp < reference_starters[mid][0]) hi = mid;
        else if (cp > reference_starters[mid][1]) lo = mid + 1;
        else return 1;
    }
    return 0;
}

static int append_nfc(utf8_buf *out, const char *s, size_t n) {
    if (n == 0) return 0;
    utf8proc_uint8_t *nfc = NULL;
    utf8proc_ssize_t k = utf8proc_map((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n, &nfc,
                                      UTF8PROC_STABLE | UTF8PROC_COMPOSE);
    if (k < 0) return qvl_errorf("input: NFC normalization failed: %s", utf8proc_errmsg(k));
    int rc = utf8_buf_reserve(out, (size_t)k);
    if (!rc) {
        memcpy(out->data + out->len, nfc, (size_t)k);
        out->len += (size_t)k;
    }
    free(nfc);
    return rc ? qvl_errorf("input: out of memory") : 0;
}

char *tok_nfc(const char *s, size_t n, size_t *out_len) {
    utf8_buf out = {0};
    const unsigned char *u = (const unsigned char *)s;
    size_t seg = 0, i = 0;
    while (i < n) {
        int k = u[i] < 0x80 ? 1 : utf8_seq_len(u + i, n - i);
        if (k <= 0) k = 1; /* input was validated; be safe anyway */
        if (k >= 2 && is_reference_starter(utf8_get(u + i, k))) {
            if (append_nfc(&out, s + seg, i - seg) || utf8_buf_reserve(&out, (size_t)k)) goto fail;
            memcpy(out.data + out.len, s + i, (size_t)k);
            out.len += (size_t)k;
            seg = i + (size_t)k;
        }
        i += (size_t)k;
    }
    if (append_nfc(&out, s + seg, n - seg) || utf8_buf_reserve(&out, 0)) goto fail;
    out.data[out.len] = 0;
    *out_len = out.len;
    return out.data;
fail:
    if (!qvl_error()[0]) qvl_errorf("input: out of memory");
    free(out.data);
    return NULL;
}
