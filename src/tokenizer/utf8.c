#include "tokenizer/utf8.h"

#include <stdlib.h>
#include <string.h>

/* Allowed range of the second byte for each lead byte (Unicode Table 3-7); 0 if not a lead. */
static int lead_info(unsigned char c, unsigned char *lo, unsigned char *hi) {
    *lo = 0x80, *hi = 0xBF;
    if (c < 0x80) return 1;
    if (c < 0xC2) return 0;
    if (c < 0xE0) return 2;
    if (c < 0xF0) {
        if (c == 0xE0) *lo = 0xA0;
        if (c == 0xED) *hi = 0x9F;
        return 3;
    }
    if (c < 0xF5) {
        if (c == 0xF0) *lo = 0x90;
        if (c == 0xF4) *hi = 0x8F;
        return 4;
    }
    return 0;
}

int utf8_seq_len(const unsigned char *s, size_t n) {
    unsigned char lo, hi;
    int need = lead_info(s[0], &lo, &hi);
    if (need <= 1) return need;
    for (int i = 1; i < need; i++) {
        if ((size_t)i >= n) return -i;
        unsigned char c = s[i];
        if (i == 1 ? (c < lo || c > hi) : (c < 0x80 || c > 0xBF)) return 0;
    }
    return need;
}

size_t utf8_bad_len(const unsigned char *s, size_t n) {
    unsigned char lo, hi;
    int need = lead_info(s[0], &lo, &hi);
    if (need <= 1) return 1;
    size_t i = 1;
    for (; i < (size_t)need && i < n; i++) {
        unsigned char c = s[i];
        if (i == 1 ? (c < lo || c > hi) : (c < 0x80 || c > 0xBF)) break;
    }
    return i;
}

size_t utf8_first_invalid(const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        if (s[i] < 0x80) {
            i++;
            continue;
        }
        int k = utf8_seq_len(s + i, n - i);
        if (k <= 0) return i;
        i += (size_t)k;
    }
    return n;
}

int utf8_put(uint32_t cp, char *out) {
    unsigned char *o = (unsigned char *)out;
    if (cp < 0x80) { o[0] = (unsigned char)cp; return 1; }
    if (cp < 0x800) {
        o[0] = (unsigned char)(0xC0 | (cp >> 6));
        o[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (unsigned char)(0xE0 | (cp >> 12));
        o[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (unsigned char)(0xF0 | (cp >> 18));
    o[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

uint32_t utf8_get(const unsigned char *s, int len) {
    switch (len) {
    case 1: return s[0];
    case 2: return ((uint32_t)(s[0] & 0x1F) << 6) | (s[1] & 0x3F);
    case 3: return ((uint32_t)(s[0] & 0x0F) << 12) | ((uint32_t)(s[1] & 0x3F) << 6) | (s[2] & 0x3F);
    default:
        return ((uint32_t)(s[0] & 0x07) << 18) | ((uint32_t)(s[1] & 0x3F) << 12) |
               ((uint32_t)(s[2] & 0x3F) << 6) | (s[3] & 0x3F);
    }
}

int utf8_buf_reserve(utf8_buf *b, size_t extra) {
    if (b->len + extra + 1 <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->len + extra + 1) cap *= 2;
    char *d = realloc(b->data, cap);
    if (!d) return -1;
    b->data = d;
    b->cap = cap;
    return 0;
}

size_t utf8_lossy_append(utf8_buf *out, const unsigned char *s, size_t n, int final) {
    /* Worst case every byte becomes U+FFFD (3 bytes). */
    if (utf8_buf_reserve(out, 3 * n)) return (size_t)-1;
    size_t i = 0;
    while (i < n) {
        if (s[i] < 0x80) {
            out->data[out->len++] = (char)s[i++];
            continue;
        }
        int k = utf8_seq_len(s + i, n - i);
        if (k > 0) {
            memcpy(out->data + out->len, s + i, (size_t)k);
            out->len += (size_t)k;
            i += (size_t)k;
        } else if (k < 0 && !final) {
            break; /* may still become valid */
        } else {
            size_t bad = k < 0 ? (size_t)-k : utf8_bad_len(s + i, n - i);
            memcpy(out->data + out->len, "\xEF\xBF\xBD", 3);
            out->len += 3;
            i += bad;
        }
    }
    out->data[out->len] = 0;
    return i;
}
