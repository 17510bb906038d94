/* CUDA device discovery, callable from C whether or not the CUDA backend was compiled in. */
#ifndef QVL_BACKEND_CUDA_DEVICE_H
#define QVL_BACKEND_CUDA_DEVICE_H
#include <stddef.h>
#ifdef __cplusplus
extern "C" {
#endif

/* Number of usable CUDA devices (0 without a GPU, a driver, or the CUDA build). */
int qvl_cuda_device_count(void);
/* Name and total memory of device 0; -1 if none. */
int qvl_cuda_device_info(char *name, size_t name_len, size_t *total_bytes);
/* Creates the CUDA context on device 0 and returns the device memory it took, in MiB (device used
 * after creation minus used before, as cudaMemGetInfo reports it); -1 if no device. */
double qvl_cuda_context_mib(void);

#ifdef __cplusplus
}
#endif
#endif
