/* Binary cache of the loaded tables, so loading skips JSON parsing and the merge-table build.
 * The cache file is named by a hash of tokenizer.json's bytes and records the file's size and
 * hash, so any edit of the JSON (whatever its mtime) misses the cache; a truncated or corrupt
 * cache fails its checksum and the JSON is loaded instead (and the cache rewritten).
 * The folder is the caller's (qvl_tokenizer_load_cached; the CLI names it from the environment:
 * src/cli/cache_env.h); no folder, no cache. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tokenizer/tokenizer_internal.h"
#include "util/error.h"
#include "util/file.h"

#define CACHE_MAGIC "QVLTOKC1"
/* Bump CACHE_VERSION whenever the tables' layout or meaning changes, so old caches are ignored. */
enum { CACHE_VERSION = 1, ENDIAN_MARK = 0x01020304 };

typedef struct {
    char magic[8];
    uint32_t version, endian_mark;
    uint64_t json_size, json_hash;
    int32_t n_tokens, n_merges, n_added, split_jit_unused;
    uint32_t vocab_mask, merge_mask;
    uint64_t arena_len, pattern_len;
    uint64_t payload_len, payload_hash; /* everything after this header */
} cache_header;

static size_t align8(size_t n) { return (n + 7) & ~(size_t)7; }

static int mkdir_p(const char *dir) {
    char *p = strdup(dir);
    if (!p) return -1;
    for (char *s = p + 1; *s; s++) {
        if (*s != '/') continue;
        *s = 0;
        if (mkdir(p, 0755) && errno != EEXIST) {
            free(p);
            return -1;
        }
        *s = '/';
    }
    int rc = mkdir(p, 0755) && errno != EEXIST ? -1 : 0;
    free(p);
    return rc;
}

/* The cache file in dir for a JSON of this size and hash (malloc'd), or NULL if caching is off (no dir). */
static char *cache_path(const char *dir, uint64_t size, uint64_t hash) {
    if (!dir || !dir[0]) return NULL;
    char name[64];
    snprintf(name, sizeof name, "tokenizer-%016llx-%llu.bin", (unsigned long long)hash, (unsigned long long)size);
    return qvl_path_join(dir, name);
}

/* Section sizes, in file order. */
typedef struct {
    size_t off, len, flags, arena, vocab, mkeys, mrank, mmerged, added, pattern;
} cache_layout;

static size_t layout(const cache_header *h, cache_layout *l) {
    size_t nt = (size_t)h->n_tokens, nv = (size_t)h->vocab_mask + 1, nm = (size_t)h->merge_mask + 1;
    l->off = align8(nt * 4);
    l->len = align8(nt * 4);
    l->flags = align8(nt);
    l->arena = align8(h->arena_len);
    l->vocab = align8(nv * 4);
    l->mkeys = nm * 8;
    l->mrank = align8(nm * 4);
    l->mmerged = align8(nm * 4);
    l->added = align8((size_t)h->n_added * sizeof(tok_added));
    l->pattern = align8(h->pattern_len + 1);
    return l->off + l->len + l->flags + l->arena + l->vocab + l->mkeys + l->mrank + l->mmerged + l->added + l->pattern;
}

/* Every index in range, and both hash tables usable by linear probing: a power-of-two size with
 * at least one empty slot, or a lookup of a missing key would never end (found by
 * tests/fuzz/tokenizer_cache). */
static int tables_in_bounds(const qvl_tokenizer *tok) {
    for (int32_t i = 0; i < tok->n_tokens; i++)
        if ((uint64_t)tok->tok_off[i] + tok->tok_len[i] > tok->arena_len) return 0;
    if ((tok->vocab.mask & (tok->vocab.mask + 1)) || (tok->merges.mask & (tok->merges.mask + 1))) return 0;
    int empty = 0;
    for (uint64_t i = 0; i <= tok->vocab.mask; i++) {
        if (tok->vocab.slots[i] >= tok->n_tokens) return 0;
        empty |= tok->vocab.slots[i] < 0;
    }
    if (!empty) return 0;
    empty = 0;
    for (uint64_t i = 0; i <= tok->merges.mask; i++) {
        if (tok->merges.keys[i] && (tok->merges.merged[i] < 0 || tok->merges.merged[i] >= tok->n_tokens)) return 0;
        empty |= tok->merges.keys[i] == 0;
    }
    if (!empty) return 0;
    for (int i = 0; i < tok->n_added; i++)
        if (tok->added[i].id < 0 || tok->added[i].id >= tok->n_tokens) return 0;
    return 1;
}

