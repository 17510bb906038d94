#include <cuda_runtime.h>
#include <stdio.h>

#include "backend/cuda/cuda_device.h"

extern "C" int qvl_cuda_device_count(void) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) return 0;
    return n;
}

extern "C" int qvl_cuda_device_info(char *name, size_t name_len, size_t *total_bytes) {
    if (qvl_cuda_device_count() <= 0) return -1;
    cudaDeviceProp p;
    if (cudaGetDeviceProperties(&p, 0) != cudaSuccess) return -1;
    snprintf(name, name_len, "%s", p.name);
    if (total_bytes) *total_bytes = p.totalGlobalMem;
    return 0;
}

extern "C" double qvl_cuda_context_mib(void) {
    if (qvl_cuda_device_count() <= 0) return -1;
    /* Before the context exists the driver can still report totals through a primary-context-free
     * query only via NVML; cudaMemGetInfo needs a context, so take "used" right after creation:
     * on a device this process has to itself that is the context (plus other processes' memory). */
    if (cudaFree(0) != cudaSuccess) return -1;
    size_t free_b = 0, total_b = 0;
    if (cudaMemGetInfo(&free_b, &total_b) != cudaSuccess) return -1;
    return (double)(total_b - free_b) / 1048576.0;
}
