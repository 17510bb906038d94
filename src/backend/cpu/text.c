/* Qwen3-VL text decoder (Qwen3VLTextModel.forward), spec section 5: embeddings with image rows
 * scattered in -> layers (RMSNorm, q/k per-head RMSNorm, interleaved MRoPE, GQA causal attention
 * over the KV cache, SwiGLU; DeepStack features added after the first layers) -> final norm ->
 * lm_head logits of the last token. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/forward.h"
#include "backend/cpu/kv_fp8.h"
#include "backend/cpu/ops.h"
#include "io/npy.h"
#include "util/error.h"

int qvl_cpu_text_state_init(qvl_cpu_text_state *s, const qvl_config *cfg, int max_len, int chunk, int threads) {
    const qvl_text_config *tc = &cfg->text;
    const int D = tc->hidden_size, qdim = tc->num_heads * tc->head_dim, hd = tc->head_dim;
    memset(s, 0, sizeof *s);
    s->max_len = max_len;
    s->chunk = chunk;
    s->kv_dim = tc->num_kv_heads * hd;
    size_t cache = (size_t)tc->num_layers * max_len * s->kv_dim;
    size_t sizes[] = {cache, cache, (size_t)chunk * D, (size_t)chunk * D, (size_t)chunk * qdim, (size_t)chunk * qdim,
                      (size_t)chunk * tc->intermediate_size, (size_t)chunk * tc->intermediate_size,
                      (size_t)chunk * hd, (size_t)chunk * hd, (size_t)hd / 2, qvl_cpu_attention_scratch(threads, max_len)};
    float **dst[] = {&s->k_cache, &s->v_cache, &s->x, &s->y, &s->q, &s->att, &s->gate, &s->up,
                     &s->cos, &s->sin, &s->inv_freq, &s->scores};
    size_t total = 0;
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) total += sizes[i];
    s->arena = calloc(total, sizeof(float));
    if (!s->arena)
        return qvl_errorf("context of %d tokens: out of memory (%.1f MiB for the KV cache and activations)", max_len,
                          total * 4.0 / (1 << 20));
    size_t off = 0;
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        *dst[i] = s->arena + off;
        off += sizes[i];
    }
    /* RoPE inverse frequencies as the reference computes them in float32. */
    for (int i = 0; i < hd / 2; i++)
        s->inv_freq[i] = 1.0f / powf((float)tc->rope_theta, (float)(2 * i) / (float)hd);
    return 0;
}

void qvl_cpu_text_state_free(qvl_cpu_text_state *s) {
    free(s->arena);
    memset(s, 0, sizeof *s);
}

/* Which position row (0 = T, 1 = H, 2 = W) drives rotary frequency f. Interleaved MRoPE
 * (apply_interleaved_mrope): H takes f = 1, 4, ... below 3*section[1], W takes f = 2, 5, ... below
 * 3*section[2], T the rest. Chunked (Qwen2-VL style): consecutive sections T | H | W. */
static int mrope_axis(const qvl_text_config *tc, int f) {
    const int *sec = tc->mrope_section;
    if (tc->mrope_interleaved) {
        if (f % 3 == 1 && f < 3 * sec[1]) return 1;
        if (f % 3 == 2 && f < 3 * sec[2]) return 2;
        return 0;
    }
    return f < sec[0] ? 0 : f < sec[0] + sec[1] ? 1 : 2;
}

/* Row r of the images' concatenated vision outputs: the merger output (layer < 0) or DeepStack
 * feature `layer`. */
static const float *image_row(const qvl_vision_out *images, int n_images, int r, int layer, int D) {
    for (int i = 0; i < n_images; i++) {
        if (r < images[i].n_tokens) {
            const float *base = layer < 0 ? images[i].embeds : images[i].deepstack[layer];
            return base + (size_t)r * D;
        }
        r -= images[i].n_tokens;
    }
    return NULL; /* unreachable: the caller checked the counts */
}

static void dump2(const char *dir, const char *base, const char *suffix, const float *x, int rows, int cols) {
    if (!suffix || !dir) return;
    char name[96];
    snprintf(name, sizeof name, "%s%s", base, suffix);
    int64_t shape[2] = {rows, cols};
    qvl_dump_f32(dir, name, x, shape, 2);
}

