/* Python-exact lower() and strip() (see unicode_case.h). The tables come from Python itself
 * (tools/gen_unicode_case.py), so no library's idea of "simple" case mapping leaks in: utf8proc's
 * utf8proc_tolower, for one, maps U+0130 to plain "i" where Python gives "i" U+0307. */
#include "eval/unicode_case.h"

#include <stdlib.h>
#include <string.h>

#include "eval/unicode_case_table.inc"
#include "tokenizer/utf8.h"

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))
/* A byte that is not part of valid UTF-8 travels through as this marker | byte. */
#define RAW_BYTE 0x80000000u

static int in_ranges(const uint32_t (*r)[2], size_t n, uint32_t cp) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (cp < r[mid][0]) hi = mid;
        else if (cp > r[mid][1]) lo = mid + 1;
        else return 1;
    }
    return 0;
}

int qvl_py_lower_cp(uint32_t cp, uint32_t out[2]) {
    if (cp == 0x3A3) {
        out[0] = 0x3C3;
        return 1;
    }
    size_t lo = 0, hi = COUNT(python_lower_map);
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (cp < python_lower_map[mid][0]) hi = mid;
        else if (cp > python_lower_map[mid][0]) lo = mid + 1;
        else {
            out[0] = python_lower_map[mid][1];
            out[1] = python_lower_map[mid][2];
            return out[1] ? 2 : 1;
        }
    }
    out[0] = cp;
    return 1;
}

int qvl_py_isspace(uint32_t c) {
    return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 ||
           c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 ||
           c == 0x202F || c == 0x205F || c == 0x3000;
}

/* Decodes one code point at s[0..len); returns its byte length (>= 1). Where utf8_seq_len finds no
 * complete valid sequence (bad continuation, overlong, surrogate, > U+10FFFF, cut short), one byte
 * decodes as RAW_BYTE | byte. */
static size_t utf8_decode(const unsigned char *s, size_t len, uint32_t *cp) {
    int k = utf8_seq_len(s, len);
    if (k <= 0) {
        *cp = RAW_BYTE | s[0];
        return 1;
    }
    *cp = utf8_get(s, k);
    return (size_t)k;
}

/* utf8_put, except that a RAW_BYTE travels out as the byte it was. */
static size_t utf8_encode(uint32_t c, char *out) {
    if (c & RAW_BYTE) { out[0] = (char)(c & 0xFF); return 1; }
    return (size_t)utf8_put(c, out);
}

static int is_ignorable(uint32_t c) {
    return !(c & RAW_BYTE) && in_ranges(python_ignorable_ranges, COUNT(python_ignorable_ranges), c);
}
static int is_cased(uint32_t c) {
    return !(c & RAW_BYTE) && in_ranges(python_cased_ranges, COUNT(python_cased_ranges), c);
}

/* Python's Final_Sigma test for the U+03A3 at cps[i]: a cased letter before it (skipping
 * case-ignorables) and no cased letter after it (skipping case-ignorables). */
static int final_sigma(const uint32_t *cps, size_t n, size_t i) {
    size_t j = i;
    while (j > 0 && is_ignorable(cps[j - 1])) j--;
    if (j == 0 || !is_cased(cps[j - 1])) return 0;
    j = i + 1;
    while (j < n && is_ignorable(cps[j])) j++;
    return j == n || !is_cased(cps[j]);
}

char *qvl_py_lower(const char *s, size_t len, size_t *out_len) {
    const unsigned char *u = (const unsigned char *)s;
    uint32_t *cps = malloc((len + 1) * sizeof *cps);
    /* Lower-casing grows a string by at most 3/2 (U+0130: 2 bytes -> 3 bytes; U+023A: 2 -> 3). */
    char *out = malloc(len * 2 + 1);
    if (!cps || !out) {
        free(cps);
        free(out);
        return NULL;
    }
    size_t n = 0;
    for (size_t i = 0; i < len;) i += utf8_decode(u + i, len - i, &cps[n++]);
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t c = cps[i], low[2];
        if (c & RAW_BYTE) {
            o += utf8_encode(c, out + o);
            continue;
        }
        if (c == 0x3A3) {
            o += utf8_encode(final_sigma(cps, n, i) ? 0x3C2 : 0x3C3, out + o);
            continue;
        }
        int k = qvl_py_lower_cp(c, low);
        for (int j = 0; j < k; j++) o += utf8_encode(low[j], out + o);
    }
    out[o] = 0;
    free(cps);
    if (out_len) *out_len = o;
    return out;
}

/* Decodes the code point that ends at s[end-1]; returns its byte length. */
static size_t utf8_decode_back(const unsigned char *s, size_t end, uint32_t *cp) {
    size_t start = end - 1;
    while (start > 0 && end - start < 4 && (s[start] & 0xC0) == 0x80) start--;
    size_t n = utf8_decode(s + start, end - start, cp);
    if (start + n != end) {  /* not one valid sequence ending here: a raw byte */
        *cp = RAW_BYTE | s[end - 1];
        return 1;
    }
    return n;
}

size_t qvl_py_strip(const char *s, size_t len, size_t *start) {
    const unsigned char *u = (const unsigned char *)s;
    size_t a = 0, b = len;
    while (a < b) {
        uint32_t c;
        size_t n = utf8_decode(u + a, b - a, &c);
        if (!qvl_py_isspace(c)) break;
        a += n;
    }
    while (b > a) {
        uint32_t c;
        size_t n = utf8_decode_back(u, b, &c);
        if (!qvl_py_isspace(c)) break;
        b -= n;
    }
    *start = a;
    return b - a;
}
