/* The batched CUDA path behind the backend table (cuda_backend.c): many sequences in one forward
 * pass over the KV pool of a model opened with qvl_cuda_opts.batched. Slots, block tables, image
 * features per slot, next-token picking per row on the device. C API; the semantics are those of
 * the matching operations of engine/backend.h. */
#ifndef QVL_BACKEND_CUDA_BATCH_H
#define QVL_BACKEND_CUDA_BATCH_H
#include <stdint.h>

#include "engine/batch.h"
#include "image/image.h"
#include "model/model_cuda.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct qvl_cuda_batch qvl_cuda_batch;

/* Opens the model batched (o->batched is implied). NULL + error. */
qvl_cuda_batch *qvl_cuda_batch_open(const char *model_dir, const qvl_cuda_opts *o);
void qvl_cuda_batch_close(qvl_cuda_batch *b);
qvl_cuda_model *qvl_cuda_batch_model(qvl_cuda_batch *b);
int qvl_cuda_batch_seq_begin(qvl_cuda_batch *b, int seq, const qvl_cuda_pick_params *p, const double *uniforms,
                             int n_uniforms, const int32_t *prompt, int n_prompt);
int qvl_cuda_batch_seq_blocks(qvl_cuda_batch *b, int seq, const int32_t *blocks, int n_blocks);
void qvl_cuda_batch_seq_drop_images(qvl_cuda_batch *b, int seq);
void qvl_cuda_batch_seq_free(qvl_cuda_batch *b, int seq);
int qvl_cuda_batch_encode(qvl_cuda_batch *b, const qvl_pixel_values *const *pv, const int *seqs, int n);
int qvl_cuda_batch_run(qvl_cuda_batch *b, const qvl_batch *batch, int32_t *picked, float *logits);
/* Decode graphs (qvl_tuning.decode_graphs): whether on, graphs captured and replays so far (tests). */
void qvl_cuda_batch_graph_stats(const qvl_cuda_batch *b, int *on, long *captures, long *replays);
/* Image feature rows in use (tests: all free again after seq_free). */
long qvl_cuda_batch_image_rows_used(const qvl_cuda_batch *b);

#ifdef __cplusplus
}
#endif
#endif
