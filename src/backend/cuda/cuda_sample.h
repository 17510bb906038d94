/* Device next-token picking on logits given by the host (cuda_sample.cu), for tests and timing:
 * the same kernel the CUDA model runs after lm_head, on its own small device buffers. C API. */
#ifndef QVL_BACKEND_CUDA_SAMPLE_H
#define QVL_BACKEND_CUDA_SAMPLE_H
#include <stdint.h>

#include "model/model_cuda.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct qvl_cuda_picker qvl_cuda_picker;

/* Room for vocab logits and max_uniforms uniforms; NULL + error without a device. */
qvl_cuda_picker *qvl_cuda_picker_new(int vocab, int max_uniforms);
void qvl_cuda_picker_free(qvl_cuda_picker *p);
/* A new request: parameters, prompt ids (seen), the uniform stream. Returns 0 or -1 + error. */
int qvl_cuda_picker_reset(qvl_cuda_picker *p, const qvl_cuda_pick_params *pp, const int32_t *prompt, int n_prompt,
                          const double *uniforms, int n_uniforms);
/* Picks from logits[vocab] (rounded to bf16 on upload); the previous pick counts as generated,
 * as after a decode step. Returns the id, or -1 + error. */
int qvl_cuda_picker_pick(qvl_cuda_picker *p, const float *logits);
/* 1 when the last pick came from the fast path (many blocks + a merge), 0 when the one-block
 * kernel picked, -1 on a device error. */
int qvl_cuda_picker_took_fast(qvl_cuda_picker *p);
/* Which kernels this picker's picks run (the model always takes 1): 0 the one-block kernel alone;
 * 1 (default) the fast path, falling back to it where the fast path cannot pick exactly; 2 the fast
 * path's kernels, then always the one-block kernel (tests the fallback); for timing the parts only
 * (wrong picks): 3 the fast path's first kernel, 4 both, no fallback. */
void qvl_cuda_picker_set_path(qvl_cuda_picker *p, int path);
/* Uploads logits, then times `picks` consecutive picks on them: microseconds per pick, or -1. */
double qvl_cuda_picker_time_us(qvl_cuda_picker *p, const float *logits, int picks);

#ifdef __cplusplus
}
#endif
#endif
