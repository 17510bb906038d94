/* WebP via libwebp. PIL decodes with libwebp's default settings (fancy upsampling) to RGBA or RGB;
 * convert("RGB") drops alpha, so decoding straight to RGB gives the same bytes. Animated files
 * are not expected here; the first frame would need WebPAnimDecoder. */
#include <stdlib.h>
#include <string.h>

#include <webp/decode.h>

#include "image/decode_internal.h"
#include "util/error.h"

int qvl_decode_webp(const uint8_t *data, size_t n, const char *name, qvl_image *img) {
    WebPBitstreamFeatures f;
    VP8StatusCode st = WebPGetFeatures(data, n, &f);
    if (st == VP8_STATUS_NOT_ENOUGH_DATA) return qvl_errorf("%s: truncated WebP file", name);
    if (st != VP8_STATUS_OK) return qvl_errorf("%s: corrupt WebP file (status %d)", name, (int)st);
    if (f.has_animation) return qvl_errorf("%s: animated WebP is not supported", name);
    if (qvl_image_alloc(img, f.width, f.height, name)) return -1;
    size_t stride = (size_t)f.width * 3;
    if (!WebPDecodeRGBInto(data, n, img->rgb, stride * f.height, (int)stride))
        return qvl_errorf("%s: corrupt or truncated WebP file", name);
    return 0;
}
