/* One forward pass over many sequences, in the spirit of llama.cpp's llama_batch: parallel arrays,
 * one entry per token. A batch mixes prefill chunks (several consecutive tokens of one sequence)
 * and decode steps (one token of a sequence). Tokens of one sequence are consecutive and in
 * position order. Image-pad tokens take their embedding rows (and deepstack rows) from the
 * sequence's encoded images in order (backend op encode_images put them in the backend's cache). */
#ifndef QVL_ENGINE_BATCH_H
#define QVL_ENGINE_BATCH_H
#include <stdint.h>

typedef struct {
    int n_tokens;
    int32_t *token;        /* [n_tokens] token ids (image pads included) */
    int32_t *pos[3];       /* [3][n_tokens] M-RoPE positions: T, H, W rows, as used (a decode row's
                              three are kv_index + the sequence's rope delta; the backend adds nothing) */
    int32_t *seq;          /* [n_tokens] sequence slot (0 .. max_batch-1) */
    int32_t *kv_index;     /* [n_tokens] index of the token in its sequence's KV (0-based; its cache row) */
    int32_t *image_row;    /* [n_tokens] row in the sequence's image features for an image pad (its images'
                              rows in prompt order, from 0), else -1 */
    int8_t *pick;          /* [n_tokens] 1: pick the next token after this one (the last token of a
                              finished prompt, or a decode token) */
    int n_pick;            /* number of rows with pick = 1 */
    int capacity;
} qvl_batch;

/* Allocates room for capacity tokens (returns -1 + error when out of memory). */
int qvl_batch_init(qvl_batch *b, int capacity);
void qvl_batch_free(qvl_batch *b);
void qvl_batch_clear(qvl_batch *b);
/* Appends one token; returns its row, or -1 when the batch is full. */
int qvl_batch_add(qvl_batch *b, int32_t token, const int32_t pos[3], int seq, int kv_index, int image_row, int pick);

#endif
