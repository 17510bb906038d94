/* MRoPE position ids (get_rope_index, spec 5.4) on hand-checked prompts. */
#include <stdlib.h>

#include "model/model.h"
#include "test.h"
#include "util/error.h"

enum { PAD = 151655, VS = 151652, VE = 151653 };

TEST(mrope_spec_example_48x64_image) {
    /* 4 text tokens, a 48x64-patch image (24x32 = 768 tokens), <|vision_end|>, 2 more text tokens. */
    int n = 4 + 768 + 3;
    int32_t *ids = malloc(n * sizeof *ids), *pos = malloc(3 * n * sizeof *pos);
    for (int i = 0; i < n; i++) ids[i] = i >= 4 && i < 772 ? PAD : 100 + i;
    ids[3] = VS;
    ids[772] = VE;
    int grids[1][3] = {{1, 48, 64}}, delta = 99;
    CHECK_INT(qvl_mrope_positions(ids, n, PAD, (const int(*)[3])grids, 1, 2, pos, &delta), 0);
    const int32_t *T = pos, *H = pos + n, *W = pos + 2 * n;
    CHECK_INT(T[3], 3);
    CHECK_INT(H[3], 3);
    CHECK_INT(T[4], 4);   /* first image token: (4, 4, 4) */
    CHECK_INT(H[4], 4);
    CHECK_INT(W[4], 4);
    CHECK_INT(T[4 + 33], 4); /* row 1, col 1 */
    CHECK_INT(H[4 + 33], 5);
    CHECK_INT(W[4 + 33], 5);
    CHECK_INT(T[771], 4);  /* last: row 23, col 31 */
    CHECK_INT(H[771], 27);
    CHECK_INT(W[771], 35);
    CHECK_INT(T[772], 36); /* <|vision_end|> = 4 + max(24, 32) */
    CHECK_INT(H[772], 36);
    CHECK_INT(W[774], 38);
    CHECK_INT(delta, 38 + 1 - n);
    free(ids);
    free(pos);
}

TEST(mrope_text_only_is_arange) {
    int32_t ids[5] = {1, 2, 3, 4, 5}, pos[15];
    int delta = 7;
    CHECK_INT(qvl_mrope_positions(ids, 5, PAD, NULL, 0, 2, pos, &delta), 0);
    for (int i = 0; i < 5; i++) {
        CHECK_INT(pos[i], i);
        CHECK_INT(pos[5 + i], i);
        CHECK_INT(pos[10 + i], i);
    }
    CHECK_INT(delta, 0);
}

TEST(mrope_tall_image_and_two_images) {
    /* text, image 8x4 patches (4x2 tokens), text, image 4x4 (2x2), text */
    int32_t ids[1 + 8 + 1 + 4 + 1], pos[3 * 15];
    int n = 15, k = 0;
    ids[k++] = VS;
    for (int i = 0; i < 8; i++) ids[k++] = PAD;
    ids[k++] = VE;
    for (int i = 0; i < 4; i++) ids[k++] = PAD;
    ids[k++] = VE;
    int grids[2][3] = {{1, 8, 4}, {1, 4, 4}}, delta;
    CHECK_INT(qvl_mrope_positions(ids, n, PAD, (const int(*)[3])grids, 2, 2, pos, &delta), 0);
    /* image 1 at start 1: 4 rows x 2 cols; last token row 3 col 1 */
    CHECK_INT(pos[8], 1);
    CHECK_INT(pos[n + 8], 4);
    CHECK_INT(pos[2 * n + 8], 2);
    CHECK_INT(pos[9], 5);   /* text resumes at 1 + max(4, 2) */
    CHECK_INT(pos[10], 6);  /* image 2 starts at 6 */
    CHECK_INT(pos[n + 13], 7);
    CHECK_INT(pos[2 * n + 13], 7);
    CHECK_INT(pos[14], 8);
    CHECK_INT(delta, 8 + 1 - n);
}

TEST(mrope_rejects_mismatched_pads) {
    int32_t ids[6] = {VS, PAD, PAD, PAD, VE, 5}, pos[18];
    int grids[1][3] = {{1, 4, 4}}, delta;
    CHECK_INT(qvl_mrope_positions(ids, 6, PAD, (const int(*)[3])grids, 1, 2, pos, &delta), -1);
    CHECK_CONTAINS(qvl_error(), "needs 4 consecutive <|image_pad|> tokens");
    CHECK_INT(qvl_mrope_positions(ids, 6, PAD, NULL, 0, 2, pos, &delta), -1);
    CHECK_CONTAINS(qvl_error(), "more <|image_pad|> tokens");
    int32_t text[3] = {1, 2, 3};
    CHECK_INT(qvl_mrope_positions(text, 3, PAD, (const int(*)[3])grids, 1, 2, pos, &delta), -1);
    CHECK_CONTAINS(qvl_error(), "1 image(s) given");
}
