/* safetensors checkpoints: one file or a sharded set (model.safetensors.index.json), mmap'd and
 * zero-copy. Every header is validated in full before any tensor is handed out. */
#ifndef QVL_IO_SAFETENSORS_H
#define QVL_IO_SAFETENSORS_H
#include <stddef.h>
#include <stdint.h>

typedef enum {
    QVL_F32, QVL_F16, QVL_BF16, QVL_I32, QVL_I64, QVL_U8, QVL_I8, QVL_F8_E4M3, QVL_DTYPE_COUNT
} qvl_dtype;

enum { QVL_MAX_DIMS = 8 };

typedef struct {
    const char *name;            /* e.g. "model.visual.blocks.0.attn.qkv.weight" */
    qvl_dtype dtype;
    int ndim;
    int64_t shape[QVL_MAX_DIMS];
    const void *data;            /* points into the mmap'd file (read-only; alignment not guaranteed) */
    size_t nbytes;
    const char *file;            /* the shard it lives in (path as opened) */
} qvl_tensor;

typedef struct qvl_safetensors qvl_safetensors;

/* Opens PATH: a .safetensors file, a model.safetensors.index.json, or a folder holding either.
 * NULL + qvl_error ("<file>: <reason>", naming the tensor where one is at fault) on failure. */
qvl_safetensors *qvl_st_open(const char *path);
void qvl_st_close(qvl_safetensors *st);

int qvl_st_count(const qvl_safetensors *st);
const qvl_tensor *qvl_st_get(const qvl_safetensors *st, int i);
/* NULL if absent (no error recorded). */
const qvl_tensor *qvl_st_find(const qvl_safetensors *st, const char *name);

const char *qvl_dtype_name(qvl_dtype t);     /* "BF16", ... as written in safetensors */
size_t qvl_dtype_size(qvl_dtype t);          /* bytes per element */
int64_t qvl_tensor_numel(const qvl_tensor *t);

/* Converts element i of a F32/F16/BF16 tensor to float. */
float qvl_tensor_get_f32(const qvl_tensor *t, int64_t i);
/* Converts a whole F32/F16/BF16 tensor to a float array (dst holds numel floats). */
int qvl_tensor_to_f32(const qvl_tensor *t, float *dst);
/* (The two above also accept I32, I64, U8, I8 and F8_E4M3, converted value by value.) */

/* The file listing the tensors (the index.json, or the single .safetensors; resolved when a folder
 * was opened); the number of files mapped; the sum of all tensors' bytes. */
const char *qvl_st_path(const qvl_safetensors *st);
int qvl_st_file_count(const qvl_safetensors *st);
size_t qvl_st_data_bytes(const qvl_safetensors *st);

/* "BF16" -> QVL_BF16; -1 for a name qvl does not support. */
int qvl_dtype_parse(const char *s, qvl_dtype *out);

/* Scalar conversions (exact; F8_E4M3 is float8_e4m3fn: no infinities, max 448). */
float qvl_bf16_to_f32(uint16_t h);
float qvl_f16_to_f32(uint16_t h);
float qvl_f8e4m3_to_f32(uint8_t v);

#endif
