/* NVML through dlopen (see cuda_nvml.h). Only the few NVML and CUDA driver entry points used here
 * are declared, with the layouts of nvml.h / cuda.h (stable C ABI): no header of either is needed. */
#include "backend/cuda/cuda_nvml.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend/cuda/cuda_device.h"

typedef int nvml_ret;                 /* nvmlReturn_t: 0 = NVML_SUCCESS */
typedef struct nvml_device *nvml_dev; /* nvmlDevice_t */
enum { NVML_OK = 0, NVML_INSUFFICIENT_SIZE = 7 };
#define NVML_VALUE_NOT_AVAILABLE (~0ULL)

/* nvmlProcessInfo_v1_t (nvmlDeviceGetComputeRunningProcesses) and nvmlProcessInfo_v2_t (the _v2 and
 * _v3 entry points): the element stride differs, so each call gets its own array type. */
typedef struct {
    unsigned int pid;
    unsigned long long used;
} proc_v1;
typedef struct {
    unsigned int pid;
    unsigned long long used;
    unsigned int gpu_instance, compute_instance;
} proc_v2;
typedef struct {
    unsigned long long total, free, used;
} nvml_memory;   /* nvmlMemory_t (v1) */

static struct {
    int ok;
    char path[256];   /* the library this state was loaded from */
    char why[160];
    nvml_ret (*init)(void);
    nvml_ret (*count)(unsigned int *);
    nvml_ret (*by_index)(unsigned int, nvml_dev *);
    nvml_ret (*by_pci)(const char *, nvml_dev *);
    nvml_ret (*index_of)(nvml_dev, unsigned int *);
    nvml_ret (*memory)(nvml_dev, nvml_memory *);
    nvml_ret (*procs_v2)(nvml_dev, unsigned int *, proc_v2 *);   /* _v3, else _v2 */
    nvml_ret (*procs_v1)(nvml_dev, unsigned int *, proc_v1 *);
} nv;
static pthread_mutex_t nv_lock = PTHREAD_MUTEX_INITIALIZER;

static void nv_open(const char *path) {
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        const char *e = dlerror();
        snprintf(nv.why, sizeof nv.why, "NVML not available (%s)", e ? e : path);
        return;
    }
#define SYM(field, name) (*(void **)&nv.field = dlsym(h, name))
    SYM(init, "nvmlInit_v2");
    SYM(count, "nvmlDeviceGetCount_v2");
    SYM(by_index, "nvmlDeviceGetHandleByIndex_v2");
    SYM(by_pci, "nvmlDeviceGetHandleByPciBusId_v2");
    SYM(index_of, "nvmlDeviceGetIndex");
    SYM(memory, "nvmlDeviceGetMemoryInfo");
    if (!SYM(procs_v2, "nvmlDeviceGetComputeRunningProcesses_v3")) SYM(procs_v2, "nvmlDeviceGetComputeRunningProcesses_v2");
    if (!nv.procs_v2) SYM(procs_v1, "nvmlDeviceGetComputeRunningProcesses");
#undef SYM
    if (!nv.init || !nv.count || !nv.by_index || !nv.memory || (!nv.procs_v2 && !nv.procs_v1)) {
        snprintf(nv.why, sizeof nv.why, "NVML (%s) lacks the functions needed", path);
        return;
    }
    nvml_ret r = nv.init();
    if (r != NVML_OK) {
        snprintf(nv.why, sizeof nv.why, "NVML (%s) did not initialise (error %d)", path, r);
        return;
    }
    nv.ok = 1;   /* never shut down or unloaded: NVML lives as long as the process, like the CUDA context */
}

/* The libraries loaded; tests point them at a fake (qvl_gpu_meter_libraries). Process-wide like
 * NVML itself, which is initialised once per process. */
static char *nvml_lib, *driver_lib; /* NULL: the system's */

void qvl_gpu_meter_libraries(const char *nvml, const char *driver) {
    pthread_mutex_lock(&nv_lock);
    free(nvml_lib), free(driver_lib);
    nvml_lib = nvml && nvml[0] ? strdup(nvml) : NULL;
    driver_lib = driver && driver[0] ? strdup(driver) : NULL;
    pthread_mutex_unlock(&nv_lock);
}

/* Loads NVML once per library path (a test may point it elsewhere; a run never does). */
static void nv_load(void) {
    pthread_mutex_lock(&nv_lock);
    const char *path = nvml_lib ? nvml_lib : "libnvidia-ml.so.1";
    if (strcmp(nv.path, path)) {
        memset(&nv, 0, sizeof nv);
        snprintf(nv.path, sizeof nv.path, "%s", path);
        nv_open(path);
    }
    pthread_mutex_unlock(&nv_lock);
}