void qvl_cpu_text_forward(qvl_pool *pool, const qvl_config *cfg, const qvl_text_w *w, qvl_cpu_text_state *s,
                          const int32_t *ids, int n, int p0, const int32_t *pos, int pos_stride,
                          const int32_t *vis_row, const qvl_vision_out *images, int n_images, float *logits,
                          const char *dump, const char *dump_dir) {
    const qvl_text_config *tc = &cfg->text;
    const int D = tc->hidden_size, Hq = tc->num_heads, Hkv = tc->num_kv_heads, hd = tc->head_dim;
    const int qdim = Hq * hd, kv = s->kv_dim, I = tc->intermediate_size, half = hd / 2;
    const float eps = (float)tc->rms_norm_eps;
    const int n_ds = n_images > 0 && vis_row ? images[0].n_deepstack : 0;
    float *x = s->x, *y = s->y, *q = s->q, *att = s->att;
    char name[64];

    /* Token embeddings; <|image_pad|> positions take the vision tower's rows in order. */
    for (int i = 0; i < n; i++) {
        const float *src = vis_row && vis_row[i] >= 0 ? image_row(images, n_images, vis_row[i], -1, D)
                                                      : w->embed + (size_t)ids[i] * D;
        memcpy(x + (size_t)i * D, src, (size_t)D * sizeof(float));
    }
    dump2(dump_dir, "text.embed", dump, x, n, D);

    /* MRoPE angles: frequency f rotates by the T, H or W position of the token. */
    for (int i = 0; i < n; i++)
        for (int f = 0; f < half; f++) {
            float ang = (float)pos[mrope_axis(tc, f) * pos_stride + i] * s->inv_freq[f];
            s->cos[(size_t)i * hd + f] = s->cos[(size_t)i * hd + f + half] = cosf(ang);
            s->sin[(size_t)i * hd + f] = s->sin[(size_t)i * hd + f + half] = sinf(ang);
        }

    for (int l = 0; l < tc->num_layers; l++) {
        const qvl_text_layer_w *L = &w->layers[l];
        float *kc = s->k_cache + (size_t)l * s->max_len * kv, *vc = s->v_cache + (size_t)l * s->max_len * kv;
        snprintf(name, sizeof name, "text.layer%d.in", l);
        dump2(dump_dir, name, dump, x, n, D);

        /* Self-attention: q/k/v projections, per-head RMSNorm of q and k, MRoPE, then causal
         * attention of the new tokens over the whole cache. K and V go straight into the cache. */
        qvl_cpu_rmsnorm(pool, y, x, L->in_norm, n, D, eps);
        qvl_cpu_matmul(pool, q, y, L->q_w, NULL, n, D, qdim);
        qvl_cpu_matmul(pool, kc + (size_t)p0 * kv, y, L->k_w, NULL, n, D, kv);
        qvl_cpu_matmul(pool, vc + (size_t)p0 * kv, y, L->v_w, NULL, n, D, kv);
        qvl_cpu_rmsnorm(pool, q, q, L->q_norm, n * Hq, hd, eps);
        qvl_cpu_rmsnorm(pool, kc + (size_t)p0 * kv, kc + (size_t)p0 * kv, L->k_norm, n * Hkv, hd, eps);
        for (int i = 0; i < n; i++) {
            const float *cs = s->cos + (size_t)i * hd, *sn = s->sin + (size_t)i * hd;
            for (int h = 0; h < Hq; h++) qvl_cpu_rope_half(q + (size_t)i * qdim + (size_t)h * hd, cs, sn, hd);
            for (int h = 0; h < Hkv; h++) qvl_cpu_rope_half(kc + (size_t)(p0 + i) * kv + (size_t)h * hd, cs, sn, hd);
        }
        qvl_cpu_attention(pool, att, qdim, q, qdim, kc, vc, kv, n, p0 + n, Hq, Hkv, hd, p0, s->scores);
        qvl_cpu_matmul(pool, y, att, L->o_w, NULL, n, qdim, D);
        qvl_cpu_add(x, y, (size_t)n * D);

        /* SwiGLU MLP. */
        qvl_cpu_rmsnorm(pool, y, x, L->post_norm, n, D, eps);
        qvl_cpu_matmul(pool, s->gate, y, L->gate_w, NULL, n, D, I);
        qvl_cpu_matmul(pool, s->up, y, L->up_w, NULL, n, D, I);
        qvl_cpu_silu_mul(pool, s->gate, s->up, (size_t)n * I);
        qvl_cpu_matmul(pool, y, s->gate, L->down_w, NULL, n, I, D);
        qvl_cpu_add(x, y, (size_t)n * D);
        snprintf(name, sizeof name, "text.layer%d.out", l);
        dump2(dump_dir, name, dump, x, n, D);

        /* DeepStack: after layer l < n_deepstack, image positions get the l-th vision tap. */
        if (l < n_ds)
            for (int i = 0; i < n; i++)
                if (vis_row[i] >= 0) qvl_cpu_add(x + (size_t)i * D, image_row(images, n_images, vis_row[i], l, D), D);
    }

    qvl_cpu_rmsnorm(pool, y, x, w->norm, n, D, eps);
    dump2(dump_dir, "text.norm", dump, y, n, D);
    if (logits) qvl_cpu_matmul(pool, logits, y + (size_t)(n - 1) * D, w->lm_head, NULL, 1, D, tc->vocab_size);
}

