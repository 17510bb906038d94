/* qvl preprocess --image FILE --npy OUT.npy [--model DIR] [pixel options] (docs/cli.md): the image
 * pipeline alone. Writes pixel_values [num_patches, 1536] float32 and prints the grid as one JSON
 * line. Defaults are Qwen3-VL's released preprocessor_config.json, or DIR's with --model. */
#include <stdio.h>
#include <string.h>

#include "cli/commands.h"
#include "cli/opts.h"
#include "image/image.h"
#include "io/npy.h"
#include "model/config.h"
#include "util/error.h"

int cmd_preprocess(int argc, char **argv) {
    const char *image = NULL, *npy = NULL, *model = NULL;
    long min_pixels = -1, max_pixels = -1, max_tokens = -1;
    int threads = 1;
    const cli_opt opts[] = {
        {"image", OPT_STR, &image, "FILE", "image file (JPEG, PNG, WebP, GIF, BMP)"},
        {"npy", OPT_STR, &npy, "OUT.npy", "where to write pixel_values (float32 [patches, 1536])"},
        {"model", OPT_STR, &model, "DIR", "take the pixel defaults from DIR's preprocessor_config.json"},
        {"min-pixels", OPT_LONG, &min_pixels, "N", "minimum image area after resize (default 65536)"},
        {"max-pixels", OPT_LONG, &max_pixels, "N", "maximum image area after resize (default 16777216)"},
        {"max-image-tokens", OPT_LONG, &max_tokens, "N", "cap tokens per image (max-pixels = N*1024)"},
        {"threads", OPT_INT, &threads, "N", "CPU threads for resize and patchify (default 1)"},
    };
    int rc = opts_parse(argc, argv, opts, sizeof opts / sizeof opts[0],
                        "qvl preprocess --image FILE --npy OUT.npy [--model DIR] [pixel options]",
                        "Turns an image into the Qwen3-VL pixel_values exactly as the reference processor does "
                        "(PIL decode + convert(\"RGB\"), smart_resize, antialiased bicubic, normalize, patches) "
                        "and prints {\"grid_thw\", \"resized\", \"image_tokens\", \"num_patches\"}.",
                        NULL, 0, NULL);
    if (rc == 1) return 0;
    if (rc) return 2;
    if (!image) return usage_error("preprocess", "--image FILE is required");
    if (!npy) return usage_error("preprocess", "--npy OUT.npy is required");
    qvl_image_params p = qvl_image_params_default();
    if (model) {
        qvl_config cfg;
        if (qvl_config_load(model, &cfg)) return runtime_error();
        p = qvl_config_image_params(&cfg);
    }
    p.threads = cli_threads(threads);
    if (qvl_image_params_set_pixels(&p, min_pixels, max_pixels, max_tokens))
        return usage_error("preprocess", "%s", qvl_error());
    qvl_image img;
    if (qvl_image_load(image, &img)) return runtime_error();
    qvl_pixel_values pv;
    if (qvl_image_preprocess(&img, &p, &pv)) {
        qvl_image_free(&img);
        fprintf(stderr, "qvl: %s: %s\n", image, qvl_error());
        return 1;
    }
    qvl_image_free(&img);
    int64_t shape[2] = {pv.num_patches, pv.row_len};
    if (qvl_npy_write(npy, "<f4", shape, 2, pv.data)) {
        qvl_pixel_values_free(&pv);
        return runtime_error();
    }
    printf("{\"grid_thw\": [%d, %d, %d], \"resized\": [%d, %d], \"image_tokens\": %d, \"num_patches\": %d}\n",
           pv.grid_t, pv.grid_h, pv.grid_w, pv.resized_h, pv.resized_w, pv.image_tokens, pv.num_patches);
    qvl_pixel_values_free(&pv);
    return 0;
}
