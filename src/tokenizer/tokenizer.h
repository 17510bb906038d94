/* Qwen2-style byte-level BPE tokenizer loaded from a Hugging Face tokenizer.json
 * (NFC normalizer, Split pre-tokenizer regex, ByteLevel, BPE merges, added/special tokens). */
#ifndef QVL_TOKENIZER_H
#define QVL_TOKENIZER_H
#include <stddef.h>
#include <stdint.h>

typedef struct qvl_tokenizer qvl_tokenizer;

/* PATH: a tokenizer.json, or a folder holding one. NULL + qvl_error on failure. */
qvl_tokenizer *qvl_tokenizer_load(const char *path);
/* The same through the binary cache of the parsed tables in folder cache_dir (created if need be;
 * NULL: no cache, as qvl_tokenizer_load): a hit skips the JSON parse (~0.2 s for Qwen's tokenizer),
 * a miss writes the entry. The library never picks a folder itself; the CLI passes
 * $QVL_CACHE_DIR, else $XDG_CACHE_HOME/qvl, else ~/.cache/qvl (src/cli/cache_env.h). */
qvl_tokenizer *qvl_tokenizer_load_cached(const char *path, const char *cache_dir);
void qvl_tokenizer_free(qvl_tokenizer *tok);
/* 1 if the tables came from the binary cache (see tokenizer_cache.c) rather than the JSON. */
int qvl_tokenizer_from_cache(const qvl_tokenizer *tok);

/* Encodes UTF-8 text (special-token text such as "<|im_start|>" becomes that token, as the
 * reference does by default). *ids is malloc'd. Invalid UTF-8 is an error. */
int qvl_tokenizer_encode(const qvl_tokenizer *tok, const char *text, size_t len, int32_t **ids, size_t *n);
/* Decodes ids to a malloc'd UTF-8 string; skip_special drops special tokens. An id without a token
 * (past the tokenizer's vocabulary: the model's is padded, e.g. 151936 vs 151669) has no text, as in
 * HF tokenizers; a negative id is an error (NULL). */
char *qvl_tokenizer_decode(const qvl_tokenizer *tok, const int32_t *ids, size_t n, int skip_special);
/* The same, also giving the length (the text may hold U+0000, e.g. from token "\u0000"). */
char *qvl_tokenizer_decode_len(const qvl_tokenizer *tok, const int32_t *ids, size_t n, int skip_special,
                               size_t *len);
/* Id of a token's text (vocabulary or added token), or -1. */
int32_t qvl_tokenizer_token_id(const qvl_tokenizer *tok, const char *text);
/* 1 when the tokenizer has a token (text) for id. */
int qvl_tokenizer_has_token(const qvl_tokenizer *tok, int32_t id);
int qvl_tokenizer_is_special(const qvl_tokenizer *tok, int32_t id);
int qvl_tokenizer_vocab_size(const qvl_tokenizer *tok);   /* highest id + 1 */

/* Streaming decode: feed ids one by one; returns the text that became complete (never half a
 * UTF-8 character), in a buffer owned by the stream, valid until the next call. */
typedef struct qvl_detok_stream qvl_detok_stream;
qvl_detok_stream *qvl_detok_stream_new(const qvl_tokenizer *tok, int skip_special);
const char *qvl_detok_stream_push(qvl_detok_stream *s, int32_t id);
const char *qvl_detok_stream_flush(qvl_detok_stream *s);     /* whatever remains (bytes as U+FFFD) */
void qvl_detok_stream_free(qvl_detok_stream *s);
/* Byte length of the text the last push/flush returned (it may hold U+0000). */
size_t qvl_detok_stream_last_len(const qvl_detok_stream *s);

#endif
