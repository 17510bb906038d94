/* The tensors a Qwen3-VL checkpoint must hold, derived from its config (the names and shapes of
 * tensor_names.h), a validator run before any weight is used, and parameter counts per group. */
#ifndef QVL_MODEL_TENSOR_CHECK_H
#define QVL_MODEL_TENSOR_CHECK_H
#include <stdint.h>

#include "io/safetensors.h"
#include "model/config.h"
#include "model/tensor_names.h" /* qvl_param_group, qvl_tensor_spec */

/* "vision", "merger", "deepstack", "text", "lm_head". */
const char *qvl_param_group_name(qvl_param_group g);

/* Every tensor the model needs, in checkpoint order (vision, merger, deepstack, text, lm_head).
 * Returns a malloc'd array and sets *n; NULL + qvl_error on out of memory. */
qvl_tensor_spec *qvl_expected_tensors(const qvl_config *cfg, int *n);

/* Parameter counts from the config's shapes (unquantized, tied weights counted once). */
typedef struct {
    int64_t group[QVL_GROUP_COUNT];
    int64_t total;
} qvl_param_counts;
int qvl_param_count(const qvl_config *cfg, qvl_param_counts *out);

/* 0 if st holds every expected tensor with the expected shape and a float dtype (F32/F16/BF16).
 * Otherwise -1 + qvl_error naming the first missing or mismatched tensor and its file, or
 * "<dir>: quantized checkpoints (<method>) are not supported yet". Extra tensors are ignored. */
int qvl_checkpoint_check(const qvl_config *cfg, const qvl_safetensors *st);

/* Writes "[a, b, c]" into buf. */
void qvl_shape_str(const int64_t *shape, int ndim, char *buf, int cap);

#endif
