/* The FP8 KV cache of the CPU backend (`--kv-dtype fp8`), as vLLM's kv_cache_dtype="fp8" stores it:
 * each K and V element one OCP e4m3 byte (E4M3FN: no infinities, 0x7f/0xff NaN, largest finite 448)
 * with a per-tensor scale of 1.0 (no calibrated scales are read from the checkpoint): written as
 * e4m3(x / 1.0) rounded to nearest even and saturated to +-448 (CUDA's __NV_SATFINITE; NaN stays
 * NaN), read back as e4m3 * 1.0 in float32 before the attention arithmetic. docs/model.md
 * "FP8 KV cache" cites vLLM's code. */
#ifndef QVL_CPU_KV_FP8_H
#define QVL_CPU_KV_FP8_H
#include <stddef.h>
#include <stdint.h>

/* The per-tensor scale of K and V (vLLM's default k_scale = v_scale = 1.0). */
#define QVL_KV_FP8_SCALE 1.0f

/* dst[i] = e4m3(src[i] / QVL_KV_FP8_SCALE) for i < n. */
void qvl_kv_fp8_encode(uint8_t *dst, const float *src, size_t n);
/* dst[i] = float(src[i]) * QVL_KV_FP8_SCALE for i < n (through a 256-entry table). */
void qvl_kv_fp8_decode(float *dst, const uint8_t *src, size_t n);
/* The table: value of each of the 256 codes (NaN for 0x7f and 0xff). */
const float *qvl_kv_fp8_table(void);

#endif
