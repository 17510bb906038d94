/* The tokenizer's NFC normalizer, matching the reference's (older) Unicode data. */
#ifndef QVL_TOKENIZER_NORMALIZE_H
#define QVL_TOKENIZER_NORMALIZE_H
#include <stddef.h>

/* NFC of valid UTF-8 s[0..n); malloc'd, NUL-terminated, length in *out_len. NULL + qvl_error. */
char *tok_nfc(const char *s, size_t n, size_t *out_len);

#endif
