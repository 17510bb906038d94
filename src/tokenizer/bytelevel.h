/* The GPT-2 ByteLevel mapping: every byte has a printable stand-in character, and vocab entries
 * in tokenizer.json are spelled with those characters. */
#ifndef QVL_TOKENIZER_BYTELEVEL_H
#define QVL_TOKENIZER_BYTELEVEL_H
#include <stddef.h>
#include <stdint.h>

/* Byte that code point cp stands for, or -1 if cp is not a ByteLevel character. */
int bytelevel_byte(uint32_t cp);
/* Converts a ByteLevel-spelled UTF-8 string to the raw bytes it stands for (out: >= n bytes).
 * As the reference decoder does, a string holding any character outside the mapping is taken
 * verbatim. Returns the output length. */
size_t bytelevel_unmap(const char *s, size_t n, char *out);

#endif
