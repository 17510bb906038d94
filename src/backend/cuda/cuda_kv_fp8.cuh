/* The FP8 (e4m3) KV cache elements on the device (`--kv-dtype fp8`), the numbers of the CPU
 * reference (backend/cpu/kv_fp8.h, docs/model.md 7.5): vLLM's kv_cache_dtype="fp8" with its default
 * per-tensor scale 1.0. Write: e4m3(x / 1.0) rounded to nearest even, saturated to +-448
 * (__NV_SATFINITE: cvt.rn.satfinite.e4m3x2.f32 on sm_89+, cuda_fp8.hpp's software conversion before),
 * the bits of qvl_f32_to_e4m3 for every non-NaN float (NaN: the canonical 0x7f here, sign | 0x7f
 * there; both read back as NaN). Read: e4m3 -> half (exact) -> float, times 1.0. C++ (nvcc) only. */
#ifndef QVL_BACKEND_CUDA_KV_FP8_CUH
#define QVL_BACKEND_CUDA_KV_FP8_CUH
#include <cuda_fp16.h>
#include <cuda_fp8.h>
#include <stdint.h>

#include "backend/cuda/cuda_ops.h"

/* = QVL_KV_FP8_SCALE of backend/cpu/kv_fp8.h: x / 1.0f and x * 1.0f are x, so the kernels skip them. */
#define QVL_CUDA_KV_FP8_SCALE 1.0f

static __device__ __forceinline__ uint8_t qvl_kv_fp8_enc(float x) {
    return (uint8_t)__nv_cvt_float_to_fp8(x, __NV_SATFINITE, __NV_E4M3);
}
static __device__ __forceinline__ float qvl_kv_fp8_dec(uint8_t c) {
    return __half2float(__half(__nv_cvt_fp8_to_halfraw((__nv_fp8_storage_t)c, __NV_E4M3)));
}
/* Two codes of one 16-bit load (the lower byte first). */
static __device__ __forceinline__ float2 qvl_kv_fp8x2_dec(uint16_t c2) {
    return __half22float2(__half2(__nv_cvt_fp8x2_to_halfraw2((__nv_fp8x2_storage_t)c2, __NV_E4M3)));
}

/* The store of one cache element: BF16 as it is, FP8 from the BF16 value (as vLLM's cache write
 * rounds the model's BF16 K/V: one BF16 rounding, then e4m3 of that value). */
static __device__ __forceinline__ void qvl_kv_store(bf16 *dst, bf16 v) { *dst = v; }
static __device__ __forceinline__ void qvl_kv_store(uint8_t *dst, bf16 v) { *dst = qvl_kv_fp8_enc(__bfloat162float(v)); }

#endif
