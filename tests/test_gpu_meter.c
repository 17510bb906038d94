/* The GPU memory meter (src/backend/cuda/cuda_nvml.c) without a GPU: NVML missing, and a fake
 * NVML/CUDA driver library (tests/fixtures/nvml/fake_nvml.c, built here with the C compiler) for
 * the v3 and v1 process-list layouts, the PCI bus id mapping, a list longer than the first buffer,
 * and the device-used fallback when this process is not listed. */
#include <stdio.h>
#include <stdlib.h>

#include "backend/cuda/cuda_nvml.h"
#include "test.h"

/* Builds the fake as DIR/NAME.so (extra: compiler flags); returns the malloc'd path or NULL. */
static char *build_fake(const char *name, const char *extra) {
    const char *cc = getenv("CC");
    char *path = malloc(512), cmd[1400];
    snprintf(path, 512, "%s/%s.so", test_tmpdir(), name);
    snprintf(cmd, sizeof cmd, "%s -shared -fPIC -O1 %s -o %s tests/fixtures/nvml/fake_nvml.c", cc && cc[0] ? cc : "cc",
             extra, path);
    if (system(cmd) != 0) {
        test_fail(__FILE__, __LINE__, "cannot build the fake NVML library: %s", cmd);
        free(path);
        return NULL;
    }
    return path;
}

static void clear_env(void) {
    qvl_gpu_meter_libraries(NULL, NULL);
    static const char *vars[] = {"FAKE_NVML_DEVICES", "FAKE_NVML_OUR_DEVICE",
                                 "FAKE_NVML_OTHERS", "FAKE_NVML_PID_MIB", "FAKE_NVML_DEV_USED_MIB"};
    for (size_t i = 0; i < sizeof vars / sizeof *vars; i++) unsetenv(vars[i]);
}

TEST(gpu_meter_without_nvml_says_why) {
    qvl_gpu_meter_libraries("/nonexistent/libnvidia-ml.so.1", NULL);
    qvl_gpu_meter m;
    CHECK_INT(qvl_gpu_meter_start(&m), -1);
    CHECK_CONTAINS(m.note, "NVML not available");
    CHECK_CONTAINS(m.note, "/nonexistent/libnvidia-ml.so.1");
    CHECK(qvl_gpu_meter_sample(&m) < 0);
    CHECK_INT(m.measure, QVL_GPU_MEASURE_NONE);
    CHECK_STR(qvl_gpu_measure_name(m.measure), "none");
    /* no GPU here: no context to measure, whatever the meter */
    const char *how = NULL;
    CHECK(qvl_gpu_context_mib(&m, &how) < 0);
    CHECK_STR(how, "none");
    clear_env();
}

TEST(gpu_meter_v3_list_found_through_the_pci_bus_id) {
    char *lib = build_fake("fake_v3", "");
    if (!lib) return;
    qvl_gpu_meter_libraries(lib, lib);
    setenv("FAKE_NVML_OTHERS", "100", 1);   /* more than the first buffer of 64 entries */
    setenv("FAKE_NVML_PID_MIB", "7163", 1);
    setenv("FAKE_NVML_DEV_USED_MIB", "900", 1);
    qvl_gpu_meter m;
    CHECK_INT(qvl_gpu_meter_start(&m), 0);
    CHECK_INT(m.nvml_index, 1);
    CHECK_CONTAINS(m.note, "PCI 0000:3B:00.0");
    CHECK_NEAR(m.baseline_mib, 900, 0);
    CHECK_NEAR(qvl_gpu_meter_sample(&m), 7163, 0);
    CHECK_INT(m.measure, QVL_GPU_MEASURE_NVML_PROCESS);
    CHECK_STR(qvl_gpu_measure_name(m.measure), "nvml process");
    setenv("FAKE_NVML_PID_MIB", "5000", 1);   /* the peak stays */
    CHECK_NEAR(qvl_gpu_meter_sample(&m), 5000, 0);
    CHECK_NEAR(m.peak_mib, 7163, 0);
    /* not listed (another PID namespace): device used minus the baseline, a new peak */
    setenv("FAKE_NVML_PID_MIB", "-1", 1);
    setenv("FAKE_NVML_DEV_USED_MIB", "1500", 1);
    CHECK_NEAR(qvl_gpu_meter_sample(&m), 600, 0);
    CHECK_INT(m.measure, QVL_GPU_MEASURE_NVML_DEVICE_DELTA);
    CHECK_NEAR(m.peak_mib, 600, 0);
    clear_env();
    free(lib);
}

TEST(gpu_meter_v1_list_device_found_by_this_process) {
    char *lib = build_fake("fake_v1", "-DFAKE_V1");
    if (!lib) return;
    qvl_gpu_meter_libraries(lib, "/nonexistent/libcuda.so.1");
    setenv("FAKE_NVML_DEVICES", "3", 1);
    setenv("FAKE_NVML_OUR_DEVICE", "2", 1);
    setenv("FAKE_NVML_OTHERS", "3", 1);   /* a wrong entry stride would misread this process's entry */
    setenv("FAKE_NVML_PID_MIB", "1234", 1);
    qvl_gpu_meter m;
    CHECK_INT(qvl_gpu_meter_start(&m), 0);
    CHECK_INT(m.nvml_index, -1);
    CHECK_CONTAINS(m.note, "found by this process's entry");
    CHECK(m.baseline_mib < 0);
    CHECK_NEAR(qvl_gpu_meter_sample(&m), 1234, 0);
    CHECK_INT(m.nvml_index, 2);
    CHECK_INT(m.measure, QVL_GPU_MEASURE_NVML_PROCESS);
    /* one device and no driver library: that device */
    setenv("FAKE_NVML_DEVICES", "1", 1);
    setenv("FAKE_NVML_OUR_DEVICE", "0", 1);
    CHECK_INT(qvl_gpu_meter_start(&m), 0);
    CHECK_INT(m.nvml_index, 0);
    CHECK_CONTAINS(m.note, "the only NVML device");
    CHECK_NEAR(qvl_gpu_meter_sample(&m), 1234, 0);
    clear_env();
    free(lib);
}
