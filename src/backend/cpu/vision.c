/* Qwen3-VL vision tower (Qwen3VLVisionModel.forward), spec section 4:
 * patch embed -> + interpolated learned position table -> 2D rotary -> blocks (with deepstack taps)
 * -> patch merger. One image (grid_t frames of grid_h x grid_w patches) per call. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/forward.h"
#include "backend/cpu/ops.h"
#include "io/npy.h"
#include "util/error.h"

static void dump2(const char *dump_dir, const char *name, const float *x, int rows, int cols) {
    int64_t shape[2] = {rows, cols};
    qvl_dump_f32(dump_dir, name, x, shape, 2);
}

/* The sample points linspace(0, end, n) of the position-table interpolation: i * end / (n - 1)
 * rounded once to float32. This reproduces the reference (transformers 5.17 + torch 2.11 on the
 * CPU) bit for bit on the fixture grids; the symmetric float32 formula of older torch.linspace
 * (spec 8.5: the second half counted down from the end) differs from it in the last bit. */
static void linspace_f32(float *out, int n, float end) {
    for (int i = 0; i < n; i++) out[i] = n == 1 ? 0.0f : (float)((double)end * i / (n - 1));
}

/* Row and column of patch q of a frame (grid_w patches wide) in merge-block order: the M x M blocks
 * row-major, the patches row-major inside each block (spec 2.1 step 6). */
static void merge_order_rc(int q, int grid_w, int M, int *row, int *col) {
    int block = q / (M * M), in_block = q % (M * M), blocks_per_row = grid_w / M;
    *row = block / blocks_per_row * M + in_block / M;
    *col = block % blocks_per_row * M + in_block % M;
}

/* fast_pos_embed_interpolate: bilinear sampling (align-corners) of the G x G learned table at a
 * grid_h x grid_w lattice, written in merge-block patch order and repeated for each frame. */
static void pos_embed_interpolate(float *out, const float *table, int G, int Dv, int grid_t, int grid_h,
                                  int grid_w, int M, float *hs, float *ws) {
    linspace_f32(hs, grid_h, (float)(G - 1));
    linspace_f32(ws, grid_w, (float)(G - 1));
    const int frame = grid_h * grid_w;
    for (int p = 0; p < grid_t * frame; p++) {
        int r, c;
        merge_order_rc(p % frame, grid_w, M, &r, &c);
        int h0 = (int)hs[r], w0 = (int)ws[c];
        int h1 = h0 + 1 < G - 1 ? h0 + 1 : G - 1, w1 = w0 + 1 < G - 1 ? w0 + 1 : G - 1;
        float dh = hs[r] - (float)h0, dw = ws[c] - (float)w0;
        float w00 = (1 - dh) * (1 - dw), w01 = (1 - dh) * dw, w10 = dh * (1 - dw), w11 = dh * dw;
        const float *e00 = table + (size_t)(h0 * G + w0) * Dv, *e01 = table + (size_t)(h0 * G + w1) * Dv;
        const float *e10 = table + (size_t)(h1 * G + w0) * Dv, *e11 = table + (size_t)(h1 * G + w1) * Dv;
        float *o = out + (size_t)p * Dv;
        for (int d = 0; d < Dv; d++) o[d] = ((e00[d] * w00 + e01[d] * w01) + e10[d] * w10) + e11[d] * w11;
    }
}

/* rot_pos_emb: per patch, the first hd/4 angles use the patch row, the next hd/4 the column;
 * emb = concat(angles, angles) over hd. */
static void vision_rotary(float *cosb, float *sinb, float *inv_freq, int hd, int grid_t, int grid_h, int grid_w,
                          int M) {
    int rdim = hd / 2, nf = rdim / 2;
    for (int j = 0; j < nf; j++) inv_freq[j] = 1.0f / powf(10000.0f, (float)(2 * j) / (float)rdim);
    const int frame = grid_h * grid_w;
    for (int p = 0; p < grid_t * frame; p++) {
        int r, c;
        merge_order_rc(p % frame, grid_w, M, &r, &c);
        float row = (float)r, col = (float)c;
        float *cs = cosb + (size_t)p * hd, *sn = sinb + (size_t)p * hd;
        for (int j = 0; j < nf; j++) {
            float a = row * inv_freq[j], b = col * inv_freq[j];
            cs[j] = cs[j + rdim] = cosf(a);
            sn[j] = sn[j + rdim] = sinf(a);
            cs[nf + j] = cs[nf + j + rdim] = cosf(b);
            sn[nf + j] = sn[nf + j + rdim] = sinf(b);
        }
    }
}

/* Qwen3VLVisionPatchMerger. postshuffle = 0: LayerNorm over Dv per patch, then view 4 patches as
 * one row (main merger); postshuffle = 1: view first, LayerNorm over 4Dv (deepstack mergers).
 * Then fc1 -> exact GELU -> fc2. */
