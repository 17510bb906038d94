/* Stop-string matching over text that arrives in pieces (see stop.h). */
#include "serve/stop.h"

#include <string.h>

long serve_stop_find(const serve_stops *st, const char *text, size_t n, size_t from) {
    long best = -1;
    for (int i = 0; i < st->n; i++) {
        size_t L = st->len[i];
        if (L == 0 || L > n) continue;
        /* A match ending at or after `from` starts at or after from - L + 1. */
        size_t start = from >= L ? from - L + 1 : 0;
        for (size_t p = start; p + L <= n; p++) {
            if (best >= 0 && (long)p >= best) break;
            if (text[p] == st->s[i][0] && memcmp(text + p, st->s[i], L) == 0) {
                best = (long)p;
                break;
            }
        }
    }
    return best;
}

size_t serve_stop_safe_len(const serve_stops *st, const char *text, size_t n) {
    size_t hold = 0;
    for (int i = 0; i < st->n; i++) {
        size_t L = st->len[i];
        if (!L) continue;
        for (size_t k = (L - 1 < n ? L - 1 : n); k > hold; k--)
            if (memcmp(text + n - k, st->s[i], k) == 0) {
                hold = k;
                break;
            }
    }
    return n - hold;
}
