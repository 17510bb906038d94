/* Base64 decoding (RFC 4648 standard alphabet), as Python's base64.b64encode writes it. */
#ifndef QVL_UTIL_BASE64_H
#define QVL_UTIL_BASE64_H
#include <stddef.h>
#include <stdint.h>

/* Decodes len characters of s. ASCII whitespace (line breaks) is skipped and '=' padding is
 * optional at the end; any other character outside the alphabet is an error (Python's b64decode
 * would silently drop it, which hides a damaged image). Returns a malloc'd buffer (NUL-terminated, *out_len bytes),
 * or NULL + qvl_error "invalid base64: <why>" (no item prefix: the caller adds it). */
uint8_t *qvl_base64_decode(const char *s, size_t len, size_t *out_len);

#endif