/* ---- many sequences in one pass, KV cache in blocks ---- */

int qvl_cpu_batch_state_init(qvl_cpu_batch_state *s, const qvl_config *cfg, int max_rows, int max_picks, int max_kv,
                             int threads) {
    const qvl_text_config *tc = &cfg->text;
    const int D = tc->hidden_size, qdim = tc->num_heads * tc->head_dim, hd = tc->head_dim;
    const int kv = tc->num_kv_heads * hd;
    memset(s, 0, sizeof *s);
    s->max_rows = max_rows;
    s->max_picks = max_picks;
    s->max_kv = max_kv;
    size_t R = (size_t)max_rows;
    size_t sizes[] = {R * D, R * D, R * qdim, R * qdim, R * tc->intermediate_size, R * tc->intermediate_size,
                      R * kv, R * kv, R * hd, R * hd, (size_t)hd / 2, qvl_cpu_attention_scratch(threads, max_kv),
                      (size_t)max_picks * D};
    float **dst[] = {&s->x, &s->y, &s->q, &s->att, &s->gate, &s->up, &s->k_new, &s->v_new, &s->cos, &s->sin,
                     &s->inv_freq, &s->scores, &s->last};
    size_t total = 0;
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) total += sizes[i];
    s->arena = calloc(total, sizeof(float));
    s->segs = malloc(R * sizeof *s->segs);
    if (!s->arena || !s->segs) {
        qvl_cpu_batch_state_free(s);
        return qvl_errorf("batch of %d tokens: out of memory (%.1f MiB of activations)", max_rows,
                          total * 4.0 / (1 << 20));
    }
    size_t off = 0;
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        *dst[i] = s->arena + off;
        off += sizes[i];
    }
    for (int i = 0; i < hd / 2; i++)
        s->inv_freq[i] = 1.0f / powf((float)tc->rope_theta, (float)(2 * i) / (float)hd);
    return 0;
}

void qvl_cpu_batch_state_free(qvl_cpu_batch_state *s) {
    free(s->arena);
    free(s->segs);
    memset(s, 0, sizeof *s);
}

/* Stores kv values as the K (v = 0) or V (v = 1) row of layer l at row r of block b, in a block laid
 * out as [K: layers][block_tokens][kv] then [V: layers][block_tokens][kv] elements (float32, or
 * e4m3 bytes rounded here). */
static void store_row(const qvl_cpu_kv_blocks *kvb, int layers, int kv, int v, int l, int32_t b, int r,
                      const float *src) {
    size_t at = (((size_t)v * layers + l) * kvb->block_tokens + r) * kv;
    if (kvb->fp8) qvl_kv_fp8_encode((uint8_t *)kvb->blocks[b] + at, src, (size_t)kv);
    else memcpy((float *)kvb->blocks[b] + at, src, (size_t)kv * sizeof(float));
}

