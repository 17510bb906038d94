/* Splitting normalized text into pre-tokens with the tokenizer's Split regex. */
#ifndef QVL_TOKENIZER_PRETOK_H
#define QVL_TOKENIZER_PRETOK_H
#include <stddef.h>

#include "tokenizer/tokenizer_internal.h"

void tok_free_split(qvl_tokenizer *tok);

/* Per-call matching state (PCRE2 match data), so encode is thread-safe. */
typedef struct tok_splitter tok_splitter;
tok_splitter *tok_splitter_new(const qvl_tokenizer *tok);
void tok_splitter_free(tok_splitter *s);
/* Next match at or after start: 1 and [*ms, *me), 0 when none, -1 + qvl_error on failure. */
int tok_split_next(const qvl_tokenizer *tok, tok_splitter *s, const char *text, size_t n, size_t start,
                   size_t *ms, size_t *me);

#endif