static void patch_merger(qvl_pool *pool, const qvl_merger_w *w, int postshuffle, const float *x, int n_merged,
                         int Dv4, int Dv, int D, float *tmp, float *tmp2, float *out) {
    if (postshuffle)
        qvl_cpu_layernorm(pool, tmp, x, w->norm_w, w->norm_b, n_merged, Dv4, 1e-6f);
    else
        qvl_cpu_layernorm(pool, tmp, x, w->norm_w, w->norm_b, n_merged * (Dv4 / Dv), Dv, 1e-6f);
    qvl_cpu_matmul(pool, tmp2, tmp, w->fc1_w, w->fc1_b, n_merged, Dv4, Dv4);
    qvl_cpu_gelu_erf(pool, tmp2, (size_t)n_merged * Dv4);
    qvl_cpu_matmul(pool, out, tmp2, w->fc2_w, w->fc2_b, n_merged, Dv4, D);
}

int qvl_cpu_vision_forward_many(qvl_pool *pool, const qvl_config *cfg, const qvl_vision_w *w,
                                const qvl_cpu_vision_image *img, int n_img, const char *dump_dir) {
    const qvl_vision_config *vc = &cfg->vision;
    const int Dv = vc->hidden_size, H = vc->num_heads, hd = Dv / H, Iv = vc->intermediate_size;
    const int D = vc->out_hidden_size, M = vc->spatial_merge_size, unit = M * M, Dv4 = Dv * unit;
    const int row_len = vc->in_channels * vc->temporal_patch_size * vc->patch_size * vc->patch_size;
    const int G = (int)lround(sqrt((double)vc->num_position_embeddings));
    const int threads = qvl_pool_threads(pool);
    if (n_img < 1) return 0;
    if (n_img > 1) dump_dir = NULL;   /* dumps name the stages of one image */

    /* The images' patches are stacked: image i owns rows row0[i] .. row0[i] + its patches. Every
     * stage is per row except attention, which stays within each frame of each image. */
    int n = 0, n_frames = 0, max_frame = 0, max_side = 0;
    for (int i = 0; i < n_img; i++) {
        int frame = img[i].grid_h * img[i].grid_w;
        n += img[i].grid_t * frame;
        n_frames += img[i].grid_t;
        if (frame > max_frame) max_frame = frame;
        if (img[i].grid_h + img[i].grid_w > max_side) max_side = img[i].grid_h + img[i].grid_w;
    }
    const int n_merged = n / unit;

    size_t sizes[] = {(size_t)n * Dv, (size_t)n * Dv, (size_t)n * 3 * Dv, (size_t)n * Dv, (size_t)n * Iv,
                      (size_t)n * hd, (size_t)n * hd, (size_t)n_merged * Dv4, (size_t)n_merged * Dv4,
                      qvl_cpu_attention_scratch(threads, max_frame), (size_t)max_side, (size_t)hd / 4,
                      n_img > 1 ? (size_t)n_merged * D : 0};
    enum { X, Y, QKV, ATT, HID, COS, SIN, MT1, MT2, SCORES, LIN, INV_FREQ, OUT, N_BUF };
    size_t total = 0;
    for (int i = 0; i < N_BUF; i++) total += sizes[i];
    float *arena = malloc(total * sizeof(float));
    qvl_attn_seg *segs = malloc((size_t)n_frames * sizeof *segs);
    if (!arena || !segs) {
        free(arena);
        free(segs);
        return qvl_errorf("vision: out of memory for %d patches", n);
    }
    float *buf[N_BUF];
    size_t off = 0;
    for (int i = 0; i < N_BUF; off += sizes[i], i++) buf[i] = arena + off;
    float *x = buf[X], *y = buf[Y], *qkv = buf[QKV], *att = buf[ATT], *hid = buf[HID];

    /* Patch embedding (Conv3d with kernel = stride = one patch is a matmul) + position table +
     * 2D rotary angles, per image. */
    for (int i = 0, r0 = 0, f = 0; i < n_img; i++) {
        const qvl_cpu_vision_image *im = &img[i];
        int frame = im->grid_h * im->grid_w, np = im->grid_t * frame;
        qvl_cpu_matmul(pool, x + (size_t)r0 * Dv, im->pixels, w->patch_w, w->patch_b, np, row_len, Dv);
        pos_embed_interpolate(y + (size_t)r0 * Dv, w->pos_embed, G, Dv, im->grid_t, im->grid_h, im->grid_w, M, buf[LIN],
                              buf[LIN] + im->grid_h);
        vision_rotary(buf[COS] + (size_t)r0 * hd, buf[SIN] + (size_t)r0 * hd, buf[INV_FREQ], hd, im->grid_t, im->grid_h,
                      im->grid_w, M);
        for (int t = 0; t < im->grid_t; t++, f++) {
            int row0 = r0 + t * frame;
            segs[f] = (qvl_attn_seg){.row0 = row0, .n_q = frame, .n_kv = frame, .causal_pos0 = -1,
                                     .k = qkv + (size_t)row0 * 3 * Dv + Dv, .v = qkv + (size_t)row0 * 3 * Dv + 2 * Dv};
        }
        r0 += np;
    }
    dump2(dump_dir, "vision.patch_embed", x, n, Dv);
    dump2(dump_dir, "vision.pos_embed", y, n, Dv);
    qvl_cpu_add(x, y, (size_t)n * Dv);
    dump2(dump_dir, "vision.embed", x, n, Dv);

    for (int i = 0; i < vc->depth; i++) {
        const qvl_vision_block_w *b = &w->blocks[i];
        /* x = x + proj(attention(rope(qkv(norm1(x))))), attention within each frame of each image */
        qvl_cpu_layernorm(pool, y, x, b->norm1_w, b->norm1_b, n, Dv, 1e-6f);
        qvl_cpu_matmul(pool, qkv, y, b->qkv_w, b->qkv_b, n, Dv, 3 * Dv);
        for (int p = 0; p < n; p++)
            for (int h = 0; h < H; h++) {
                float *row = qkv + (size_t)p * 3 * Dv + (size_t)h * hd;
                qvl_cpu_rope_half(row, buf[COS] + (size_t)p * hd, buf[SIN] + (size_t)p * hd, hd);
                qvl_cpu_rope_half(row + Dv, buf[COS] + (size_t)p * hd, buf[SIN] + (size_t)p * hd, hd);
            }
        qvl_cpu_attention_segs(pool, att, Dv, qkv, 3 * Dv, 3 * Dv, segs, n_frames, NULL, H, H, hd, buf[SCORES],
                               max_frame);
        qvl_cpu_matmul(pool, y, att, b->proj_w, b->proj_b, n, Dv, Dv);
        qvl_cpu_add(x, y, (size_t)n * Dv);
        /* x = x + fc2(gelu_tanh(fc1(norm2(x)))) */
        qvl_cpu_layernorm(pool, y, x, b->norm2_w, b->norm2_b, n, Dv, 1e-6f);
        qvl_cpu_matmul(pool, hid, y, b->fc1_w, b->fc1_b, n, Dv, Iv);
        qvl_cpu_gelu_tanh(pool, hid, (size_t)n * Iv);
        qvl_cpu_matmul(pool, y, hid, b->fc2_w, b->fc2_b, n, Iv, Dv);
        qvl_cpu_add(x, y, (size_t)n * Dv);
        char name[64];
        snprintf(name, sizeof name, "vision.block%d", i);
        dump2(dump_dir, name, x, n, Dv);
        /* DeepStack tap: the output of this block, merged by its own post-shuffle merger. */
        for (int j = 0; j < vc->n_deepstack; j++)
            if (vc->deepstack_indexes[j] == i) {
                float *dst = n_img > 1 ? buf[OUT] : img[0].deepstack[j];
                patch_merger(pool, &w->deepstack[j], 1, x, n_merged, Dv4, Dv, D, buf[MT1], buf[MT2], dst);
                snprintf(name, sizeof name, "vision.deepstack%d", j);
                dump2(dump_dir, name, dst, n_merged, D);
                for (int k = 0, m0 = 0; n_img > 1 && k < n_img; k++) {
                    int nm = img[k].grid_t * img[k].grid_h * img[k].grid_w / unit;
                    memcpy(img[k].deepstack[j], dst + (size_t)m0 * D, (size_t)nm * D * sizeof(float));
                    m0 += nm;
                }
            }
    }
    float *dst = n_img > 1 ? buf[OUT] : img[0].embeds;
    patch_merger(pool, &w->merger, 0, x, n_merged, Dv4, Dv, D, buf[MT1], buf[MT2], dst);
    dump2(dump_dir, "vision.merger", dst, n_merged, D);
    for (int k = 0, m0 = 0; n_img > 1 && k < n_img; k++) {
        int nm = img[k].grid_t * img[k].grid_h * img[k].grid_w / unit;
        memcpy(img[k].embeds, dst + (size_t)m0 * D, (size_t)nm * D * sizeof(float));
        m0 += nm;
    }
    free(segs);
    free(arena);
    return 0;
}

int qvl_cpu_vision_forward(qvl_pool *pool, const qvl_config *cfg, const qvl_vision_w *w, const float *pixels,
                           int grid_t, int grid_h, int grid_w, float *embeds, float *const *deepstack,
                           const char *dump_dir) {
    qvl_cpu_vision_image im = {pixels, grid_t, grid_h, grid_w, embeds, deepstack};
    return qvl_cpu_vision_forward_many(pool, cfg, w, &im, 1, dump_dir);
}
