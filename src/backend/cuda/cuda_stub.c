/* Without the CUDA build there are no CUDA devices. */
#ifndef QVL_CUDA
#include "backend/cuda/cuda_device.h"

int qvl_cuda_device_count(void) { return 0; }
int qvl_cuda_device_info(char *name, size_t name_len, size_t *total_bytes) {
    (void)name; (void)name_len; (void)total_bytes;
    return -1;
}
double qvl_cuda_context_mib(void) { return -1; }
#else
typedef int qvl_cuda_stub_unused;
#endif
