/* Test-image helper for tools/make_test_images.py: writes a YCCK-coded JPEG (Adobe marker,
 * transform 2) from raw CMYK bytes, a colour space PIL cannot write.
 * usage: make_ycck_jpeg WIDTH HEIGHT IN.cmyk OUT.jpg   (cc make_ycck_jpeg.c -ljpeg) */
#include <stdio.h>
#include <stdlib.h>

#include <jpeglib.h>

int main(int argc, char **argv) {
    if (argc != 5) return 2;
    int w = atoi(argv[1]), h = atoi(argv[2]);
    unsigned char *px = malloc((size_t)w * h * 4);
    FILE *in = fopen(argv[3], "rb"), *out = fopen(argv[4], "wb");
    if (!px || !in || !out || fread(px, 4, (size_t)w * h, in) != (size_t)w * h) return 1;
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr e;
    c.err = jpeg_std_error(&e);
    jpeg_create_compress(&c);
    jpeg_stdio_dest(&c, out);
    c.image_width = w, c.image_height = h, c.input_components = 4, c.in_color_space = JCS_CMYK;
    jpeg_set_defaults(&c);
    jpeg_set_colorspace(&c, JCS_YCCK);
    jpeg_set_quality(&c, 90, TRUE);
    jpeg_start_compress(&c, TRUE);
    for (int y = 0; y < h; y++) {
        JSAMPROW r = px + (size_t)y * w * 4;
        jpeg_write_scanlines(&c, &r, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    fclose(out);
    return 0;
}
