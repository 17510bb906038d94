/* Header-only size probes (probe.h). Each format goes through the same library call or header
 * parser its decoder starts with, and the same refusals, so that the size (or the error) is the
 * decoder's; only what the decoder finds in the pixel data itself is left to decode time. */
#include "image/probe.h"

#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gif_lib.h>
#include <jerror.h>
#include <jpeglib.h>
#include <png.h>
#include <webp/decode.h>

#include "image/decode_internal.h"
#include "util/error.h"

typedef struct {
    struct jpeg_error_mgr mgr;
    jmp_buf jump;
} jpeg_errors;

static void jpeg_on_error(j_common_ptr cinfo) { longjmp(((jpeg_errors *)cinfo->err)->jump, 1); }
static void jpeg_on_message(j_common_ptr cinfo, int level) { (void)cinfo, (void)level; }

/* jpeg_read_header as decode_jpeg.c calls it (markers up to the first scan; no pixel data). */
static int probe_jpeg(const uint8_t *d, size_t n, const char *name, int *w, int *h) {
    struct jpeg_decompress_struct cinfo;
    jpeg_errors err;
    memset(&cinfo, 0, sizeof cinfo);
    cinfo.err = jpeg_std_error(&err.mgr);
    err.mgr.error_exit = jpeg_on_error;
    err.mgr.emit_message = jpeg_on_message;
    if (setjmp(err.jump)) {
        char msg[JMSG_LENGTH_MAX];
        err.mgr.format_message((j_common_ptr)&cinfo, msg);
        jpeg_destroy_decompress(&cinfo);
        return qvl_errorf("%s: corrupt or truncated JPEG (%s)", name, msg);
    }
    jpeg_create_decompress(&cinfo);
    jpeg_mem_src(&cinfo, d, (unsigned long)n);
    jpeg_read_header(&cinfo, TRUE);
    long iw = cinfo.image_width, ih = cinfo.image_height;
    J_COLOR_SPACE cs = cinfo.jpeg_color_space;
    int comps = cinfo.num_components;
    jpeg_destroy_decompress(&cinfo);
    if (qvl_image_check_size(name, iw, ih)) return -1;
    if (cs != JCS_GRAYSCALE && cs != JCS_CMYK && cs != JCS_YCCK && cs != JCS_YCbCr && cs != JCS_RGB)
        return qvl_errorf("%s: unsupported JPEG colour space (%d components)", name, comps);
    *w = (int)iw, *h = (int)ih;
    return 0;
}

typedef struct {
    const uint8_t *data;
    size_t n, pos;
    char msg[200];
} png_source;

static void png_read_bytes(png_structp png, png_bytep out, png_size_t len) {
    png_source *s = png_get_io_ptr(png);
    if (len > s->n - s->pos) png_error(png, "truncated file");
    memcpy(out, s->data + s->pos, len);
    s->pos += len;
}
static void png_on_error(png_structp png, png_const_charp msg) {
    png_source *s = png_get_error_ptr(png);
    snprintf(s->msg, sizeof s->msg, "%s", msg);
    png_longjmp(png, 1);
}
static void png_on_warning(png_structp png, png_const_charp msg) { (void)png, (void)msg; }

/* png_read_info as decode_png.c calls it (chunks up to the first IDAT). */
static int probe_png(const uint8_t *d, size_t n, const char *name, int *w, int *h) {
    png_source src = {d, n, 0, ""};
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &src, png_on_error, png_on_warning);
    if (!png) return qvl_errorf("%s: out of memory", name);
    png_infop info = png_create_info_struct(png);
    if (!info || setjmp(png_jmpbuf(png))) {
        png_destroy_read_struct(&png, info ? &info : NULL, NULL);
        return qvl_errorf("%s: corrupt or truncated PNG (%s)", name, src.msg[0] ? src.msg : "out of memory");
    }
    png_set_read_fn(png, &src, png_read_bytes);
    png_set_user_limits(png, 0x7fffffff, 0x7fffffff);
    png_read_info(png, info);
    png_uint_32 pw = png_get_image_width(png, info), ph = png_get_image_height(png, info);
    png_destroy_read_struct(&png, &info, NULL);
    if (qvl_image_check_size(name, (long)pw, (long)ph)) return -1;
    *w = (int)pw, *h = (int)ph;
    return 0;
}

static int probe_webp(const uint8_t *d, size_t n, const char *name, int *w, int *h) {
    WebPBitstreamFeatures f;
    VP8StatusCode st = WebPGetFeatures(d, n, &f);
    if (st == VP8_STATUS_NOT_ENOUGH_DATA) return qvl_errorf("%s: truncated WebP file", name);
    if (st != VP8_STATUS_OK) return qvl_errorf("%s: corrupt WebP file (status %d)", name, (int)st);
    if (f.has_animation) return qvl_errorf("%s: animated WebP is not supported", name);
    if (qvl_image_check_size(name, f.width, f.height)) return -1;
    *w = f.width, *h = f.height;
    return 0;
}

