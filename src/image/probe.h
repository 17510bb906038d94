/* An image's size from its header alone (no pixel decode): the width and height that
 * qvl_image_decode would produce for the same bytes, for planning memory and prompt lengths before
 * anything runs. Formats and refusals follow decode.c: JPEG (libjpeg's own header reader; no EXIF
 * rotation, as PIL's open + convert does none), PNG (IHDR via libpng), WebP (WebPGetFeatures), GIF
 * (the logical screen), BMP (the same header checks as decode_bmp.c). A file whose header is fine
 * may still fail to decode later (corrupt pixel data): that sample then fails at run time. */
#ifndef QVL_IMAGE_PROBE_H
#define QVL_IMAGE_PROBE_H
#include <stddef.h>
#include <stdint.h>

/* Encoded bytes in memory; name is used in error messages. Returns 0, or -1 + "<name>: <reason>". */
int qvl_image_probe(const uint8_t *data, size_t n, const char *name, int *width, int *height);
/* A file: reads a prefix (64 KiB), and the whole file only when the header runs past it (JPEG with
 * large EXIF/ICC segments, PNG with big chunks before IDAT). */
int qvl_image_probe_file(const char *path, int *width, int *height);

#endif
