/* BMP (Windows v3/v4/v5 and OS/2 headers), uncompressed or BITFIELDS, 1/4/8-bit palette, 16-bit
 * (5-5-5 or 5-6-5, expanded as PIL's BGR;15 / BGR;16 unpackers do), 24-bit and 32-bit. Rows are
 * bottom-up unless the height is negative. RLE-compressed files are refused. */
#include <stdlib.h>
#include <string.h>

#include "image/decode_internal.h"
#include "util/error.h"

static uint32_t u16(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8; }
static uint32_t u32(const uint8_t *p) { return u16(p) | u16(p + 2) << 16; }

/* Position of the lowest set bit of an 8-bit-wide byte-aligned mask, or -1. */
static int byte_shift(uint32_t mask) {
    for (int s = 0; s <= 24; s += 8)
        if (mask == 0xffu << s) return s;
    return -1;
}

int qvl_bmp_parse_header(const uint8_t *d, size_t n, const char *name, qvl_bmp_header *hd) {
    memset(hd, 0, sizeof *hd);
    if (n < 26) return qvl_errorf("%s: truncated BMP header", name);
    uint32_t off = u32(d + 10), hsize = u32(d + 14);
    long w, h;
    int bits, compression = 0, os2 = hsize == 12;
    uint32_t colors = 0, masks[3] = {0, 0, 0};
    if (os2) {
        w = (long)u16(d + 18);
        h = (long)u16(d + 20);
        bits = (int)u16(d + 24);
    } else if (hsize >= 40 && hsize <= 124) {
        if (n < 14 + 40) return qvl_errorf("%s: truncated BMP header", name);
        w = (int32_t)u32(d + 18);
        h = (int32_t)u32(d + 22);
        bits = (int)u16(d + 28);
        compression = (int)u32(d + 30);
        colors = u32(d + 46);
    } else {
        return qvl_errorf("%s: unsupported BMP header size %u", name, hsize);
    }
    int top_down = h < 0;
    if (top_down) h = -h;
    if (qvl_image_check_size(name, w, h)) return -1;
    if (compression == 1 || compression == 2)
        return qvl_errorf("%s: RLE-compressed BMP is not supported", name);
    if (compression == 3 || compression == 6) {
        size_t at = hsize >= 52 ? 14 + 40 : 14 + hsize;
        if (n < at + 12) return qvl_errorf("%s: truncated BMP header", name);
        for (int i = 0; i < 3; i++) masks[i] = u32(d + at + 4 * i);
    } else if (compression != 0) {
        return qvl_errorf("%s: unsupported BMP compression %d", name, compression);
    }
    /* Palette for 1/4/8-bit files: BGRX entries (BGR for OS/2 v1). */
    uint8_t pal[256][3];
    memset(pal, 0, sizeof pal);
    if (bits == 1 || bits == 4 || bits == 8) {
        uint32_t count = colors ? colors : 1u << bits;
        if (count > 256) count = 256;
        size_t entry = os2 ? 3 : 4, at = 14 + hsize;
        if (at + count * entry > n) return qvl_errorf("%s: truncated BMP palette", name);
        for (uint32_t i = 0; i < count; i++) {
            pal[i][0] = d[at + i * entry + 2];
            pal[i][1] = d[at + i * entry + 1];
            pal[i][2] = d[at + i * entry + 0];
        }
    } else if (bits != 16 && bits != 24 && bits != 32) {
        return qvl_errorf("%s: unsupported BMP bit depth %d", name, bits);
    }
    int r_shift = 16, g_shift = 8, b_shift = 0, is565 = 0;
    if (compression == 3 || compression == 6) {
        if (bits == 32) {
            r_shift = byte_shift(masks[0]), g_shift = byte_shift(masks[1]), b_shift = byte_shift(masks[2]);
            if (r_shift < 0 || g_shift < 0 || b_shift < 0)
                return qvl_errorf("%s: unsupported BMP bit masks", name);
        } else if (bits == 16) {
            if (masks[0] == 0xf800 && masks[1] == 0x7e0 && masks[2] == 0x1f) is565 = 1;
            else if (!(masks[0] == 0x7c00 && masks[1] == 0x3e0 && masks[2] == 0x1f))
                return qvl_errorf("%s: unsupported BMP bit masks", name);
        } else {
            return qvl_errorf("%s: bit masks on a %d-bit BMP", name, bits);
        }
    }
    size_t stride = (((size_t)w * bits + 31) / 32) * 4;
    if (off > n || stride * h > n - off) return qvl_errorf("%s: truncated BMP pixel data", name);
    hd->w = w, hd->h = h, hd->top_down = top_down, hd->bits = bits, hd->is565 = is565;
    hd->r_shift = r_shift, hd->g_shift = g_shift, hd->b_shift = b_shift;
    hd->off = off, hd->stride = stride;
    memcpy(hd->pal, pal, sizeof pal);
    return 0;
}

int qvl_decode_bmp(const uint8_t *d, size_t n, const char *name, qvl_image *img) {
    qvl_bmp_header hd;
    if (qvl_bmp_parse_header(d, n, name, &hd)) return -1;
    const long w = hd.w, h = hd.h;
    const int bits = hd.bits, top_down = hd.top_down, is565 = hd.is565;
    const int r_shift = hd.r_shift, g_shift = hd.g_shift, b_shift = hd.b_shift;
    const size_t off = hd.off, stride = hd.stride;
    const uint8_t(*pal)[3] = hd.pal;
    if (qvl_image_alloc(img, (int)w, (int)h, name)) return -1;
    for (long y = 0; y < h; y++) {
        const uint8_t *s = d + off + stride * (top_down ? y : h - 1 - y);
        uint8_t *o = img->rgb + (size_t)y * w * 3;
        for (long x = 0; x < w; x++, o += 3) {
            if (bits <= 8) {
                int per = 8 / bits, shift = 8 - bits * (int)(x % per + 1);
                memcpy(o, pal[(s[x / per] >> shift) & ((1 << bits) - 1)], 3);
            } else if (bits == 16) {
                uint32_t p = u16(s + 2 * x);
                if (is565) {
                    o[0] = (uint8_t)(((p >> 11) & 31) * 255 / 31);
                    o[1] = (uint8_t)(((p >> 5) & 63) * 255 / 63);
                } else {
                    o[0] = (uint8_t)(((p >> 10) & 31) * 255 / 31);
                    o[1] = (uint8_t)(((p >> 5) & 31) * 255 / 31);
                }
                o[2] = (uint8_t)((p & 31) * 255 / 31);
            } else if (bits == 24) {
                o[0] = s[3 * x + 2], o[1] = s[3 * x + 1], o[2] = s[3 * x];
            } else {
                uint32_t p = u32(s + 4 * x);
                o[0] = (uint8_t)(p >> r_shift), o[1] = (uint8_t)(p >> g_shift), o[2] = (uint8_t)(p >> b_shift);
            }
        }
    }
    return 0;
}