qvl_tokenizer *tok_cache_load(const char *dir, const char *json_path, uint64_t size, uint64_t hash) {
    char *path = cache_path(dir, size, hash);
    if (!path) return NULL;
    size_t n;
    char *block = qvl_read_file(path, &n);
    free(path);
    qvl_error_clear();
    if (!block) return NULL;
    cache_header h;
    cache_layout l;
    if (n < sizeof h) goto stale;
    memcpy(&h, block, sizeof h);
    if (memcmp(h.magic, CACHE_MAGIC, 8) || h.version != CACHE_VERSION || h.endian_mark != ENDIAN_MARK ||
        h.json_size != size || h.json_hash != hash || h.n_tokens < 256 || h.n_added < 0 ||
        h.payload_len != n - sizeof h || h.arena_len > n || h.pattern_len > n ||
        (uint64_t)h.vocab_mask + 1 > n || (uint64_t)h.merge_mask + 1 > n || (uint64_t)h.n_tokens > n ||
        layout(&h, &l) != h.payload_len || tok_hash_bytes(block + sizeof h, h.payload_len) != h.payload_hash)
        goto stale;
    qvl_tokenizer *tok = calloc(1, sizeof *tok);
    if (!tok) goto stale;
    char *p = block + sizeof h; /* sizeof h is a multiple of 8, as is every section */
    tok->owned_block = block;
    tok->n_tokens = h.n_tokens;
    tok->n_merges = h.n_merges;
    tok->n_added = h.n_added;
    tok->arena_len = h.arena_len;
    tok->tok_off = (uint32_t *)p, p += l.off;
    tok->tok_len = (uint32_t *)p, p += l.len;
    tok->tok_flags = (uint8_t *)p, p += l.flags;
    tok->arena = p, p += l.arena;
    tok->vocab.slots = (int32_t *)p, p += l.vocab;
    tok->vocab.mask = h.vocab_mask;
    tok->merges.keys = (uint64_t *)p, p += l.mkeys;
    tok->merges.rank = (uint32_t *)p, p += l.mrank;
    tok->merges.merged = (int32_t *)p, p += l.mmerged;
    tok->merges.mask = h.merge_mask;
    tok->added = (tok_added *)p, p += l.added;
    const char *pattern = p;
    /* The checksum matched, so the tables are what tok_cache_save wrote; still, never index out
     * of bounds on a cache file that was tampered with consistently. */
    if (pattern[h.pattern_len] != 0 || !tables_in_bounds(tok) || tok_finish_load(tok, pattern, json_path)) {
        qvl_tokenizer_free(tok);
        qvl_error_clear();
        return NULL;
    }
    return tok;
stale:
    free(block);
    return NULL;
}

int tok_cache_save(const char *dir, const qvl_tokenizer *tok, uint64_t size, uint64_t hash, const char *pattern) {
    char *path = cache_path(dir, size, hash);
    if (!path) return -1;
    cache_header h;
    memset(&h, 0, sizeof h);
    memcpy(h.magic, CACHE_MAGIC, 8);
    h.version = CACHE_VERSION;
    h.endian_mark = ENDIAN_MARK;
    h.json_size = size;
    h.json_hash = hash;
    h.n_tokens = tok->n_tokens;
    h.n_merges = tok->n_merges;
    h.n_added = tok->n_added;
    h.vocab_mask = tok->vocab.mask;
    h.merge_mask = tok->merges.mask;
    h.arena_len = tok->arena_len;
    h.pattern_len = strlen(pattern);
    cache_layout l;
    h.payload_len = layout(&h, &l);
    char *buf = calloc(1, sizeof h + h.payload_len);
    if (!buf) {
        free(path);
        return -1;
    }
    size_t nt = (size_t)tok->n_tokens, nv = (size_t)tok->vocab.mask + 1, nm = (size_t)tok->merges.mask + 1;
    char *p = buf + sizeof h;
    memcpy(p, tok->tok_off, nt * 4), p += l.off;
    memcpy(p, tok->tok_len, nt * 4), p += l.len;
    memcpy(p, tok->tok_flags, nt), p += l.flags;
    memcpy(p, tok->arena, tok->arena_len), p += l.arena;
    memcpy(p, tok->vocab.slots, nv * 4), p += l.vocab;
    memcpy(p, tok->merges.keys, nm * 8), p += l.mkeys;
    memcpy(p, tok->merges.rank, nm * 4), p += l.mrank;
    memcpy(p, tok->merges.merged, nm * 4), p += l.mmerged;
    memcpy(p, tok->added, (size_t)tok->n_added * sizeof(tok_added)), p += l.added;
    memcpy(p, pattern, h.pattern_len);
    h.payload_hash = tok_hash_bytes(buf + sizeof h, h.payload_len);
    memcpy(buf, &h, sizeof h);
    int rc = mkdir_p(dir) == 0 ? qvl_write_file_atomic(path, buf, sizeof h + h.payload_len) : -1;
    free(buf);
    free(path);
    qvl_error_clear(); /* best effort: a read-only cache folder is not an error */
    return rc;
}

int qvl_tokenizer_from_cache(const qvl_tokenizer *tok) { return tok->owned_block != NULL; }
