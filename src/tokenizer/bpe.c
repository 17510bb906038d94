/* Byte-pair encoding of one word, the token and merge hash maps. The merge order follows the
 * reference exactly: repeatedly merge the adjacent pair of lowest merge rank, leftmost first. */
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tokenizer_internal.h"

uint64_t tok_hash_bytes(const void *p, size_t n) {
    const unsigned char *s = p;
    uint64_t h = 0x9E3779B97F4A7C15ull ^ (n * 0xFF51AFD7ED558CCDull);
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, s, 8);
        h = (h ^ w) * 0xC4CEB9FE1A85EC53ull;
        h ^= h >> 29;
        s += 8, n -= 8;
    }
    uint64_t w = 0;
    memcpy(&w, s, n);
    h = (h ^ w) * 0xC4CEB9FE1A85EC53ull;
    h ^= h >> 33; /* murmur3 finalizer: every input bit reaches the low (slot) bits */
    h *= 0xFF51AFD7ED558CCDull;
    h ^= h >> 33;
    return h;
}

static uint32_t pow2_at_least(size_t n) {
    uint32_t c = 16;
    while (c < n) c *= 2;
    return c;
}

int tok_str_map_build(tok_str_map *m, const qvl_tokenizer *tok) {
    uint32_t cap = pow2_at_least((size_t)tok->n_tokens * 2);
    m->slots = malloc(cap * sizeof *m->slots);
    if (!m->slots) return -1;
    memset(m->slots, 0xFF, cap * sizeof *m->slots);
    m->mask = cap - 1;
    /* Added tokens are inserted first so they win over a vocabulary entry with the same bytes. */
    for (int pass = 0; pass < 2; pass++) {
        for (int32_t id = 0; id < tok->n_tokens; id++) {
            if (!(tok->tok_flags[id] & TOK_PRESENT)) continue;
            if (!!(tok->tok_flags[id] & TOK_ADDED) != (pass == 0)) continue;
            const char *s = tok->arena + tok->tok_off[id];
            size_t n = tok->tok_len[id];
            uint32_t i = (uint32_t)tok_hash_bytes(s, n) & m->mask;
            for (; m->slots[i] >= 0; i = (i + 1) & m->mask) {
                int32_t o = m->slots[i];
                if (tok->tok_len[o] == n && memcmp(tok->arena + tok->tok_off[o], s, n) == 0) break;
            }
            if (m->slots[i] < 0) m->slots[i] = id; /* else: same bytes already mapped; keep the first */
        }
    }
    return 0;
}

int32_t tok_str_map_get(const tok_str_map *m, const qvl_tokenizer *tok, const char *s, size_t n) {
    uint32_t i = (uint32_t)tok_hash_bytes(s, n) & m->mask;
    for (;;) {
        int32_t id = m->slots[i];
        if (id < 0) return -1;
        if (tok->tok_len[id] == n && memcmp(tok->arena + tok->tok_off[id], s, n) == 0) return id;
        i = (i + 1) & m->mask;
    }
}

static uint32_t pair_slot(uint64_t key, uint32_t mask) {
    key *= 0x9E3779B97F4A7C15ull;
    return (uint32_t)(key >> 32) & mask;
}

int tok_merge_map_init(tok_merge_map *m, size_t n_merges) {
    uint32_t cap = pow2_at_least(n_merges * 2 + 1);
    m->keys = calloc(cap, sizeof *m->keys);
    /* Zeroed, empty slots included: tok_cache_save writes the whole tables, and the cache file must be
     * the same bytes for the same tokenizer.json (no uninitialized heap in it). */
    m->rank = calloc(cap, sizeof *m->rank);
    m->merged = calloc(cap, sizeof *m->merged);
    m->mask = cap - 1;
    return m->keys && m->rank && m->merged ? 0 : -1;
}

void tok_merge_map_put(tok_merge_map *m, int32_t a, int32_t b, uint32_t rank, int32_t merged) {
    uint64_t key = ((uint64_t)(uint32_t)a << 32 | (uint32_t)b) + 1;
    uint32_t i = pair_slot(key, m->mask);
    while (m->keys[i] && m->keys[i] != key) i = (i + 1) & m->mask;
    if (m->keys[i] == key) return; /* a repeated merge keeps its first (lowest) rank */
    m->keys[i] = key;
    m->rank[i] = rank;
    m->merged[i] = merged;
}

