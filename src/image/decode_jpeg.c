/* JPEG via libjpeg-turbo with the settings PIL uses: libjpeg's defaults (ISLOW integer IDCT, fancy
 * upsampling), output RGB for colour files and L for grayscale; 4-component files (CMYK, YCCK)
 * are decoded to CMYK, inverted (PIL assumes Adobe's inverted CMYK for every 4-component JPEG:
 * rawmode "CMYK;I"), then converted with PIL's cmyk2rgb. A file that ends early is an error,
 * as in PIL (libjpeg would pad it with grey). */
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <jerror.h>

#include "image/decode_internal.h"
#include "util/error.h"

typedef struct {
    struct jpeg_error_mgr mgr;
    jmp_buf jump;
    int truncated;
} jpeg_errors;

static void on_error_exit(j_common_ptr cinfo) {
    jpeg_errors *e = (jpeg_errors *)cinfo->err;
    longjmp(e->jump, 1);
}

/* Warnings (corrupt-data notes) are ignored as PIL ignores them; a premature end is remembered. */
static void on_message(j_common_ptr cinfo, int level) {
    jpeg_errors *e = (jpeg_errors *)cinfo->err;
    if (level < 0 && cinfo->err->msg_code == JWRN_JPEG_EOF) e->truncated = 1;
}

/* PIL's MULDIV255 and cmyk2rgb (Convert.c) applied to inverted CMYK bytes. */
static inline int muldiv255(int a, int b) {
    int t = a * b + 128;
    return ((t >> 8) + t) >> 8;
}

static void cmyk_inverted_to_rgb(uint8_t *out, const uint8_t *in, int w) {
    for (int x = 0; x < w; x++, in += 4, out += 3) {
        int c = 255 - in[0], m = 255 - in[1], y = 255 - in[2], k = 255 - in[3];
        int nk = 255 - k;
        out[0] = (uint8_t)(nk - muldiv255(c, nk));
        out[1] = (uint8_t)(nk - muldiv255(m, nk));
        out[2] = (uint8_t)(nk - muldiv255(y, nk));
    }
}

int qvl_decode_jpeg(const uint8_t *data, size_t n, const char *name, qvl_image *img) {
    struct jpeg_decompress_struct cinfo;
    jpeg_errors err;
    uint8_t *volatile row = NULL; /* volatile: read after longjmp */
    memset(&cinfo, 0, sizeof cinfo);
    cinfo.err = jpeg_std_error(&err.mgr);
    err.mgr.error_exit = on_error_exit;
    err.mgr.emit_message = on_message;
    err.truncated = 0;
    if (setjmp(err.jump)) {
        char msg[JMSG_LENGTH_MAX];
        err.mgr.format_message((j_common_ptr)&cinfo, msg);
        jpeg_destroy_decompress(&cinfo);
        free(row);
        return qvl_errorf("%s: corrupt or truncated JPEG (%s)", name, msg);
    }
    jpeg_create_decompress(&cinfo);
    jpeg_mem_src(&cinfo, data, (unsigned long)n);
    jpeg_read_header(&cinfo, TRUE);
    if (qvl_image_check_size(name, cinfo.image_width, cinfo.image_height)) {
        jpeg_destroy_decompress(&cinfo);
        return -1;
    }
    int comps;
    switch (cinfo.jpeg_color_space) {
    case JCS_GRAYSCALE: cinfo.out_color_space = JCS_GRAYSCALE; comps = 1; break;
    case JCS_CMYK:
    case JCS_YCCK: cinfo.out_color_space = JCS_CMYK; comps = 4; break;
    case JCS_YCbCr:
    case JCS_RGB: cinfo.out_color_space = JCS_RGB; comps = 3; break;
    default:
        jpeg_destroy_decompress(&cinfo);
        return qvl_errorf("%s: unsupported JPEG colour space (%d components)", name, cinfo.num_components);
    }
    jpeg_start_decompress(&cinfo);
    if (cinfo.output_components != comps) {
        jpeg_destroy_decompress(&cinfo);
        return qvl_errorf("%s: unexpected JPEG output components (%d)", name, cinfo.output_components);
    }
    int w = (int)cinfo.output_width, h = (int)cinfo.output_height;
    if (qvl_image_alloc(img, w, h, name)) {
        jpeg_destroy_decompress(&cinfo);
        return -1;
    }
    if (comps != 3) row = malloc((size_t)w * comps);
    if (comps != 3 && !row) {
        jpeg_destroy_decompress(&cinfo);
        return qvl_errorf("%s: out of memory", name);
    }
    while (cinfo.output_scanline < cinfo.output_height) {
        uint8_t *dst = img->rgb + (size_t)cinfo.output_scanline * w * 3;
        JSAMPROW rp = comps == 3 ? dst : row;
        jpeg_read_scanlines(&cinfo, &rp, 1);
        if (comps == 1) {
            for (int x = 0; x < w; x++) dst[3 * x] = dst[3 * x + 1] = dst[3 * x + 2] = row[x];
        } else if (comps == 4) {
            cmyk_inverted_to_rgb(dst, row, w);
        }
        if (err.truncated) break;
    }
    free(row);
    row = NULL;
    /* No jpeg_finish_decompress: once every row is out, what follows (EOI, trailing bytes) does not
     * change the pixels, and PIL does not fail on it either. */
    jpeg_destroy_decompress(&cinfo);
    if (err.truncated) return qvl_errorf("%s: truncated JPEG file", name);
    return 0;
}
