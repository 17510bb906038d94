/* Splitting a loop over [0, n) across pthreads (the calling thread takes the first share). */
#ifndef QVL_IMAGE_PARALLEL_H
#define QVL_IMAGE_PARALLEL_H

typedef void (*qvl_range_fn)(void *ctx, int begin, int end);

/* Runs fn(ctx, begin, end) over disjoint chunks covering [0, n) on up to `threads` threads, with at
 * least min_chunk items per chunk. Falls back to one thread if threads cannot be created. */
void qvl_parallel_for(int threads, int n, int min_chunk, qvl_range_fn fn, void *ctx);

#endif
