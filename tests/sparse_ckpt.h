/* Test helpers: real-shaped Qwen3-VL checkpoints as SPARSE safetensors files (only the header is
 * written; the data region is a hole made with ftruncate), so an 8B checkpoint costs a few hundred
 * KB of disk and milliseconds. Also a raw writer for hand-made (corrupt) headers. */
#ifndef QVL_TESTS_SPARSE_CKPT_H
#define QVL_TESTS_SPARSE_CKPT_H
#include <stdint.h>

#include "model/tensor_check.h"

/* Writes path = u64 header length (hlen, or strlen(header) when hlen < 0), header, then
 * data_bytes of (sparse) zeros. 0 or -1. */
int sparse_write_raw(const char *path, const char *header, int64_t hlen, uint64_t data_bytes);

/* Writes a safetensors file holding specs[0..n) as dtype, back to back, data sparse. */
int sparse_write_specs(const char *path, const qvl_tensor_spec *specs, int n, const char *dtype);

/* The same with a dtype per tensor (dtypes[i] NULL or dtypes NULL: default_dtype). */
int sparse_write_specs_mixed(const char *path, const qvl_tensor_spec *specs, const char *const *dtypes,
                             const char *default_dtype, int n);

/* Builds a model folder DIR from the config fixture folder SRC (its three json files are copied)
 * with every expected tensor as BF16. n_shards > 1 splits the tensors into
 * model-0000i-of-0000n.safetensors + model.safetensors.index.json. `mutate` (may be NULL) can edit
 * the spec list before writing: drop (return new n) or reshape entries. Returns 0 or -1. */
typedef int (*spec_mutator)(qvl_tensor_spec *specs, int n);
int sparse_model_dir(const char *dir, const char *src, int n_shards, spec_mutator mutate);

/* Writes text to path (creating it). */
int write_text(const char *path, const char *text);

#endif
