/* GIF, first frame, via giflib, as PIL shows it: a canvas of the logical screen size (filled with
 * the transparent index if the first frame declares one, else index 0), the first frame's
 * indices drawn at its offset, then mapped through its local or the global palette.
 * Transparency is dropped (convert("RGB")). */
#include <stdlib.h>
#include <string.h>

#include <gif_lib.h>

#include "image/decode_internal.h"
#include "util/error.h"

typedef struct {
    const uint8_t *data;
    size_t n, pos;
} gif_source;

static int read_bytes(GifFileType *g, GifByteType *out, int len) {
    gif_source *s = g->UserData;
    size_t k = (size_t)len <= s->n - s->pos ? (size_t)len : s->n - s->pos;
    memcpy(out, s->data + s->pos, k);
    s->pos += k;
    return (int)k;
}

static int fail(GifFileType *g, uint8_t *idx, const char *name, const char *what) {
    int e = g ? g->Error : 0;
    if (g) DGifCloseFile(g, NULL);
    free(idx);
    return qvl_errorf("%s: %s (%s)", name, what, GifErrorString(e) ? GifErrorString(e) : "error");
}

int qvl_decode_gif(const uint8_t *data, size_t n, const char *name, qvl_image *img) {
    gif_source src = {data, n, 0};
    int err = 0;
    GifFileType *g = DGifOpen(&src, read_bytes, &err);
    if (!g) return qvl_errorf("%s: corrupt GIF header (%s)", name, GifErrorString(err));
    int W = g->SWidth, H = g->SHeight;
    if (qvl_image_check_size(name, W, H)) {
        DGifCloseFile(g, NULL);
        return -1;
    }
    uint8_t *idx = NULL;
    int transparent = -1;
    for (;;) {
        GifRecordType rt;
        if (DGifGetRecordType(g, &rt) == GIF_ERROR) return fail(g, idx, name, "corrupt or truncated GIF");
        if (rt == TERMINATE_RECORD_TYPE) return fail(g, idx, name, "GIF has no image");
        if (rt == EXTENSION_RECORD_TYPE) {
            int code;
            GifByteType *ext;
            if (DGifGetExtension(g, &code, &ext) == GIF_ERROR) return fail(g, idx, name, "corrupt GIF extension");
            int first = 1;
            while (ext) {
                if (first && code == GRAPHICS_EXT_FUNC_CODE && ext[0] >= 4)
                    transparent = (ext[1] & 1) ? ext[4] : -1;
                first = 0;
                if (DGifGetExtensionNext(g, &ext) == GIF_ERROR) return fail(g, idx, name, "corrupt GIF extension");
            }
            continue;
        }
        if (rt != IMAGE_DESC_RECORD_TYPE) continue;
        if (DGifGetImageDesc(g) == GIF_ERROR) return fail(g, idx, name, "corrupt GIF image descriptor");
        break;
    }
    GifImageDesc *d = &g->Image;
    ColorMapObject *cmap = d->ColorMap ? d->ColorMap : g->SColorMap;
    if (!cmap) return fail(g, idx, name, "GIF has no colour table");
    int fw = d->Width, fh = d->Height;
    if (fw <= 0 || fh <= 0 || (long)fw * fh > QVL_IMAGE_MAX_PIXELS)
        return fail(g, idx, name, "bad GIF frame size");
    idx = malloc((size_t)fw * fh);
    if (!idx) return fail(g, idx, name, "out of memory");
    if (d->Interlace) {
        static const int start[4] = {0, 4, 2, 1}, step[4] = {8, 8, 4, 2};
        for (int p = 0; p < 4; p++)
            for (int y = start[p]; y < fh; y += step[p])
                if (DGifGetLine(g, idx + (size_t)y * fw, fw) == GIF_ERROR)
                    return fail(g, idx, name, "corrupt or truncated GIF");
    } else {
        for (int y = 0; y < fh; y++)
            if (DGifGetLine(g, idx + (size_t)y * fw, fw) == GIF_ERROR)
                return fail(g, idx, name, "corrupt or truncated GIF");
    }
    /* Palette lookup: entries past the table are black. */
    uint8_t pal[256][3];
    memset(pal, 0, sizeof pal);
    for (int i = 0; i < cmap->ColorCount && i < 256; i++) {
        pal[i][0] = cmap->Colors[i].Red;
        pal[i][1] = cmap->Colors[i].Green;
        pal[i][2] = cmap->Colors[i].Blue;
    }
    if (qvl_image_alloc(img, W, H, name)) {
        DGifCloseFile(g, NULL);
        free(idx);
        return -1;
    }
    int bg = transparent >= 0 ? transparent : 0;
    for (int y = 0; y < H; y++) {
        uint8_t *o = img->rgb + (size_t)y * W * 3;
        int fy = y - d->Top;
        for (int x = 0; x < W; x++, o += 3) {
            int fx = x - d->Left;
            int v = (fy >= 0 && fy < fh && fx >= 0 && fx < fw) ? idx[(size_t)fy * fw + fx] : bg;
            memcpy(o, pal[v], 3);
        }
    }
    DGifCloseFile(g, NULL);
    free(idx);
    return 0;
}