typedef struct {
    const uint8_t *data;
    size_t n, pos;
} gif_source;

static int gif_read_bytes(GifFileType *g, GifByteType *out, int len) {
    gif_source *s = g->UserData;
    size_t k = (size_t)len <= s->n - s->pos ? (size_t)len : s->n - s->pos;
    memcpy(out, s->data + s->pos, k);
    s->pos += k;
    return (int)k;
}

/* The decoder draws the first frame on a canvas of the logical screen: its size is the image's. */
static int probe_gif(const uint8_t *d, size_t n, const char *name, int *w, int *h) {
    gif_source src = {d, n, 0};
    int err = 0;
    GifFileType *g = DGifOpen(&src, gif_read_bytes, &err);
    if (!g) return qvl_errorf("%s: corrupt GIF header (%s)", name, GifErrorString(err));
    int W = g->SWidth, H = g->SHeight;
    DGifCloseFile(g, NULL);
    if (qvl_image_check_size(name, W, H)) return -1;
    *w = W, *h = H;
    return 0;
}

static int probe_bmp(const uint8_t *d, size_t n, const char *name, int *w, int *h) {
    qvl_bmp_header hd;
    if (qvl_bmp_parse_header(d, n, name, &hd)) return -1;
    *w = (int)hd.w, *h = (int)hd.h;
    return 0;
}

static int starts_with(const uint8_t *d, size_t n, const char *magic, size_t len) {
    return n >= len && memcmp(d, magic, len) == 0;
}

int qvl_image_probe(const uint8_t *d, size_t n, const char *name, int *width, int *height) {
    *width = *height = 0;
    int w = 0, h = 0, rc;
    /* The same magic-byte dispatch and refusals as qvl_image_decode (decode.c). */
    if (n == 0) return qvl_errorf("%s: empty file", name);
    if (starts_with(d, n, "\xff\xd8\xff", 3))
        rc = probe_jpeg(d, n, name, &w, &h);
    else if (starts_with(d, n, "\x89PNG\r\n\x1a\n", 8))
        rc = probe_png(d, n, name, &w, &h);
    else if (n >= 12 && starts_with(d, n, "RIFF", 4) && !memcmp(d + 8, "WEBP", 4))
        rc = probe_webp(d, n, name, &w, &h);
    else if (starts_with(d, n, "GIF87a", 6) || starts_with(d, n, "GIF89a", 6))
        rc = probe_gif(d, n, name, &w, &h);
    else if (starts_with(d, n, "BM", 2))
        rc = probe_bmp(d, n, name, &w, &h);
    else if (starts_with(d, n, "II*\0", 4) || starts_with(d, n, "MM\0*", 4))
        return qvl_errorf("%s: unsupported image format (TIFF)", name);
    else if (starts_with(d, n, "\0\0\0\x0cjP  ", 8) || starts_with(d, n, "\xff\x4f\xff\x51", 4))
        return qvl_errorf("%s: unsupported image format (JPEG 2000)", name);
    else if (n >= 12 && !memcmp(d + 4, "ftyp", 4))
        return qvl_errorf("%s: unsupported image format (HEIF/AVIF)", name);
    else
        return qvl_errorf("%s: unsupported or unrecognized image format", name);
    if (rc) return -1;
    *width = w, *height = h;
    return 0;
}

enum { PROBE_PREFIX = 64 << 10 };

int qvl_image_probe_file(const char *path, int *width, int *height) {
    *width = *height = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return qvl_errorf("%s: cannot open", path);
    uint8_t *buf = malloc(PROBE_PREFIX);
    if (!buf) {
        fclose(f);
        return qvl_errorf("%s: out of memory", path);
    }
    size_t n = fread(buf, 1, PROBE_PREFIX, f);
    int rc;
    if (ferror(f)) {
        rc = qvl_errorf("%s: read error", path);
    } else if (n < PROBE_PREFIX) {   /* the whole file */
        rc = qvl_image_probe(buf, n, path, width, height);
    } else if ((rc = qvl_image_probe(buf, n, path, width, height)) != 0) {
        /* The header may run past the prefix (or the format needs the file's size): probe it whole. */
        size_t all = n;
        for (;;) {
            uint8_t *nb = realloc(buf, all * 2);
            if (!nb) {
                rc = qvl_errorf("%s: out of memory", path);
                break;
            }
            buf = nb;
            size_t k = fread(buf + all, 1, all, f);
            all += k;
            if (ferror(f)) {
                rc = qvl_errorf("%s: read error", path);
                break;
            }
            if (k < all - k) {
                rc = qvl_image_probe(buf, all, path, width, height);
                break;
            }
        }
    }
    free(buf);
    fclose(f);
    return rc;
}
