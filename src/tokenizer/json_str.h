/* JSON string literals with arbitrary content (including U+0000, which cJSON cannot hold), for
 * `qvl tokenize` and the tokenizer's fixture tests. */
#ifndef QVL_TOKENIZER_JSON_STR_H
#define QVL_TOKENIZER_JSON_STR_H
#include <stddef.h>

#include "tokenizer/utf8.h"

/* Parses the JSON string literal starting at s[0] (after optional whitespace) into out (appended,
 * UTF-8). *end: the first byte after the closing quote. -1 + qvl_error("<what>: <reason>"). */
int json_str_parse(const char *s, size_t n, utf8_buf *out, size_t *end, const char *what);
/* Appends s[0..n) as a JSON string literal (control characters escaped, UTF-8 kept). */
int json_str_write(utf8_buf *out, const char *s, size_t n);

#endif
