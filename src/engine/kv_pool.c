/* Fixed-size KV blocks and per-slot block tables (kv_pool.h). */
#include "engine/kv_pool.h"

#include <stdlib.h>
#include <string.h>

#include "util/error.h"

int qvl_kv_pool_init(qvl_kv_pool *p, int n_blocks, int block_tokens, int max_seqs, long max_model_len) {
    memset(p, 0, sizeof *p);
    if (n_blocks < 1 || block_tokens < 1 || max_seqs < 1 || max_model_len < 1)
        return qvl_errorf("kv pool: %d blocks of %d tokens for %d sequences of %ld tokens: sizes must be positive",
                          n_blocks, block_tokens, max_seqs, max_model_len);
    p->n_blocks = n_blocks;
    p->block_tokens = block_tokens;
    p->max_seqs = max_seqs;
    p->max_blocks_per_seq = (int)((max_model_len + block_tokens - 1) / block_tokens);
    p->free_ids = malloc((size_t)n_blocks * sizeof *p->free_ids);
    p->tables = malloc((size_t)max_seqs * p->max_blocks_per_seq * sizeof *p->tables);
    p->n_table = calloc((size_t)max_seqs, sizeof *p->n_table);
    if (!p->free_ids || !p->tables || !p->n_table) {
        qvl_kv_pool_free(p);
        return qvl_errorf("kv pool of %d blocks: out of memory", n_blocks);
    }
    for (int i = 0; i < n_blocks; i++) p->free_ids[i] = n_blocks - 1 - i;
    p->n_free = n_blocks;
    return 0;
}

void qvl_kv_pool_free(qvl_kv_pool *p) {
    free(p->free_ids);
    free(p->tables);
    free(p->n_table);
    memset(p, 0, sizeof *p);
}

int qvl_kv_pool_blocks_for(const qvl_kv_pool *p, long tokens) {
    return tokens <= 0 ? 0 : (int)((tokens + p->block_tokens - 1) / p->block_tokens);
}

int qvl_kv_pool_reserve(qvl_kv_pool *p, int seq, long tokens) {
    if (seq < 0 || seq >= p->max_seqs) return -1;
    int want = qvl_kv_pool_blocks_for(p, tokens), have = p->n_table[seq];
    if (want > p->max_blocks_per_seq) return -1;
    if (want <= have) return 0;
    if (want - have > p->n_free) return -1;
    int32_t *t = p->tables + (size_t)seq * p->max_blocks_per_seq;
    for (int i = have; i < want; i++) t[i] = p->free_ids[--p->n_free];
    p->n_table[seq] = want;
    if (p->n_blocks - p->n_free > p->high_water) p->high_water = p->n_blocks - p->n_free;
    return 0;
}

void qvl_kv_pool_release(qvl_kv_pool *p, int seq) {
    if (seq < 0 || seq >= p->max_seqs) return;
    const int32_t *t = p->tables + (size_t)seq * p->max_blocks_per_seq;
    /* Pushed back in reverse so that the next reservation takes them in the same order. */
    for (int i = p->n_table[seq] - 1; i >= 0; i--) p->free_ids[p->n_free++] = t[i];
    p->n_table[seq] = 0;
}

const int32_t *qvl_kv_pool_table(const qvl_kv_pool *p, int seq, int *n_blocks) {
    *n_blocks = p->n_table[seq];
    return p->tables + (size_t)seq * p->max_blocks_per_seq;
}

int qvl_kv_pool_used(const qvl_kv_pool *p) { return p->n_blocks - p->n_free; }
int qvl_kv_pool_high_water(const qvl_kv_pool *p) { return p->high_water; }
