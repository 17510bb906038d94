/* Splitting a loop over [0, n) across pthreads (the calling thread takes the first share), in
 * contiguous ranges fixed by n and the thread count. Used where the work is one flat loop with no
 * per-thread state: the image pipeline's rows, the tokenizer's merge lookups. (The CPU model's
 * forward pass uses its own qvl_pool, backend/cpu/pool.h: a fixed set of threads owned by the
 * model, handing out task indices dynamically, with a thread id for per-thread scratch.) */
#ifndef QVL_UTIL_PARALLEL_H
#define QVL_UTIL_PARALLEL_H

typedef void (*qvl_range_fn)(void *ctx, int begin, int end);

/* Runs fn(ctx, begin, end) over disjoint chunks covering [0, n) on up to `threads` threads, with at
 * least min_chunk items per chunk. Falls back to one thread if threads cannot be created. */
void qvl_parallel_for(int threads, int n, int min_chunk, qvl_range_fn fn, void *ctx);

#endif
