/* Quantized checkpoints (issue 14): the three published layouts of a Linear's weight.
 *   compressed-tensors pack-quantized (int4): NAME.weight_packed I32 [N, K/8] (element k of a row in
 *     bits 4*(k%8) of word k/8, stored + 8), NAME.weight_scale [N, K/g] (model dtype), NAME.weight_shape
 *     I64 [2], and when asymmetric NAME.weight_zero_point I32 [N/8, K/g] (packed along N, + 8).
 *   AutoAWQ GEMM (int4): NAME.qweight I32 [K, N/8], NAME.qzeros I32 [K/g, N/8] (out column
 *     8j + AWQ_ORDER[i] in nibble i of word j), NAME.scales F16 [K/g, N].
 *   Qwen fine-grained FP8: NAME.weight F8_E4M3 [N, K], NAME.weight_scale_inv F32 [ceil(N/bn), ceil(K/bk)],
 *     activations quantized per token in groups of bk on the fly.
 * Loaded, every int4 layout becomes one form (qvl_qweight): nibbles u and zeros z in 0..15, float
 * scales, and w = round_to_dtype((u - z) * s), which is the reference dequantization bit for bit
 * (compressed-tensors computes in the scale's dtype, AutoAWQ in fp16: one rounding of an exact product). */
#ifndef QVL_MODEL_QUANT_H
#define QVL_MODEL_QUANT_H
#include <stddef.h>
#include <stdint.h>

#include "io/safetensors.h"
#include "model/config.h"
#include "model/tensor_names.h"

struct cJSON;

/* Parses config.json's quantization_config (path names the file in errors) into cfg->quant_method and
 * cfg->quant. Refuses what qvl cannot run with one line naming the field. */
int qvl_quant_config_parse(const char *path, const struct cJSON *q, qvl_config *cfg);

/* Whether the config asks for module NAME (a Linear, without ".weight") to be quantized: not in the
 * ignore / modules_to_not_convert list ("re:" entries are regexes matched at the start, as
 * compressed-tensors does; other entries match exactly (compressed-tensors) or as substrings
 * (transformers' awq / fp8)), and never lm_head for awq / fp8. */
int qvl_quant_wants(const qvl_config *cfg, const char *name);

/* Whether role (of index) is a Linear weight that may be quantized. */
int qvl_quant_role_is_linear(qvl_tensor_role role);

/* How the checkpoint stores the Linear whose weight spec is s: 0 = 16-bit (NAME.weight), 1 = quantized.
 * The config decides; a module the config would quantize but that the checkpoint keeps in 16 bits
 * (its quantized tensor absent, NAME.weight present in BF16/F16/F32) counts as 16-bit. */
int qvl_quant_linear_stored(const qvl_config *cfg, const qvl_safetensors *st, const qvl_tensor_spec *s);

/* Checks the quantized tensors of the Linear of spec s (names, shapes, dtypes, weight_shape values).
 * Returns 0 or -1 + qvl_error naming the tensor. */
int qvl_quant_check_linear(const qvl_config *cfg, const qvl_safetensors *st, const qvl_tensor_spec *s);

/* Bytes the packed form of s's Linear takes in the checkpoint (the tensors checked above). */
size_t qvl_quant_linear_bytes(const qvl_config *cfg, const qvl_safetensors *st, const qvl_tensor_spec *s);

/* ---- the loaded form ----------------------------------------------------------------------------- */
enum { QVL_QW_INT4 = 1, QVL_QW_FP8 = 2 };
enum { QVL_QW_ROUND_F32 = 0, QVL_QW_ROUND_BF16 = 1, QVL_QW_ROUND_F16 = 2 };

typedef struct qvl_qweight {
    uint32_t magic[4];      /* QVL_QW_MAGIC: lets a `const float *` weight pointer carry this form */
    int kind;               /* QVL_QW_INT4 / QVL_QW_FP8 */
    int N, K;               /* out, in */
    int group;              /* int4: K per scale; fp8: block along K */
    int block_n;            /* fp8: block along N */
    int round;              /* int4: QVL_QW_ROUND_* of the dequantized value */
    int act_quant;          /* fp8: quantize the input per token in groups of `group` (dynamic) */
    uint8_t *q;             /* int4: [N][K/2] (element 2i low nibble, 2i+1 high), 0..15; fp8: [N][K] e4m3 */
    uint8_t *zero;          /* int4: [N][K/group] 0..15 (8 when symmetric) */
    float *scale;           /* int4: [N][K/group]; fp8: [ceil(N/block_n)][ceil(K/group)] */
    char name[128];
} qvl_qweight;

/* Reads the Linear of spec s from st into a new qvl_qweight (check first). NULL + qvl_error. */
qvl_qweight *qvl_qweight_load(const qvl_config *cfg, const qvl_safetensors *st, const qvl_tensor_spec *s);
void qvl_qweight_free(qvl_qweight *w);

/* The qvl_qweight a weight pointer stands for, or NULL for a plain float32 weight (of >= 4 floats). */
const qvl_qweight *qvl_qweight_of(const float *w);

/* Rows n0..n1-1 of the dequantized [N, K] weight into out ((n1-n0) * K floats). */
void qvl_qweight_dequant_rows(const qvl_qweight *w, int n0, int n1, float *out);

/* FP8 dynamic activation quantization of one row of K values in place: per group of g values,
 * s = amax / 448, x = e4m3(x / s) * s (0 where s is 0), as transformers' act_quant + block matmul. */
void qvl_fp8_act_quant_row(float *x, int K, int g);

/* Scalar conversions (round to nearest even). */
uint8_t qvl_f32_to_e4m3(float f);
float qvl_round_bf16(float f);
float qvl_round_f16(float f);

#endif
