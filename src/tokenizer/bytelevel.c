#include "tokenizer/bytelevel.h"

#include <pthread.h>
#include <string.h>

#include "tokenizer/utf8.h"

/* Printable Latin-1 bytes stand for themselves; the other 68 take U+0100.. in byte order. */
static int is_self(unsigned b) { return (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174; }

int bytelevel_byte(uint32_t cp) {
    if (cp < 256) return is_self(cp) ? (int)cp : -1;
    if (cp >= 256 + 68) return -1;
    unsigned k = cp - 256;
    for (unsigned b = 0; b < 256; b++)
        if (!is_self(b) && k-- == 0) return (int)b;
    return -1;
}

static int16_t byte_of[256 + 68];
static pthread_once_t byte_of_once = PTHREAD_ONCE_INIT;
static void build_byte_of(void) {
    for (uint32_t cp = 0; cp < 256 + 68; cp++) byte_of[cp] = (int16_t)bytelevel_byte(cp);
}

size_t bytelevel_unmap(const char *s, size_t n, char *out) {
    pthread_once(&byte_of_once, build_byte_of);
    const unsigned char *u = (const unsigned char *)s;
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        int k = utf8_seq_len(u + i, n - i);
        uint32_t cp = k > 0 ? utf8_get(u + i, k) : 0xFFFFFFFF;
        if (cp >= 256 + 68 || byte_of[cp] < 0) {
            memcpy(out, s, n);
            return n;
        }
        out[o++] = (char)byte_of[cp];
        i += (size_t)k;
    }
    return o;
}
