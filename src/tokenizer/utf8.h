/* UTF-8 helpers: strict validation, decoding and encoding of one code point (used by the tokenizer
 * and by the OCRBench scorer's lower()/strip() and literal parser), and the lossy decoding that
 * Rust's String::from_utf8_lossy (and so the reference decoder) performs. */
#ifndef QVL_TOKENIZER_UTF8_H
#define QVL_TOKENIZER_UTF8_H
#include <stddef.h>
#include <stdint.h>

/* Length of the valid UTF-8 sequence at s[0..n) (1..4), 0 if s starts with an invalid sequence,
 * or -k if s[0..n) is a valid but incomplete prefix of k bytes (n too short). Strict: no overlongs,
 * no surrogates, nothing above U+10FFFF. */
int utf8_seq_len(const unsigned char *s, size_t n);
/* Length of the "maximal subpart" of the ill-formed sequence at s (Unicode 3.9 / WHATWG): the
 * number of bytes one U+FFFD replaces. At least 1. */
size_t utf8_bad_len(const unsigned char *s, size_t n);
/* Offset of the first invalid byte, or n if all of s[0..n) is valid UTF-8. */
size_t utf8_first_invalid(const unsigned char *s, size_t n);
/* Encodes code point cp to out (>= 4 bytes); returns the byte count. */
int utf8_put(uint32_t cp, char *out);
/* Decodes the valid sequence at s (of length len from utf8_seq_len). */
uint32_t utf8_get(const unsigned char *s, int len);

/* Appends the lossy UTF-8 decoding of bytes[0..n) to a growing buffer. If final is 0, a valid
 * but incomplete sequence at the end is left undecoded: returns the number of bytes consumed. */
typedef struct {
    char *data;
    size_t len, cap;
} utf8_buf;
int utf8_buf_reserve(utf8_buf *b, size_t extra);
size_t utf8_lossy_append(utf8_buf *out, const unsigned char *bytes, size_t n, int final);

#endif
