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