/* The PCI bus id of CUDA device 0 from the driver API ("0000:3B:00.0"); -1 if not available. */
static int cuda_pci_bus_id(char *buf, int len) {
    pthread_mutex_lock(&nv_lock);
    void *h = dlopen(driver_lib ? driver_lib : "libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    pthread_mutex_unlock(&nv_lock);
    if (!h) return -1;
    int (*cu_init)(unsigned int), (*cu_get)(int *, int), (*cu_bus)(char *, int, int);
    *(void **)&cu_init = dlsym(h, "cuInit");
    *(void **)&cu_get = dlsym(h, "cuDeviceGet");
    *(void **)&cu_bus = dlsym(h, "cuDeviceGetPCIBusId");
    int dev = -1;
    /* h stays open: after cuInit the driver may run threads, so unloading it is never safe. */
    return cu_init && cu_get && cu_bus && cu_init(0) == 0 && cu_get(&dev, 0) == 0 && cu_bus(buf, len, dev) == 0 ? 0 : -1;
}

static double mib(unsigned long long b) { return (double)b / 1048576.0; }

static int device_used(unsigned int index, double *out) {
    nvml_dev d;
    nvml_memory mem;
    if (nv.by_index(index, &d) != NVML_OK || nv.memory(d, &mem) != NVML_OK) return -1;
    *out = mib(mem.used);
    return 0;
}

/* This process's used memory on device index: 1 found (*out set), 0 not listed or no figure, -1 error. */
static int process_used(unsigned int index, double *out) {
    nvml_dev d;
    if (nv.by_index(index, &d) != NVML_OK) return -1;
    unsigned int pid = (unsigned int)getpid(), cap = 64;
    for (int tries = 0; tries < 8; tries++) {
        unsigned int n = cap;
        size_t size = nv.procs_v2 ? sizeof(proc_v2) : sizeof(proc_v1);
        void *buf = calloc(cap, size);
        if (!buf) return -1;
        nvml_ret r = nv.procs_v2 ? nv.procs_v2(d, &n, buf) : nv.procs_v1(d, &n, buf);
        if (r == NVML_INSUFFICIENT_SIZE) {
            free(buf);
            cap = n > cap ? n + 16 : 2 * cap;
            continue;
        }
        int found = 0;
        for (unsigned int i = 0; r == NVML_OK && i < n && i < cap && !found; i++) {
            unsigned int p = nv.procs_v2 ? ((proc_v2 *)buf)[i].pid : ((proc_v1 *)buf)[i].pid;
            unsigned long long u = nv.procs_v2 ? ((proc_v2 *)buf)[i].used : ((proc_v1 *)buf)[i].used;
            if (p == pid && u != NVML_VALUE_NOT_AVAILABLE) {
                *out = mib(u);
                found = 1;
            }
        }
        free(buf);
        return r == NVML_OK ? found : -1;
    }
    return -1;
}

int qvl_gpu_meter_start(qvl_gpu_meter *m) {
    memset(m, 0, sizeof *m);
    m->baseline_mib = -1;
    m->nvml_index = -1;
    nv_load();
    if (!nv.ok) {
        snprintf(m->note, sizeof m->note, "%s", nv.why);
        return -1;
    }
    char bus[64];
    nvml_dev d;
    unsigned int idx = 0, count = 0;
    if (cuda_pci_bus_id(bus, sizeof bus) == 0 && nv.by_pci && nv.index_of && nv.by_pci(bus, &d) == NVML_OK &&
        nv.index_of(d, &idx) == NVML_OK) {
        m->nvml_index = (int)idx;
        snprintf(m->note, sizeof m->note, "CUDA device 0 is NVML device %u (PCI %s)", idx, bus);
    } else if (nv.count(&count) == NVML_OK && count == 1) {
        m->nvml_index = 0;
        snprintf(m->note, sizeof m->note, "the only NVML device (no PCI bus id from the CUDA driver)");
    } else {
        snprintf(m->note, sizeof m->note, "device found by this process's entry (no PCI bus id from the CUDA driver)");
    }
    if (m->nvml_index >= 0 && device_used((unsigned int)m->nvml_index, &m->baseline_mib)) m->baseline_mib = -1;
    return 0;
}

double qvl_gpu_meter_sample(qvl_gpu_meter *m) {
    if (!nv.ok) return -1;
    double v = -1;
    qvl_gpu_measure how = QVL_GPU_MEASURE_NONE;
    if (m->nvml_index < 0) {   /* unknown device: the one that lists this process */
        unsigned int count = 0;
        if (nv.count(&count) != NVML_OK) return -1;
        for (unsigned int i = 0; i < count && m->nvml_index < 0; i++)
            if (process_used(i, &v) == 1) m->nvml_index = (int)i, how = QVL_GPU_MEASURE_NVML_PROCESS;
    } else if (process_used((unsigned int)m->nvml_index, &v) == 1) {
        how = QVL_GPU_MEASURE_NVML_PROCESS;
    } else if (m->baseline_mib >= 0 && device_used((unsigned int)m->nvml_index, &v) == 0) {
        v -= m->baseline_mib;
        if (v < 0) v = 0;
        how = QVL_GPU_MEASURE_NVML_DEVICE_DELTA;
    }
    if (how == QVL_GPU_MEASURE_NONE) return -1;
    if (how != m->measure) m->peak_mib = 0;   /* a peak compares figures of one measure only */
    m->measure = how;
    if (v > m->peak_mib) m->peak_mib = v;
    return v;
}

const char *qvl_gpu_measure_name(qvl_gpu_measure measure) {
    switch (measure) {
    case QVL_GPU_MEASURE_NVML_PROCESS: return "nvml process";
    case QVL_GPU_MEASURE_NVML_DEVICE_DELTA: return "nvml device used minus before start";
    default: return "none";
    }
}

double qvl_gpu_context_mib(qvl_gpu_meter *m, const char **measure) {
    double ctx = qvl_cuda_context_mib();
    if (ctx < 0) {
        if (measure) *measure = "none";
        return -1;
    }
    double v = qvl_gpu_meter_sample(m);
    if (v >= 0) {
        if (measure) *measure = qvl_gpu_measure_name(m->measure);
        return v;
    }
    if (measure) *measure = "cudaMemGetInfo device used";
    return ctx;
}
