/* Shared by the GPU tests (the qvl-gpu-tests binary): the tiny fixtures' folder,
 * QVL_TEST_VERBOSE, and the check that a CUDA device is there (a GPU test without one fails: it
 * runs on the GPU machine only, via `make test-gpu` or tests/gpu/run_all.sh). */
#ifndef QVL_TESTS_GPU_TEST_H
#define QVL_TESTS_GPU_TEST_H
#include <stdlib.h>

#include "backend/cuda/cuda_device.h"
#include "cli/tuning_env.h" /* qvl_tuning_from_env: the device scripts' QVL_ATT_IMPL=0 runs */
#include "../test.h"

#define FIX "tests/fixtures/tiny"

static inline int verbose(void) { return getenv("QVL_TEST_VERBOSE") != NULL; }

static inline int have_gpu(void) {
    if (qvl_cuda_device_count() > 0) return 1;
    test_fail(__FILE__, __LINE__, "no CUDA device: the GPU tests need one");
    return 0;
}

#endif
