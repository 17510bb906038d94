/* The KV cache as a pool of fixed-size blocks (block ids 0 .. n_blocks-1; the backend holds their
 * memory) and one block table per sequence slot. A sequence is admitted only when the blocks for
 * its whole length (prompt + answer) are free, so a running sequence never waits for memory; a
 * finished or cancelled one returns its blocks at once. Not thread-safe (the stepping thread owns it). */
#ifndef QVL_ENGINE_KV_POOL_H
#define QVL_ENGINE_KV_POOL_H
#include <stdint.h>

typedef struct {
    int n_blocks, block_tokens, max_seqs, max_blocks_per_seq;
    int32_t *free_ids;        /* stack of free block ids (the lowest id on top at start) */
    int n_free;
    int high_water;           /* the most blocks in use at once so far */
    int32_t *tables;          /* [max_seqs][max_blocks_per_seq] */
    int *n_table;             /* [max_seqs] blocks each slot holds */
} qvl_kv_pool;

/* Returns 0, or -1 + error (bad sizes, out of memory). */
int qvl_kv_pool_init(qvl_kv_pool *p, int n_blocks, int block_tokens, int max_seqs, long max_model_len);
void qvl_kv_pool_free(qvl_kv_pool *p);
/* Blocks that hold `tokens` tokens. */
int qvl_kv_pool_blocks_for(const qvl_kv_pool *p, long tokens);
/* Grows slot seq's table to hold `tokens` tokens. Returns 0, or -1 when not enough blocks are
 * free (nothing taken) or tokens exceed a table (no error recorded: the caller decides). */
int qvl_kv_pool_reserve(qvl_kv_pool *p, int seq, long tokens);
/* Returns every block of slot seq to the pool. */
void qvl_kv_pool_release(qvl_kv_pool *p, int seq);
const int32_t *qvl_kv_pool_table(const qvl_kv_pool *p, int seq, int *n_blocks);
int qvl_kv_pool_used(const qvl_kv_pool *p);
/* The most blocks in use at once since init (what the memory plan's pool must cover). */
int qvl_kv_pool_high_water(const qvl_kv_pool *p);

#endif
