/* Hopper (sm_90a) prefill/vision attention with warpgroup MMA, and the switch that picks between
 * it and the mma.sync kernels of cuda_attention.cu (benchmarks and A/B runs). C++ (nvcc) only. */
#ifndef QVL_BACKEND_CUDA_ATTENTION_SM90_H
#define QVL_BACKEND_CUDA_ATTENTION_SM90_H
#include "backend/cuda/cuda_ops.h"


/* 1 if this build has the sm_90a kernel and the current device can run it (compute capability 9.0). */
int qvl_attention_sm90_available(void);

/* Enqueues the wgmma kernel for rows = n_q * group query rows of each KV head (same arguments and
 * semantics as qvl_attention; scale_log2 = log2(e) / sqrt(hd)). config -1: chosen by size and head
 * size (the measured fastest); 0..8: one configuration (benchmarks; the
 * table is in the .cu file). Head sizes 49-64, 65-80 and 113-128. Returns 0 if launched, -1 if the
 * shape, configuration, alignment or device is not supported (nothing enqueued: the caller falls
 * back). */
int qvl_attention_sm90(cudaStream_t st, bf16 *out, int out_stride, const bf16 *q, int q_stride, const bf16 *k,
                       const bf16 *v, int kv_stride, int n_q, int n_kv, int group, int Hkv, int hd, int causal_pos0,
                       float scale_log2, int config);
#endif
