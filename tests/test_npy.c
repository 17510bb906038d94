#include <stdio.h>
#include <stdlib.h>

#include "io/npy.h"
#include "test.h"
#include "util/error.h"

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

/* A negative dimension must not wrap the size check into a huge copy. */
TEST(npy_rejects_negative_shape) {
    char path[512];
    snprintf(path, sizeof path, "%s/neg.npy", test_tmpdir());
    const char dict[] = "{'descr': '<f4', 'fortran_order': False, 'shape': (-1,), }\n";
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    fwrite("\x93NUMPY\x01\x00", 1, 8, f);
    fputc((int)(sizeof dict - 1), f);
    fputc(0, f);
    fwrite(dict, 1, sizeof dict - 1, f);
    fwrite("\0\0\0\0\0\0\0\0", 1, 8, f);
    fclose(f);
    qvl_npy a;
    CHECK_INT(qvl_npy_read(path, &a), -1);
    CHECK_CONTAINS(qvl_error(), "neg.npy: bad shape");
}
