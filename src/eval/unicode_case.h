/* Python's str.lower() and str.strip() on UTF-8, exactly (docs/ocrbench.md section 5).
 * lower: the full Unicode lower-case mapping of the Python that generated unicode_case_table.inc
 * (tools/gen_unicode_case.py), including U+0130 -> "i" U+0307 and the Final_Sigma rule for U+03A3.
 * strip: removes Python's whitespace set (str.isspace()) from both ends.
 * Bytes that are not valid UTF-8 are passed through unchanged (Python never sees them). */
#ifndef QVL_EVAL_UNICODE_CASE_H
#define QVL_EVAL_UNICODE_CASE_H
#include <stddef.h>
#include <stdint.h>

/* Lower-cases s[0..len) into a malloc'd NUL-terminated string; *out_len gets its length (may be
 * NULL). Returns NULL only when out of memory. */
char *qvl_py_lower(const char *s, size_t len, size_t *out_len);
/* Python str.isspace() for one code point. */
int qvl_py_isspace(uint32_t cp);
/* Python str.strip(): sets *start and returns the length of s[0..len) without leading and
 * trailing whitespace. */
size_t qvl_py_strip(const char *s, size_t len, size_t *start);
/* Python's lower-case mapping of one code point out of context (U+03A3 -> U+03C3); writes 1 or 2
 * code points to out and returns how many. */
int qvl_py_lower_cp(uint32_t cp, uint32_t out[2]);

#endif
