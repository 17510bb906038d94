#include "io/npy.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/error.h"
#include "util/file.h"

static size_t dtype_size(const char *d) {
    if (!strcmp(d, "<f4") || !strcmp(d, "<i4")) return 4;
    if (!strcmp(d, "<i8") || !strcmp(d, "<f8")) return 8;
    if (!strcmp(d, "<f2") || !strcmp(d, "<i2")) return 2;
    if (!strcmp(d, "|u1") || !strcmp(d, "|i1")) return 1;
    return 0;
}

int qvl_npy_write(const char *path, const char *dtype, const int64_t *shape, int ndim, const void *data) {
    size_t es = dtype_size(dtype);
    if (!es) return qvl_errorf("%s: unsupported npy dtype %s", path, dtype);
    char dict[512];
    int k = snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (", dtype);
    size_t count = 1;
    for (int i = 0; i < ndim; i++) {
        k += snprintf(dict + k, sizeof dict - (size_t)k, "%lld,%s", (long long)shape[i], i + 1 < ndim ? " " : "");
        count *= (size_t)shape[i];
    }
    k += snprintf(dict + k, sizeof dict - (size_t)k, "), }");
    size_t header = 10 + (size_t)k + 1;            /* magic(6) ver(2) len(2) dict '\n' */
    size_t pad = (64 - header % 64) % 64;
    size_t hlen = (size_t)k + pad + 1, total = 10 + hlen + count * es;
    char *buf = malloc(total);
    if (!buf) return qvl_errorf("%s: out of memory", path);
    memcpy(buf, "\x93NUMPY\x01\x00", 8);
    buf[8] = (char)(hlen & 0xff);
    buf[9] = (char)(hlen >> 8);
    memcpy(buf + 10, dict, (size_t)k);
    memset(buf + 10 + k, ' ', pad);
    buf[10 + hlen - 1] = '\n';
    if (count) memcpy(buf + 10 + hlen, data, count * es);
    int rc = qvl_write_file_atomic(path, buf, total);
    free(buf);
    return rc;
}

int qvl_npy_read(const char *path, qvl_npy *out) {
    memset(out, 0, sizeof *out);
    size_t n;
    char *buf = qvl_read_file(path, &n);
    if (!buf) return -1;
    if (n < 10 || memcmp(buf, "\x93NUMPY", 6) != 0) {
        free(buf);
        return qvl_errorf("%s: not a .npy file", path);
    }
    size_t hlen, off;
    if (buf[6] == 1) {
        hlen = (unsigned char)buf[8] | (size_t)(unsigned char)buf[9] << 8;
        off = 10;
    } else {
        if (n < 12) { free(buf); return qvl_errorf("%s: truncated .npy header", path); }
        hlen = (unsigned char)buf[8] | (size_t)(unsigned char)buf[9] << 8 | (size_t)(unsigned char)buf[10] << 16 |
               (size_t)(unsigned char)buf[11] << 24;
        off = 12;
    }
    if (off + hlen > n) { free(buf); return qvl_errorf("%s: truncated .npy header", path); }
    char *h = strndup(buf + off, hlen);
    if (!h) {
        free(buf);
        return qvl_errorf("%s: out of memory", path);
    }
    const char *d = strstr(h, "'descr': '"), *fo = strstr(h, "'fortran_order': "), *sh = strstr(h, "'shape': (");
    if (!d || !fo || !sh || strncmp(fo + 17, "False", 5) != 0) {
        free(h); free(buf);
        return qvl_errorf("%s: unsupported .npy header", path);
    }
    snprintf(out->dtype, sizeof out->dtype, "%.3s", d + 10);
    size_t es = dtype_size(out->dtype), count = 1;
    int bad_shape = 0;
    const char *p = sh + 10;
    while (*p && *p != ')') {
        if (out->ndim >= 8) break;
        char *end;
        long long v = strtoll(p, &end, 10);
        if (end == p) break;
        /* a negative or overflowing shape would wrap the size check below */
        if (v < 0 || (v > 0 && count > SIZE_MAX / 8 / (size_t)v)) bad_shape = 1;
        out->shape[out->ndim++] = v;
        if (!bad_shape) count *= (size_t)v;
        p = end;
        while (*p == ',' || *p == ' ') p++;
    }
    free(h);
    if (bad_shape) {
        free(buf);
        return qvl_errorf("%s: bad shape in the .npy header", path);
    }
    if (!es || count * es > n - off - hlen) {
        free(buf);
        return qvl_errorf("%s: unsupported dtype or truncated data", path);
    }
    out->nbytes = count * es;
    out->data = malloc(out->nbytes ? out->nbytes : 1);
    if (!out->data) {
        free(buf);
        return qvl_errorf("%s: out of memory", path);
    }
    memcpy(out->data, buf + off + hlen, out->nbytes);
    free(buf);
    return 0;
}

void qvl_npy_free(qvl_npy *a) {
    free(a->data);
    memset(a, 0, sizeof *a);
}

int qvl_dump_f32(const char *dir, const char *name, const float *data, const int64_t *shape, int ndim) {
    if (!dir || !*dir) return 0;
    char path[1024];
    snprintf(path, sizeof path, "%s/%s.npy", dir, name);
    if (qvl_npy_write(path, "<f4", shape, ndim, data) != 0) {
        fprintf(stderr, "qvl: dump %s failed: %s\n", name, qvl_error());
        return 0;
    }
    return 1;
}
