#include <stdio.h>
#include <stdlib.h>

#include "io/npy.h"
#include "test.h"

TEST(npy_roundtrip_f32) {
    float v[6] = {1.5f, -2, 3, 4, 5, 6.25f};
    int64_t shape[2] = {2, 3};
    char path[512];
    snprintf(path, sizeof path, "%s/a.npy", test_tmpdir());
    CHECK_INT(qvl_npy_write(path, "<f4", shape, 2, v), 0);
    qvl_npy a;
    CHECK_INT(qvl_npy_read(path, &a), 0);
    CHECK_STR(a.dtype, "<f4");
    CHECK_INT(a.ndim, 2);
    CHECK_INT(a.shape[1], 3);
    CHECK_NEAR(((float *)a.data)[5], 6.25, 0);
    qvl_npy_free(&a);
}

TEST(npy_rejects_garbage) {
    char path[512];
    snprintf(path, sizeof path, "%s/bad.npy", test_tmpdir());
    FILE *f = fopen(path, "wb");
    fputs("hello world, not numpy", f);
    fclose(f);
    qvl_npy a;
    CHECK_INT(qvl_npy_read(path, &a), -1);
}
