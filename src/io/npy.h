/* NumPy .npy files (little-endian float32 / int32 / int64), for dumps and fixtures. */
#ifndef QVL_IO_NPY_H
#define QVL_IO_NPY_H
#include <stddef.h>
#include <stdint.h>

/* Writes data of the given shape; dtype is "<f4", "<i4" or "<i8". Atomic (temp file + rename). */
int qvl_npy_write(const char *path, const char *dtype, const int64_t *shape, int ndim, const void *data);

typedef struct {
    char dtype[8];          /* "<f4", "<i4", "<i8", ... */
    int ndim;
    int64_t shape[8];
    void *data;             /* malloc'd */
    size_t nbytes;
} qvl_npy;

/* Reads a C-order little-endian .npy. */
int qvl_npy_read(const char *path, qvl_npy *out);
void qvl_npy_free(qvl_npy *a);

/* If dir names a folder (qvl_tuning.dump_dir), writes DIR/<name>.npy (float32) and returns 1;
 * dir NULL or "": does nothing and returns 0. Used to dump every named intermediate for parity work. */
int qvl_dump_f32(const char *dir, const char *name, const float *data, const int64_t *shape, int ndim);

#endif
