/* Format detection by magic bytes (never by file extension) and dispatch to the decoders. */
#include <stdlib.h>
#include <string.h>

#include "image/big_alloc.h"
#include "image/decode_internal.h"
#include "image/image.h"
#include "util/error.h"
#include "util/file.h"

int qvl_image_check_size(const char *name, long width, long height) {
    if (width <= 0 || height <= 0)
        return qvl_errorf("%s: image has zero size (%ldx%ld)", name, width, height);
    if (width > QVL_IMAGE_MAX_PIXELS / height)
        return qvl_errorf("%s: image too large (%ldx%ld pixels, limit %ld pixels)", name, width,
                          height, QVL_IMAGE_MAX_PIXELS);
    return 0;
}

int qvl_image_alloc(qvl_image *img, int width, int height, const char *name) {
    if (qvl_image_check_size(name, width, height)) return -1;
    img->rgb = qvl_big_alloc((size_t)width * height * 3);
    if (!img->rgb) return qvl_errorf("%s: out of memory for a %dx%d image", name, width, height);
    img->width = width;
    img->height = height;
    return 0;
}

static int starts_with(const uint8_t *d, size_t n, const char *magic, size_t len) {
    return n >= len && memcmp(d, magic, len) == 0;
}

int qvl_image_decode(const uint8_t *d, size_t n, const char *name, qvl_image *img) {
    memset(img, 0, sizeof *img);
    int rc;
    if (n == 0) return qvl_errorf("%s: empty file", name);
    if (starts_with(d, n, "\xff\xd8\xff", 3))
        rc = qvl_decode_jpeg(d, n, name, img);
    else if (starts_with(d, n, "\x89PNG\r\n\x1a\n", 8))
        rc = qvl_decode_png(d, n, name, img);
    else if (n >= 12 && starts_with(d, n, "RIFF", 4) && !memcmp(d + 8, "WEBP", 4))
        rc = qvl_decode_webp(d, n, name, img);
    else if (starts_with(d, n, "GIF87a", 6) || starts_with(d, n, "GIF89a", 6))
        rc = qvl_decode_gif(d, n, name, img);
    else if (starts_with(d, n, "BM", 2))
        rc = qvl_decode_bmp(d, n, name, img);
    else if (starts_with(d, n, "II*\0", 4) || starts_with(d, n, "MM\0*", 4))
        return qvl_errorf("%s: unsupported image format (TIFF)", name);
    else if (starts_with(d, n, "\0\0\0\x0cjP  ", 8) || starts_with(d, n, "\xff\x4f\xff\x51", 4))
        return qvl_errorf("%s: unsupported image format (JPEG 2000)", name);
    else if (n >= 12 && !memcmp(d + 4, "ftyp", 4))
        return qvl_errorf("%s: unsupported image format (HEIF/AVIF)", name);
    else
        return qvl_errorf("%s: unsupported or unrecognized image format", name);
    if (rc) qvl_image_free(img);
    return rc;
}

int qvl_image_load(const char *path, qvl_image *img) {
    memset(img, 0, sizeof *img);
    size_t n;
    char *data = qvl_read_file(path, &n);
    if (!data) return -1;
    int rc = qvl_image_decode((const uint8_t *)data, n, path, img);
    free(data);
    return rc;
}

void qvl_image_free(qvl_image *img) {
    if (!img) return;
    free(img->rgb);
    img->rgb = NULL;
    img->width = img->height = 0;
}
