/* Stop strings (OpenAI `stop`): the answer ends before the first place any of them occurs. While
 * text streams in, the tail that could still grow into a stop string is held back. */
#ifndef QVL_SERVE_STOP_H
#define QVL_SERVE_STOP_H
#include <stddef.h>

enum { SERVE_MAX_STOP = 4, SERVE_MAX_STOP_LEN = 256 };

typedef struct {
    const char *s[SERVE_MAX_STOP];
    size_t len[SERVE_MAX_STOP];
    int n;
} serve_stops;

/* The first match in text[0..n) of any stop string that ends at or after `from` (bytes already
 * checked before `from` need not be searched again): its start, or -1 if none. */
long serve_stop_find(const serve_stops *st, const char *text, size_t n, size_t from);

/* How much of text[0..n) may be sent now: n minus the longest suffix that is a proper prefix of a
 * stop string (that suffix may still become a match). */
size_t serve_stop_safe_len(const serve_stops *st, const char *text, size_t n);

#endif
