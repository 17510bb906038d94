/* qvl_batch: the parallel arrays of one forward pass (batch.h). */
#include "engine/batch.h"

#include <stdlib.h>
#include <string.h>

#include "util/error.h"

int qvl_batch_init(qvl_batch *b, int capacity) {
    memset(b, 0, sizeof *b);
    if (capacity < 1) return qvl_errorf("batch: capacity %d is not positive", capacity);
    size_t n = (size_t)capacity;
    b->token = malloc(n * sizeof *b->token);
    for (int a = 0; a < 3; a++) b->pos[a] = malloc(n * sizeof *b->pos[a]);
    b->seq = malloc(n * sizeof *b->seq);
    b->kv_index = malloc(n * sizeof *b->kv_index);
    b->image_row = malloc(n * sizeof *b->image_row);
    b->pick = malloc(n * sizeof *b->pick);
    if (!b->token || !b->pos[0] || !b->pos[1] || !b->pos[2] || !b->seq || !b->kv_index || !b->image_row || !b->pick) {
        qvl_batch_free(b);
        return qvl_errorf("batch of %d tokens: out of memory", capacity);
    }
    b->capacity = capacity;
    return 0;
}

void qvl_batch_free(qvl_batch *b) {
    free(b->token);
    for (int a = 0; a < 3; a++) free(b->pos[a]);
    free(b->seq);
    free(b->kv_index);
    free(b->image_row);
    free(b->pick);
    memset(b, 0, sizeof *b);
}

void qvl_batch_clear(qvl_batch *b) {
    b->n_tokens = 0;
    b->n_pick = 0;
}

int qvl_batch_add(qvl_batch *b, int32_t token, const int32_t pos[3], int seq, int kv_index, int image_row, int pick) {
    if (b->n_tokens >= b->capacity) return -1;
    int i = b->n_tokens++;
    b->token[i] = token;
    for (int a = 0; a < 3; a++) b->pos[a][i] = pos[a];
    b->seq[i] = seq;
    b->kv_index[i] = kv_index;
    b->image_row[i] = image_row;
    b->pick[i] = (int8_t)(pick != 0);
    b->n_pick += pick != 0;
    return i;
}
