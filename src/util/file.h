/* Whole-file reading and atomic writing. */
#ifndef QVL_UTIL_FILE_H
#define QVL_UTIL_FILE_H
#include <stddef.h>

/* Reads a whole file into a malloc'd, NUL-terminated buffer; sets *len. NULL + qvl_error on failure. */
char *qvl_read_file(const char *path, size_t *len);
/* Writes data to path via a temporary file and rename, so a crash never leaves a partial file. */
int qvl_write_file_atomic(const char *path, const void *data, size_t len);
/* Joins dir and name with one '/'; malloc'd. */
char *qvl_path_join(const char *dir, const char *name);
/* 1 if path is an existing directory. */
int qvl_is_dir(const char *path);

#endif
