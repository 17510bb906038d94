#include "tokenizer/json_str.h"

#include <stdio.h>
#include <string.h>

#include "util/error.h"

static int hex4(const char *s, size_t n, size_t i, unsigned *v) {
    if (i + 4 > n) return -1;
    *v = 0;
    for (int k = 0; k < 4; k++) {
        char c = s[i + k];
        unsigned d = c >= '0' && c <= '9' ? (unsigned)(c - '0') : c >= 'a' && c <= 'f' ? (unsigned)(c - 'a' + 10)
                   : c >= 'A' && c <= 'F' ? (unsigned)(c - 'A' + 10) : 16;
        if (d > 15) return -1;
        *v = *v * 16 + d;
    }
    return 0;
}

int json_str_parse(const char *s, size_t n, utf8_buf *out, size_t *end, const char *what) {
    size_t i = 0;
    while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r' || s[i] == '\n')) i++;
    if (i >= n || s[i] != '"') return qvl_errorf("%s: expected a JSON string", what);
    i++;
    if (utf8_buf_reserve(out, n)) return qvl_errorf("%s: out of memory", what);
    for (;;) {
        if (i >= n) return qvl_errorf("%s: unterminated JSON string", what);
        unsigned char c = (unsigned char)s[i];
        if (c == '"') break;
        if (c < 0x20) return qvl_errorf("%s: control character in JSON string", what);
        if (c != '\\') {
            out->data[out->len++] = (char)c;
            i++;
            continue;
        }
        if (++i >= n) return qvl_errorf("%s: unterminated JSON string", what);
        char e = s[i++], lit = 0;
        switch (e) {
        case '"': lit = '"'; break;
        case '\\': lit = '\\'; break;
        case '/': lit = '/'; break;
        case 'b': lit = '\b'; break;
        case 'f': lit = '\f'; break;
        case 'n': lit = '\n'; break;
        case 'r': lit = '\r'; break;
        case 't': lit = '\t'; break;
        case 'u': {
            unsigned u, lo;
            if (hex4(s, n, i, &u)) return qvl_errorf("%s: bad \\u escape in JSON string", what);
            i += 4;
            if (u >= 0xD800 && u <= 0xDBFF) {
                if (i + 6 > n || s[i] != '\\' || s[i + 1] != 'u' || hex4(s, n, i + 2, &lo) || lo < 0xDC00 || lo > 0xDFFF)
                    return qvl_errorf("%s: unpaired surrogate in JSON string", what);
                i += 6;
                u = 0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00);
            } else if (u >= 0xDC00 && u <= 0xDFFF) {
                return qvl_errorf("%s: unpaired surrogate in JSON string", what);
            }
            out->len += (size_t)utf8_put(u, out->data + out->len); /* <= 6 input bytes gave >= 4 of room */
            continue;
        }
        default: return qvl_errorf("%s: bad escape \\%c in JSON string", what, e);
        }
        out->data[out->len++] = lit;
    }
    out->data[out->len] = 0;
    if (end) *end = i + 1;
    return 0;
}

int json_str_write(utf8_buf *out, const char *s, size_t n) {
    if (utf8_buf_reserve(out, 6 * n + 2)) return -1;
    char *o = out->data + out->len;
    *o++ = '"';
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            *o++ = '\\';
            *o++ = (char)c;
        } else if (c == '\n') {
            *o++ = '\\', *o++ = 'n';
        } else if (c == '\r') {
            *o++ = '\\', *o++ = 'r';
        } else if (c == '\t') {
            *o++ = '\\', *o++ = 't';
        } else if (c < 0x20 || c == 0x7F) {
            o += sprintf(o, "\\u%04x", c);
        } else {
            *o++ = (char)c;
        }
    }
    *o++ = '"';
    *o = 0;
    out->len = (size_t)(o - out->data);
    return 0;
}
