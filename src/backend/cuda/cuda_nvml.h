/* This process's GPU memory as the NVIDIA driver reports it (NVML), for the measured peak beside
 * the memory plan (docs/report-format.md: "NVML per-process figure, or device used minus the figure before
 * the process started"). NVML (libnvidia-ml.so.1) and the CUDA driver (libcuda.so.1, only for the
 * device's PCI bus id) are loaded at run time with dlopen: nothing is linked, and a machine without
 * them builds and runs; the meter then says why and the caller falls back to cudaMemGetInfo.
 *
 *   qvl_gpu_meter m;
 *   qvl_gpu_meter_start(&m);              // before this process creates its CUDA context
 *   ... create the context, allocate, run ...
 *   double now = qvl_gpu_meter_sample(&m); // -1: no NVML figure (m.note says why); m.peak_mib
 *
 * The device is CUDA device 0 (the one the backend uses), found in NVML by its PCI bus id, which
 * maps CUDA's ordinal (CUDA_VISIBLE_DEVICES, CUDA_DEVICE_ORDER) to NVML's. The process figure is
 * nvmlDeviceGetComputeRunningProcesses (v3, v2, then v1 layout) for getpid(); when this process is
 * not listed (another PID namespace, e.g. a container), device used minus the baseline taken at
 * start. Tests load fakes instead (qvl_gpu_meter_libraries). */
#ifndef QVL_BACKEND_CUDA_NVML_H
#define QVL_BACKEND_CUDA_NVML_H

typedef enum {
    QVL_GPU_MEASURE_NONE = 0,          /* no NVML figure (note says why) */
    QVL_GPU_MEASURE_NVML_PROCESS,      /* NVML: this process's used memory on the device */
    QVL_GPU_MEASURE_NVML_DEVICE_DELTA  /* NVML: device used minus the figure at qvl_gpu_meter_start */
} qvl_gpu_measure;

typedef struct {
    qvl_gpu_measure measure;  /* of the last sample */
    double peak_mib;          /* highest sample of that measure, MiB; 0 before any */
    double baseline_mib;      /* NVML device used at start, MiB; < 0 if not taken */
    int nvml_index;           /* NVML index of the device; -1 while unknown */
    char note[192];           /* why there is no NVML figure, or how the device was found */
} qvl_gpu_meter;

/* Loads NVML (once per process), finds the device and takes the baseline. Returns 0, or -1 with
 * m->note saying why (the meter then samples nothing). Never fails otherwise. */
int qvl_gpu_meter_start(qvl_gpu_meter *m);
/* This process's device memory now, MiB, and updates m->peak_mib; -1 when NVML gives no figure. */
double qvl_gpu_meter_sample(qvl_gpu_meter *m);
/* The NVML and CUDA driver libraries the meter loads from now on (NULL: the system's
 * libnvidia-ml.so.1 / libcuda.so.1); for tests, which point them at a fake. */
void qvl_gpu_meter_libraries(const char *nvml, const char *driver);
/* "nvml process", "nvml device used minus before start", or "none". */
const char *qvl_gpu_measure_name(qvl_gpu_measure measure);

/* The CUDA context of this process as the meter sees it: creates the context (qvl_cuda_context_mib)
 * and returns the meter's figure right after, else cudaMemGetInfo's device used; -1 without a GPU.
 * *measure (may be NULL) names the figure returned. */
double qvl_gpu_context_mib(qvl_gpu_meter *m, const char **measure);

#endif
