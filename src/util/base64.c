#include "util/base64.h"

#include <stdlib.h>

#include "util/error.h"

static int b64_value(unsigned char c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

uint8_t *qvl_base64_decode(const char *s, size_t len, size_t *out_len) {
    uint8_t *out = malloc(len / 4 * 3 + 4);
    if (!out) {
        qvl_errorf("invalid base64: out of memory");
        return NULL;
    }
    size_t n = 0, digits = 0, pad = 0;
    uint32_t acc = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f') continue;
        if (c == '=') {
            pad++;
            continue;
        }
        int v = b64_value(c);
        if (v < 0 || pad) {
            free(out);
            if (v < 0) qvl_errorf("invalid base64: character 0x%02x at offset %zu", c, i);
            else qvl_errorf("invalid base64: data after '=' padding at offset %zu", i);
            return NULL;
        }
        acc = acc << 6 | (uint32_t)v;
        if (++digits % 4 == 0) {
            out[n++] = (uint8_t)(acc >> 16);
            out[n++] = (uint8_t)(acc >> 8);
            out[n++] = (uint8_t)acc;
            acc = 0;
        }
    }
    size_t tail = digits % 4;
    if (tail == 1 || (pad && (tail + pad) % 4 != 0) || pad > 2) {
        free(out);
        qvl_errorf("invalid base64: truncated data (%zu digits)", digits);
        return NULL;
    }
    if (tail == 2) out[n++] = (uint8_t)(acc >> 4);
    if (tail == 3) {
        out[n++] = (uint8_t)(acc >> 10);
        out[n++] = (uint8_t)(acc >> 2);
    }
    out[n] = 0;
    *out_len = n;
    return out;
}