uint32_t tok_merge_map_get(const tok_merge_map *m, int32_t a, int32_t b, int32_t *merged) {
    uint64_t key = ((uint64_t)(uint32_t)a << 32 | (uint32_t)b) + 1;
    uint32_t i = pair_slot(key, m->mask);
    for (;;) {
        uint64_t k = m->keys[i];
        if (!k) return UINT32_MAX;
        if (k == key) {
            *merged = m->merged[i];
            return m->rank[i];
        }
        i = (i + 1) & m->mask;
    }
}

int tok_ids_push(tok_ids *v, int32_t id) {
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 64;
        int32_t *p = realloc(v->ids, cap * sizeof *p);
        if (!p) return -1;
        v->ids = p;
        v->cap = cap;
    }
    v->ids[v->n++] = id;
    return 0;
}

/* A candidate merge in the heap: the pair starting at symbol `pos`, ordered by (rank, pos). */
typedef struct {
    uint32_t rank;
    uint32_t pos;
    int32_t merged;
} bpe_cand;

static int cand_less(const bpe_cand *a, const bpe_cand *b) {
    return a->rank != b->rank ? a->rank < b->rank : a->pos < b->pos;
}

static void heap_push(bpe_cand *h, size_t *n, bpe_cand c) {
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!cand_less(&c, &h[p])) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = c;
}

static bpe_cand heap_pop(bpe_cand *h, size_t *n) {
    bpe_cand top = h[0], last = h[--*n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && cand_less(&h[c + 1], &h[c])) c++;
        if (!cand_less(&h[c], &last)) break;
        h[i] = h[c];
        i = c;
    }
    if (*n) h[i] = last;
    return top;
}

typedef struct {
    int32_t id;
    int32_t prev, next; /* -1 at the ends */
    int alive;
} bpe_sym;

int tok_bpe_word(const qvl_tokenizer *tok, const unsigned char *w, size_t n, tok_ids *out) {
    if (n == 0) return 0;
    if (n == 1) return tok_ids_push(out, tok->byte_id[w[0]]);
    bpe_sym small_syms[64];
    bpe_cand small_heap[128];
    /* Every merge adds at most two candidates: n - 1 initial + 2 (n - 1) later. */
    size_t heap_cap = 3 * n;
    bpe_sym *sym = n <= 64 ? small_syms : malloc(n * sizeof *sym);
    bpe_cand *heap = heap_cap <= 128 ? small_heap : malloc(heap_cap * sizeof *heap);
    int rc = 0;
    if (!sym || !heap) {
        rc = -1;
        goto done;
    }
    size_t nh = 0;
    for (size_t i = 0; i < n; i++) {
        sym[i].id = tok->byte_id[w[i]];
        sym[i].prev = (int32_t)i - 1;
        sym[i].next = i + 1 < n ? (int32_t)i + 1 : -1;
        sym[i].alive = 1;
    }
    for (size_t i = 0; i + 1 < n; i++) {
        int32_t m;
        uint32_t r = tok_merge_map_get(&tok->merges, sym[i].id, sym[i + 1].id, &m);
        if (r != UINT32_MAX) heap_push(heap, &nh, (bpe_cand){r, (uint32_t)i, m});
    }
    while (nh) {
        bpe_cand c = heap_pop(heap, &nh);
        bpe_sym *l = &sym[c.pos];
        if (!l->alive || l->next < 0) continue;
        bpe_sym *r = &sym[l->next];
        int32_t m;
        /* Stale entry: the pair at pos changed since it was queued. */
        if (tok_merge_map_get(&tok->merges, l->id, r->id, &m) != c.rank || m != c.merged) continue;
        l->id = c.merged;
        r->alive = 0;
        l->next = r->next;
        if (r->next >= 0) sym[r->next].prev = (int32_t)c.pos;
        if (l->prev >= 0) {
            uint32_t rr = tok_merge_map_get(&tok->merges, sym[l->prev].id, l->id, &m);
            if (rr != UINT32_MAX) heap_push(heap, &nh, (bpe_cand){rr, (uint32_t)l->prev, m});
        }
        if (l->next >= 0) {
            uint32_t rr = tok_merge_map_get(&tok->merges, l->id, sym[l->next].id, &m);
            if (rr != UINT32_MAX) heap_push(heap, &nh, (bpe_cand){rr, c.pos, m});
        }
    }
    for (int32_t i = 0; i >= 0; i = sym[i].next)
        if (tok_ids_push(out, sym[i].id)) {
            rc = -1;
            break;
        }
done:
    if (sym != small_syms) free(sym);
    if (heap != small_heap) free(heap);
    return rc;
}
