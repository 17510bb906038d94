/* Hopper (sm_90a) prefill/vision attention with warpgroup MMA, and the switch that picks between
 * it and the mma.sync kernels of cuda_attention.cu (benchmarks and A/B runs). C++ (nvcc) only. */
#ifndef QVL_BACKEND_CUDA_ATTENTION_SM90_H
#define QVL_BACKEND_CUDA_ATTENTION_SM90_H
#include "backend/cuda/cuda_ops.h"

/* Which prefill/vision kernel qvl_attention uses: QVL_ATT_AUTO picks the wgmma kernel where the
 * build and the device have it (sm_90a), else the mma.sync FA2 kernel; QVL_ATT_FA2 forces the
 * latter; QVL_ATT_WG + n forces wgmma configuration n (benchmarks; see qvl_attention_sm90). The
 * environment variable QVL_ATT_IMPL (read once, same numbers) sets the initial value. */
enum { QVL_ATT_AUTO = -1, QVL_ATT_FA2 = 0, QVL_ATT_WG = 1 };
void qvl_attention_set_impl(int impl);
int qvl_attention_get_impl(void);

/* 1 if this build has the sm_90a kernel and the current device can run it (compute capability 9.0). */
int qvl_attention_sm90_available(void);

/* Enqueues the wgmma kernel for rows = n_q * group query rows of each KV head (same arguments and
 * semantics as qvl_attention; scale_log2 = log2(e) / sqrt(hd)). config -1: chosen by size and head
 * size (the measured fastest; QVL_ATT_CFG overrides); 0..8: one configuration (benchmarks; the
 * table is in the .cu file). Head sizes 49-64, 65-80 and 113-128. Returns 0 if launched, -1 if the
 * shape, configuration, alignment or device is not supported (nothing enqueued: the caller falls
 * back). */
int qvl_attention_sm90(cudaStream_t st, bf16 *out, int out_stride, const bf16 *q, int q_stride, const bf16 *k,
                       const bf16 *v, int kv_stride, int n_q, int n_kv, int group, int Hkv, int hd, int causal_pos0,
                       float scale_log2, int config);
#endif
