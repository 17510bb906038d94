/* image_url resolution for chat requests (see media.h). */
#include "serve/media.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "image/image.h"
#include "image/probe.h"
#include "util/base64.h"
#include "util/error.h"

static uint8_t *fail(int *status, int code, char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static uint8_t *fail(int *status, int code, char *err, size_t errlen, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    *status = code;
    return NULL;
}

/* "data:[<media type>][;param...];base64,<data>": the payload, or NULL if not base64. */
static const char *data_url_payload(const char *url) {
    const char *comma = strchr(url, ',');
    if (!comma) return NULL;
    size_t hl = (size_t)(comma - url);
    if (hl < 12 || strncasecmp(comma - 7, ";base64", 7)) return NULL;
    return comma + 1;
}

/* Reads a local file when it lies inside the allowed folder (after resolving links). */
static uint8_t *load_local(const char *path, const char *item, const serve_media_policy *p, size_t *n,
                           int *status, char *err, size_t errlen) {
    if (!p->allowed_dir)
        return fail(status, 400, err, errlen,
                    "%s: local image files are not served (start qvl serve with --allowed-media-dir DIR, "
                    "or send the image as a data: URL)", item);
    char real[PATH_MAX];
    size_t dl = strlen(p->allowed_dir);
    /* One message for missing and forbidden files: the answer must not tell what exists outside. */
    if (!realpath(path, real) || strncmp(real, p->allowed_dir, dl) ||
        (real[dl] != '/' && real[dl] != 0 && strcmp(p->allowed_dir, "/")))
        return fail(status, 400, err, errlen, "%s: no such image in the allowed media folder", item);
    struct stat st;
    if (stat(real, &st) || !S_ISREG(st.st_mode))
        return fail(status, 400, err, errlen, "%s: not a regular file", item);
    if (st.st_size > p->max_bytes)
        return fail(status, 413, err, errlen, "%s: image file of %lld bytes, limit %ld", item,
                    (long long)st.st_size, p->max_bytes);
    FILE *f = fopen(real, "rb");
    if (!f) return fail(status, 400, err, errlen, "%s: cannot read: %s", item, strerror(errno));
    uint8_t *buf = malloc((size_t)st.st_size + 1);
    size_t got = buf ? fread(buf, 1, (size_t)st.st_size, f) : 0;
    fclose(f);
    if (!buf) return fail(status, 500, err, errlen, "%s: out of memory", item);
    if (got != (size_t)st.st_size) {
        free(buf);
        return fail(status, 400, err, errlen, "%s: cannot read the whole file", item);
    }
    *n = got;
    return buf;
}

/* Refuses an image over the pixel cap from its header alone (src/image/probe.c), before any pixel is
 * decoded: a small file may declare a huge image (a 28 KB progressive JPEG of 65500x480 decodes to
 * 31 M pixels, about 1 GB and seconds of work). Then decodes it once, within the cap, so a corrupt
 * image is refused here with 400 rather than failing later in the engine. */
static int check_pixels(const uint8_t *d, size_t n, const char *item, const serve_media_policy *p, int *status,
                        char *err, size_t errlen) {
    int w = 0, h = 0;
    if (qvl_image_probe(d, n, item, &w, &h)) {
        snprintf(err, errlen, "%s", qvl_error());
        *status = 400;
        return -1;
    }
    long px = (long)w * h;
    if (p->max_pixels > 0 && px > p->max_pixels) {
        snprintf(err, errlen, "%s: image of %ld pixels, limit %ld (its header declares %dx%d)", item, px, p->max_pixels,
                 w, h);
        *status = 413;
        return -1;
    }
    qvl_image img;
    if (qvl_image_decode(d, n, item, &img)) {
        snprintf(err, errlen, "%s", qvl_error());
        *status = 400;
        return -1;
    }
    qvl_image_free(&img);
    return 0;
}

uint8_t *serve_media_load(const char *url, const char *item, const serve_media_policy *p, size_t *n,
                          int *status, char *err, size_t errlen) {
    *n = 0;
    uint8_t *data = NULL;
    if (!strncasecmp(url, "data:", 5)) {
        const char *b64 = data_url_payload(url);
        if (!b64) return fail(status, 400, err, errlen, "%s: a data: URL must be base64 (data:image/png;base64,...)", item);
        size_t len = strlen(b64);
        if ((long)(len / 4 * 3) > p->max_bytes + 3)
            return fail(status, 413, err, errlen, "%s: image of about %zu bytes, limit %ld", item, len / 4 * 3,
                        p->max_bytes);
        data = qvl_base64_decode(b64, len, n);
        if (!data) return fail(status, 400, err, errlen, "%s: %s", item, qvl_error());
        if (*n == 0) {
            free(data);
            return fail(status, 400, err, errlen, "%s: empty image", item);
        }
        if ((long)*n > p->max_bytes) {   /* the estimate above lets up to 3 bytes of padding through */
            size_t got = *n;
            free(data);
            *n = 0;
            return fail(status, 413, err, errlen, "%s: image of %zu bytes, limit %ld", item, got, p->max_bytes);
        }
    } else {
        /* A URL scheme: letters, digits, + - . then ':' (a Windows drive letter is not a case here). */
        const char *c = url;
        while (isalnum((unsigned char)*c) || *c == '+' || *c == '-' || *c == '.') c++;
        int has_scheme = c > url && *c == ':' && isalpha((unsigned char)url[0]);
        if (has_scheme && !strncasecmp(url, "file://", 7)) {
            const char *path = url + 7;
            if (!strncasecmp(path, "localhost/", 10)) path += 9;
            if (path[0] != '/') return fail(status, 400, err, errlen, "%s: a file URL needs an absolute path", item);
            data = load_local(path, item, p, n, status, err, errlen);
        } else if (has_scheme) {
            if (!strncasecmp(url, "http:", 5) || !strncasecmp(url, "https:", 6))
                return fail(status, 400, err, errlen,
                            "%s: remote URLs are not fetched; send the image as a data: URL", item);
            return fail(status, 400, err, errlen, "%s: unsupported URL scheme '%.*s'", item, (int)(c - url), url);
        } else {
            if (!url[0]) return fail(status, 400, err, errlen, "%s: empty URL", item);
            data = load_local(url, item, p, n, status, err, errlen);
        }
        if (!data) return NULL;
    }
    if (check_pixels(data, *n, item, p, status, err, errlen)) {
        free(data);
        return NULL;
    }
    return data;
}
