/* The tokenizer's tables, shared by the files of src/tokenizer (not a public interface).
 * Every token is stored as the raw bytes it stands for (the ByteLevel mapping undone), so encode
 * works on bytes and decode is a concatenation. */
#ifndef QVL_TOKENIZER_INTERNAL_H
#define QVL_TOKENIZER_INTERNAL_H
#include <stddef.h>
#include <stdint.h>

#include "tokenizer/tokenizer.h"

/* Open-addressing map from a byte string (stored in the token arena) to a token id. */
typedef struct {
    int32_t *slots; /* token id or -1 */
    uint32_t mask;
} tok_str_map;

/* Open-addressing map from a pair of token ids to (merge rank, merged id). */
typedef struct {
    uint64_t *keys; /* (left << 32 | right) + 1; 0 = empty */
    uint32_t *rank;
    int32_t *merged;
    uint32_t mask;
} tok_merge_map;

typedef struct {
    int32_t id;
    int special;
} tok_added;

struct qvl_tokenizer {
    int32_t n_tokens;          /* highest id + 1 */
    uint32_t *tok_off;         /* bytes of token id: arena[tok_off[id] .. tok_off[id]+tok_len[id]) */
    uint32_t *tok_len;
    uint8_t *tok_flags;        /* TOK_PRESENT | TOK_ADDED | TOK_SPECIAL */
    char *arena;
    size_t arena_len;
    int32_t byte_id[256];      /* id of the single-byte token of each byte */
    tok_str_map vocab;         /* bytes -> id over all tokens (added ones win) */
    tok_merge_map merges;
    int32_t n_merges;
    tok_added *added;          /* added tokens, longest first (for leftmost-longest matching) */
    int n_added;
    uint8_t added_first[256];  /* 1 if some added token starts with this byte */
    void *split_re;            /* pcre2_code_8 * of the Split pre-tokenizer */
    int split_jit;
    void *owned_block;         /* non-NULL when the tables live in one block (binary cache) */
};

enum { TOK_PRESENT = 1, TOK_ADDED = 2, TOK_SPECIAL = 4 };

uint64_t tok_hash_bytes(const void *p, size_t n);
int tok_str_map_build(tok_str_map *m, const qvl_tokenizer *tok);
int32_t tok_str_map_get(const tok_str_map *m, const qvl_tokenizer *tok, const char *s, size_t n);
int tok_merge_map_init(tok_merge_map *m, size_t n_merges);
void tok_merge_map_put(tok_merge_map *m, int32_t a, int32_t b, uint32_t rank, int32_t merged);
/* Rank of merging (a, b) or UINT32_MAX; *merged gets the result id. */
uint32_t tok_merge_map_get(const tok_merge_map *m, int32_t a, int32_t b, int32_t *merged);

/* Compiles the Split regex (pattern as in tokenizer.json, Rust/onig syntax) with PCRE2. */
int tok_compile_split(qvl_tokenizer *tok, const char *pattern);
/* Everything after the tables are in place: added-token index, regex. */
int tok_finish_load(qvl_tokenizer *tok, const char *split_pattern, const char *path);

/* BPE of one pre-tokenized word (raw bytes); appends ids. */
typedef struct {
    int32_t *ids;
    size_t n, cap;
} tok_ids;
int tok_ids_push(tok_ids *v, int32_t id);
int tok_bpe_word(const qvl_tokenizer *tok, const unsigned char *w, size_t n, tok_ids *out);

/* The binary cache (tokenizer_cache.c) in folder dir (NULL: no cache), keyed by the JSON's size and
 * content hash (tok_hash_bytes): a tokenizer, or NULL with no error when there is no valid cache entry. */
qvl_tokenizer *tok_cache_load(const char *dir, const char *json_path, uint64_t json_size, uint64_t json_hash);
int tok_cache_save(const char *dir, const qvl_tokenizer *tok, uint64_t json_size, uint64_t json_hash,
                   const char *split_pattern);

#endif