void qvl_cpu_text_forward_batch(qvl_pool *pool, const qvl_config *cfg, const qvl_text_w *w, qvl_cpu_batch_state *s,
                                const qvl_cpu_kv_blocks *kvb, const qvl_cpu_batch_rows *b, float *logits,
                                const char *dump, const char *dump_dir) {
    const qvl_text_config *tc = &cfg->text;
    const int D = tc->hidden_size, Hq = tc->num_heads, Hkv = tc->num_kv_heads, hd = tc->head_dim;
    const int qdim = Hq * hd, kv = Hkv * hd, I = tc->intermediate_size, half = hd / 2, L = tc->num_layers;
    const int n = b->n;
    const float eps = (float)tc->rms_norm_eps;
    float *x = s->x, *y = s->y, *q = s->q, *att = s->att;
    char name[64];

    /* Token embeddings; image rows take the vision tower's row instead. */
    for (int i = 0; i < n; i++) {
        const float *src = b->image_embed[i] ? b->image_embed[i] : w->embed + (size_t)b->ids[i] * D;
        memcpy(x + (size_t)i * D, src, (size_t)D * sizeof(float));
    }
    dump2(dump_dir, "text.embed", dump, x, n, D);

    /* MRoPE angles of every row. */
    for (int i = 0; i < n; i++)
        for (int f = 0; f < half; f++) {
            float ang = (float)b->pos[mrope_axis(tc, f)][i] * s->inv_freq[f];
            s->cos[(size_t)i * hd + f] = s->cos[(size_t)i * hd + f + half] = cosf(ang);
            s->sin[(size_t)i * hd + f] = s->sin[(size_t)i * hd + f + half] = sinf(ang);
        }

    qvl_attn_paged pg = {kvb->blocks, 0, 0, kvb->block_tokens, kvb->fp8};
    for (int l = 0; l < L; l++) {
        const qvl_text_layer_w *Lw = &w->layers[l];
        snprintf(name, sizeof name, "text.layer%d.in", l);
        dump2(dump_dir, name, dump, x, n, D);

        /* Self-attention: the projections of every row together; new K and V rows go into their
         * sequences' blocks, then each sequence's queries attend over its own cache. */
        qvl_cpu_rmsnorm(pool, y, x, Lw->in_norm, n, D, eps);
        qvl_cpu_matmul(pool, q, y, Lw->q_w, NULL, n, D, qdim);
        qvl_cpu_matmul(pool, s->k_new, y, Lw->k_w, NULL, n, D, kv);
        qvl_cpu_matmul(pool, s->v_new, y, Lw->v_w, NULL, n, D, kv);
        qvl_cpu_rmsnorm(pool, q, q, Lw->q_norm, n * Hq, hd, eps);
        qvl_cpu_rmsnorm(pool, s->k_new, s->k_new, Lw->k_norm, n * Hkv, hd, eps);
        for (int i = 0; i < n; i++) {
            const float *cs = s->cos + (size_t)i * hd, *sn = s->sin + (size_t)i * hd;
            for (int h = 0; h < Hq; h++) qvl_cpu_rope_half(q + (size_t)i * qdim + (size_t)h * hd, cs, sn, hd);
            for (int h = 0; h < Hkv; h++) qvl_cpu_rope_half(s->k_new + (size_t)i * kv + (size_t)h * hd, cs, sn, hd);
            store_row(kvb, L, kv, 0, l, b->kv_block[i], b->kv_row[i], s->k_new + (size_t)i * kv);
            store_row(kvb, L, kv, 1, l, b->kv_block[i], b->kv_row[i], s->v_new + (size_t)i * kv);
        }
        pg.k_off = (size_t)l * kvb->block_tokens * kv;
        pg.v_off = ((size_t)L + l) * kvb->block_tokens * kv;
        qvl_cpu_attention_segs(pool, att, qdim, q, qdim, kv, b->segs, b->n_segs, &pg, Hq, Hkv, hd, s->scores,
                               s->max_kv);
        qvl_cpu_matmul(pool, y, att, Lw->o_w, NULL, n, qdim, D);
        qvl_cpu_add(x, y, (size_t)n * D);

        /* SwiGLU MLP. */
        qvl_cpu_rmsnorm(pool, y, x, Lw->post_norm, n, D, eps);
        qvl_cpu_matmul(pool, s->gate, y, Lw->gate_w, NULL, n, D, I);
        qvl_cpu_matmul(pool, s->up, y, Lw->up_w, NULL, n, D, I);
        qvl_cpu_silu_mul(pool, s->gate, s->up, (size_t)n * I);
        qvl_cpu_matmul(pool, y, s->gate, Lw->down_w, NULL, n, I, D);
        qvl_cpu_add(x, y, (size_t)n * D);
        snprintf(name, sizeof name, "text.layer%d.out", l);
        dump2(dump_dir, name, dump, x, n, D);

        /* DeepStack: after layer l < n_deepstack, image rows get the l-th vision tap. */
        if (l < b->n_deepstack)
            for (int i = 0; i < n; i++)
                if (b->image_embed[i]) qvl_cpu_add(x + (size_t)i * D, b->image_deepstack[l][i], D);
    }

    if (dump && dump_dir) {
        qvl_cpu_rmsnorm(pool, y, x, w->norm, n, D, eps);
        dump2(dump_dir, "text.norm", dump, y, n, D);
    }
    /* The rows whose next token is picked: output norm and lm_head (per row, as for one row alone). */
    if (b->n_pick > 0 && logits) {
        for (int j = 0; j < b->n_pick; j++)
            memcpy(s->last + (size_t)j * D, x + (size_t)b->pick_rows[j] * D, (size_t)D * sizeof(float));
        qvl_cpu_rmsnorm(pool, s->last, s->last, w->norm, b->n_pick, D, eps);
        qvl_cpu_matmul(pool, logits, s->last, w->lm_head, NULL, b->n_pick, D, tc->vocab_size);
    }
}
