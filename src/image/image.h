/* Image files to Qwen3-VL pixel_values, as the reference (PIL open + convert("RGB"), then the
 * transformers Qwen2-VL image processor) produces them. */
#ifndef QVL_IMAGE_H
#define QVL_IMAGE_H
#include <stddef.h>
#include <stdint.h>

typedef struct {
    int width, height;
    uint8_t *rgb;          /* height*width*3, row-major, malloc'd */
} qvl_image;

/* Decodes a file (JPEG, PNG, WebP, BMP, GIF first frame) to RGB as PIL's convert("RGB") does. */
int qvl_image_load(const char *path, qvl_image *img);
/* Same from memory; name is used in error messages. */
int qvl_image_decode(const uint8_t *data, size_t n, const char *name, qvl_image *img);
void qvl_image_free(qvl_image *img);

typedef struct {
    long min_pixels, max_pixels;
    int patch_size, temporal_patch_size, merge_size;
    float image_mean[3], image_std[3];
    int threads;           /* CPU threads for resize + patchify (<= 1: the calling thread only) */
    /* BF16 output (the CUDA path's input type; default 0): pixel_values written as bfloat16 bits
     * (round to nearest even of the F32 value: bit for bit bf16(F32 output)), with no F32
     * intermediate, into the caller's bf16_buf (e.g. pinned host memory) of bf16_buf_bytes, rows
     * as in .data; qvl_pixel_values.data stays NULL (the grid fields are set as usual). A buffer
     * too small for the image is an error. */
    int out_bf16;
    void *bf16_buf;
    size_t bf16_buf_bytes;
} qvl_image_params;

/* Qwen3-VL defaults (65536..16777216 pixels, patch 16, temporal 2, merge 2, mean=std=0.5, 1 thread). */
qvl_image_params qvl_image_params_default(void);

/* Applies the CLI pixel options (docs/cli.md); -1 leaves a value as it is. max_image_tokens lowers
 * max_pixels to N*1024 (one token = 32x32 pixels) and, if needed, min_pixels to the new max_pixels
 * so that the cap holds for small images too. Returns 0, or -1 + error for a value < 1 or
 * min_pixels > max_pixels. */
int qvl_image_params_set_pixels(qvl_image_params *p, long min_pixels, long max_pixels, long max_image_tokens);

/* The reference smart_resize (factor = patch*merge). Returns 0, or -1 + error (aspect > 200). */
int qvl_smart_resize(int height, int width, int factor, long min_pixels, long max_pixels,
                     int *out_h, int *out_w);

typedef struct {
    float *data;           /* [num_patches, row_len] float32, malloc'd */
    int num_patches, row_len;
    int grid_t, grid_h, grid_w;
    int resized_h, resized_w;
    int image_tokens;      /* num_patches / merge^2 */
} qvl_pixel_values;

/* Resize (bicubic, antialiased, as the reference), normalize, and lay out patches. */
int qvl_image_preprocess(const qvl_image *img, const qvl_image_params *p, qvl_pixel_values *out);
void qvl_pixel_values_free(qvl_pixel_values *pv);

/* The resize step alone: RGB (in_h x in_w) to RGB (out_h x out_w) with torch's antialiased uint8
 * bicubic (a port of Pillow-SIMD: int16 weights, horizontal then vertical pass, uint8 in between;
 * a pass whose size does not change is skipped). out must hold out_h*out_w*3 bytes. */
int qvl_resize_bicubic(const uint8_t *in, int in_h, int in_w, uint8_t *out, int out_h, int out_w,
                       int threads);

/* pixel_values for an RGB image that already has the target size (multiple of patch*merge). */
int qvl_image_patchify(const uint8_t *rgb, int h, int w, const qvl_image_params *p, qvl_pixel_values *out);

#endif
