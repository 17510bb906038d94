/* Error reporting for the library: a failing function records one line, "<item>: <reason>",
 * and returns an error value; the CLI prints it as "qvl: <line>" and exits 1. */
#ifndef QVL_UTIL_ERROR_H
#define QVL_UTIL_ERROR_H

/* Records the message (printf format) for this thread; always returns -1 so callers can
 * write `return qvl_errorf("%s: truncated header", path);`. */
int qvl_errorf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* The last message recorded on this thread ("" if none). */
const char *qvl_error(void);
/* Clears the message. */
void qvl_error_clear(void);
/* The kind of the last error (a qvl_error_code of qvl.h; 0 = not classified). qvl_errorf resets it
 * to 0; qvl_error_set_kind classifies the message just recorded. */
void qvl_error_set_kind(int code);
int qvl_error_kind(void);

#endif
