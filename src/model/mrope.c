/* MRoPE position ids for a prompt (get_rope_index, spec 5.4): text tokens advance one position
 * on all three axes; an image's tokens share T = start (one frame) and spread H/W over its merged
 * grid, and the text after it resumes one past the largest position so far (start + max(merged
 * height, merged width) for one frame). */
#include "model/model.h"
#include "util/error.h"

int qvl_mrope_positions(const int32_t *ids, int n, int image_token_id, const int (*grids)[3], int n_images,
                        int merge_size, int32_t *pos, int *rope_delta) {
    int32_t *T = pos, *Hr = pos + n, *Wr = pos + 2 * n;
    int next = 0, img = 0, max_pos = -1;
    for (int i = 0; i < n;) {
        if (ids[i] != image_token_id) {
            T[i] = Hr[i] = Wr[i] = next;
            max_pos = next > max_pos ? next : max_pos;
            next++;
            i++;
            continue;
        }
        if (img >= n_images)
            return qvl_errorf("prompt: more <|image_pad|> tokens than the %d image(s) provide", n_images);
        int gt = grids[img][0], lh = grids[img][1] / merge_size, lw = grids[img][2] / merge_size;
        int cnt = gt * lh * lw;
        for (int k = 0; k < cnt; k++)
            if (i + k >= n || ids[i + k] != image_token_id)
                return qvl_errorf("prompt: image %d needs %d consecutive <|image_pad|> tokens, found %d", img + 1, cnt,
                                  k);
        for (int k = 0; k < cnt; k++) {
            T[i + k] = next + k / (lh * lw);
            Hr[i + k] = next + (k / lw) % lh;
            Wr[i + k] = next + k % lw;
            int m = T[i + k] > Hr[i + k] ? T[i + k] : Hr[i + k];
            m = Wr[i + k] > m ? Wr[i + k] : m;
            max_pos = m > max_pos ? m : max_pos;
        }
        next = max_pos + 1;   /* the reference's st_idx: max over all positions so far, + 1 */
        i += cnt;
        img++;
    }
    if (img != n_images)
        return qvl_errorf("prompt: %d image(s) given but <|image_pad|> tokens for only %d", n_images, img);
    *rope_delta = n > 0 ? max_pos + 1 - n : 0;
    return 0;
}
