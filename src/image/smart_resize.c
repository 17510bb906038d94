/* smart_resize of transformers 5.x (models/qwen2_vl/image_processing_qwen2_vl.py), in the same float64
 * operations and order as the Python, so floor/ceil edge cases land the same way. */
#include <math.h>

#include "image/image.h"
#include "util/error.h"

qvl_image_params qvl_image_params_default(void) {
    qvl_image_params p = {
        .min_pixels = 65536,
        .max_pixels = 16777216,
        .patch_size = 16,
        .temporal_patch_size = 2,
        .merge_size = 2,
        .image_mean = {0.5f, 0.5f, 0.5f},
        .image_std = {0.5f, 0.5f, 0.5f},
        .threads = 1,
    };
    return p;
}

int qvl_image_params_set_pixels(qvl_image_params *p, long min_pixels, long max_pixels, long max_image_tokens) {
    if (min_pixels != -1 && min_pixels < 1) return qvl_errorf("--min-pixels: must be at least 1");
    if (max_pixels != -1 && max_pixels < 1) return qvl_errorf("--max-pixels: must be at least 1");
    if (max_image_tokens != -1 && (max_image_tokens < 1 || max_image_tokens > (1L << 40)))
        return qvl_errorf("--max-image-tokens: must be at least 1");
    if (min_pixels != -1) p->min_pixels = min_pixels;
    if (max_pixels != -1) p->max_pixels = max_pixels;
    if (p->min_pixels > p->max_pixels)
        return qvl_errorf("--min-pixels (%ld) exceeds --max-pixels (%ld)", p->min_pixels, p->max_pixels);
    if (max_image_tokens != -1) {
        long cap = max_image_tokens * 1024;
        if (p->max_pixels > cap) p->max_pixels = cap;
        if (p->min_pixels > p->max_pixels) p->min_pixels = p->max_pixels;
    }
    return 0;
}

int qvl_smart_resize(int height, int width, int factor, long min_pixels, long max_pixels,
                     int *out_h, int *out_w) {
    if (height <= 0 || width <= 0 || factor <= 0)
        return qvl_errorf("smart_resize: bad size %dx%d (factor %d)", width, height, factor);
    double hi = height > width ? height : width, lo = height > width ? width : height;
    if (hi / lo > 200)
        return qvl_errorf("absolute aspect ratio must be smaller than 200, got %.17g", hi / lo);
    /* Python round(): half to even, which rint() does in the default rounding mode. */
    long h = (long)rint((double)height / factor) * factor;
    long w = (long)rint((double)width / factor) * factor;
    double area = (double)height * (double)width; /* exact: < 2^53 */
    if ((double)h * (double)w > (double)max_pixels) {
        double beta = sqrt(area / (double)max_pixels);
        h = (long)floor((double)height / beta / factor) * factor;
        w = (long)floor((double)width / beta / factor) * factor;
        if (h < factor) h = factor;
        if (w < factor) w = factor;
    } else if ((double)h * (double)w < (double)min_pixels) {
        double beta = sqrt((double)min_pixels / area);
        h = (long)ceil((double)height * beta / factor) * factor;
        w = (long)ceil((double)width * beta / factor) * factor;
    }
    if (h <= 0 || w <= 0 || h > 1000000 || w > 1000000)
        return qvl_errorf("smart_resize: %dx%d resizes to an unusable %ldx%ld", width, height, w, h);
    *out_h = (int)h;
    *out_w = (int)w;
    return 0;
}
