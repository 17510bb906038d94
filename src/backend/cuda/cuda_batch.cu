/* The batched text path (cuda_batch.h): one forward pass over the rows of many sequences. Every
 * product runs once per weight over all rows (cuBLASLt, M = rows in the batch); attention runs per
 * sequence over its blocks of the KV pool: rows of a prefill chunk (more than SINGLE_MAX rows of one
 * sequence) through flash attention over its gathered keys (causal over cached + new), the other
 * rows (decodes, short chunks) through the paged split-key decode kernel, all together. Image pads
 * take their rows from the slot's features in the image cache; the next token of each picked row
 * is chosen on the device with its slot's picking state (argmax, or cuda_sample.cu's kernel). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cuda_model_impl.h"
extern "C" {
#include "backend/cuda/cuda_batch.h"
#include "io/safetensors.h"
}

enum { SINGLE_MAX = 4 };   /* a sequence's run of at most this many rows takes the paged decode kernel */
/* Decode graphs: whether qvl_tuning.decode_graphs = 0 means on (1) or off (0). Off until the GPU
 * check (tests/gpu/test_gpu_batch.c gpu_decode_graphs_*) and the timing with QVL_DECODE_GRAPHS=1/0
 * have run; then this line flips. */
enum { DECODE_GRAPHS_DEFAULT = 0, MAX_BUCKETS = 16 };

typedef struct {
    long start, tokens;     /* rows in the image cache */
    int seq;
} img_seg;

typedef struct {
    int active, picking, has_last, dropped;
    unsigned in_pass;       /* the pass number + 1 that last saw the slot's rows */
    int n_blocks;
    qvl_pick_state st;
    int n_img;              /* the slot's images in order: indexes into b->segs by seg_id */
    int *img_ids;           /* [MAX_IMAGES] segment ids */
} slot_t;

struct qvl_cuda_batch {
    qvl_cuda_model *m;
    int S, T, V, block, bps, budget;
    unsigned pass;
    long cache_tokens;
    slot_t *slots;
    /* image cache: used segments, sorted by start; ids stable (seg_ids[k] owner id) */
    img_seg *segs;
    int *seg_id;
    int n_segs, cap_segs, next_seg_id;
    /* pinned host mirror of batch_in */
    int32_t *h_in;
    long in_ints;
    /* host scratch for logits */
    uint16_t *h_logits;
    /* Decode-only steps (one row per sequence, every row picked, no image rows) run with their rows
     * padded to a bucket of min(2^k, S) rows, graphs on or off, so that both launch the same
     * kernels. With graphs on, bucket k's step is run once eagerly (kernels loaded, cuBLASLt
     * algorithms chosen), captured the next time it comes (graph[k]) and replayed from then on. */
    int graphs_on;
    int graph_state[MAX_BUCKETS];   /* 0 not run yet, 1 run once, 2 captured, -1 capture refused: eager */
    cudaGraphExec_t graph[MAX_BUCKETS];
    long graph_captures, graph_replays;
};

static long cache_used(const qvl_cuda_batch *b) {
    long u = 0;
    for (int i = 0; i < b->n_segs; i++) u += b->segs[i].tokens;
    return u;
}
long qvl_cuda_batch_image_rows_used(const qvl_cuda_batch *b) { return cache_used(b); }

/* Offsets into batch_in (ints): per-row arrays of the pass packed with stride n, then the
 * per-sequence arrays and the block tables at fixed places. */
static long off_pick_rows(const qvl_cuda_batch *b) { return 9L * b->budget; }
static long off_picked(const qvl_cuda_batch *b) { return 9L * b->budget + b->S; }
static long off_last(const qvl_cuda_batch *b) { return 9L * b->budget + 2L * b->S; }
static long off_tables(const qvl_cuda_batch *b) { return 9L * b->budget + 3L * b->S; }

extern "C" qvl_cuda_batch *qvl_cuda_batch_open(const char *dir, const qvl_cuda_opts *o) {
    qvl_cuda_opts oo = *o;
    oo.batched = 1;
    qvl_cuda_batch *b = (qvl_cuda_batch *)calloc(1, sizeof *b);
    if (!b) {
        qvl_errorf("%s: out of memory", dir);
        return NULL;
    }
    if (!(b->m = qvl_cuda_model_open(dir, &oo))) {
        free(b);
        return NULL;
    }
    qvl_cuda_model *m = b->m;
    const qvl_text_config *t = &m->cfg.text;
    if (!qvl_attention_paged_ok(t->num_heads, t->num_kv_heads, t->head_dim)) {
        qvl_errorf("%s/config.json: head size %d / GQA %d:%d not supported by the paged attention kernel", dir,
                   t->head_dim, t->num_heads, t->num_kv_heads);
        qvl_cuda_batch_close(b);
        return NULL;
    }
    b->S = m->plan.sequences;
    b->T = (int)m->max_len;
    b->V = t->vocab_size;
    b->block = m->plan.kv_block_tokens;
    b->bps = (int)qvl_plan_blocks_per_seq(m->max_len, b->block);
    b->budget = m->plan.token_budget;
    b->cache_tokens = m->plan.image_cache_tokens;
    b->in_ints = qvl_plan_batch_in_ints(b->budget, b->S, b->bps);
    b->slots = (slot_t *)calloc((size_t)b->S, sizeof *b->slots);
    int *ids = (int *)calloc((size_t)b->S * MAX_IMAGES, sizeof(int));
    b->h_logits = (uint16_t *)malloc((size_t)b->S * b->V * 2);
    if (!b->slots || !ids || !b->h_logits ||
        cudaHostAlloc((void **)&b->h_in, (size_t)b->in_ints * sizeof(int32_t), cudaHostAllocDefault) != cudaSuccess) {
        free(ids);
        b->h_in = NULL;
        qvl_errorf("%s: out of memory", dir);
        qvl_cuda_batch_close(b);
        return NULL;
    }
    for (int s = 0; s < b->S; s++) b->slots[s].img_ids = ids + (size_t)s * MAX_IMAGES;
    memset(b->h_in, 0, (size_t)b->in_ints * sizeof(int32_t));
    const qvl_tuning *tu = &m->tuning;
    b->graphs_on = !tu->no_cuda_graphs && (tu->decode_graphs > 0 || (tu->decode_graphs == 0 && DECODE_GRAPHS_DEFAULT));
    return b;
}

extern "C" void qvl_cuda_batch_close(qvl_cuda_batch *b) {
    if (!b) return;
    for (int k = 0; k < MAX_BUCKETS; k++)
        if (b->graph[k]) cudaGraphExecDestroy(b->graph[k]);
    qvl_cuda_model_close(b->m);
    if (b->slots) free(b->slots[0].img_ids);
    free(b->slots);
    free(b->segs), free(b->seg_id);
    if (b->h_in) cudaFreeHost(b->h_in);
    free(b->h_logits);
    free(b);
}

extern "C" qvl_cuda_model *qvl_cuda_batch_model(qvl_cuda_batch *b) { return b->m; }
extern "C" void qvl_cuda_batch_graph_stats(const qvl_cuda_batch *b, int *on, long *captures, long *replays) {
    *on = b->graphs_on, *captures = b->graph_captures, *replays = b->graph_replays;
}

static int check_seq(const qvl_cuda_batch *b, int seq) {
    if (seq < 0 || seq >= b->S) return qvl_errorf("cuda: sequence slot %d outside 0..%d", seq, b->S - 1);
    return 0;
}

/* ---- image cache: first fit over the used segments ---- */
static int seg_index(const qvl_cuda_batch *b, int id) {
    for (int i = 0; i < b->n_segs; i++)
        if (b->seg_id[i] == id) return i;
    return -1;
}
static void seg_remove(qvl_cuda_batch *b, int id) {
    int i = seg_index(b, id);
    if (i < 0) return;
    memmove(b->segs + i, b->segs + i + 1, (size_t)(b->n_segs - i - 1) * sizeof *b->segs);
    memmove(b->seg_id + i, b->seg_id + i + 1, (size_t)(b->n_segs - i - 1) * sizeof *b->seg_id);
    b->n_segs--;
}
/* The start of a free hole of `tokens` rows, or -1. */
static long seg_find(const qvl_cuda_batch *b, long tokens) {
    long at = 0;
    for (int i = 0; i <= b->n_segs; i++) {
        long end = i < b->n_segs ? b->segs[i].start : b->cache_tokens;
        if (end - at >= tokens) return at;
        if (i < b->n_segs) at = b->segs[i].start + b->segs[i].tokens;
    }
    return -1;
}
static int seg_add(qvl_cuda_batch *b, long start, long tokens, int seq) {
    if (b->n_segs == b->cap_segs) {
        int cap = b->cap_segs ? 2 * b->cap_segs : 64;
        img_seg *s = (img_seg *)realloc(b->segs, (size_t)cap * sizeof *s);
        if (s) b->segs = s;
        int *d = (int *)realloc(b->seg_id, (size_t)cap * sizeof *d);
        if (d) b->seg_id = d;
        if (!s || !d) return -1;
        b->cap_segs = cap;
    }
    int i = 0;
    while (i < b->n_segs && b->segs[i].start < start) i++;
    memmove(b->segs + i + 1, b->segs + i, (size_t)(b->n_segs - i) * sizeof *b->segs);
    memmove(b->seg_id + i + 1, b->seg_id + i, (size_t)(b->n_segs - i) * sizeof *b->seg_id);
    b->segs[i].start = start, b->segs[i].tokens = tokens, b->segs[i].seq = seq;
    b->seg_id[i] = b->next_seg_id++;
    b->n_segs++;
    return b->seg_id[i];
}

/* Moves every segment down to close the holes (the engine counts the cache by rows, so rows free in
 * total must be usable as one hole). Rows are moved front to back in pieces no longer than the
 * distance moved, so that no piece overlaps its own destination. */
static int compact(qvl_cuda_batch *b) {
    qvl_cuda_model *m = b->m;
    const size_t D = m->cfg.text.hidden_size;
    long at = 0;
    for (int i = 0; i < b->n_segs; i++) {
        img_seg *g = &b->segs[i];
        const long gap = g->start - at;
        for (long r = 0; gap > 0 && r < g->tokens;) {
            const long cnt = g->tokens - r < gap ? g->tokens - r : gap;
            for (int j = 0; j <= m->cfg.vision.n_deepstack; j++)
                CK(cudaMemcpyAsync(m->img[j] + (size_t)(at + r) * D, m->img[j] + (size_t)(g->start + r) * D,
                                   (size_t)cnt * D * sizeof(bf16), cudaMemcpyDeviceToDevice, m->st));
            r += cnt;
        }
        g->start = at;
        at += g->tokens;
    }
    return 0;
}

static void drop_images(qvl_cuda_batch *b, int seq) {
    slot_t *sl = &b->slots[seq];
    for (int i = 0; i < sl->n_img; i++) seg_remove(b, sl->img_ids[i]);
    sl->n_img = 0;
}

/* ---- slots ---- */
extern "C" int qvl_cuda_batch_seq_begin(qvl_cuda_batch *b, int seq, const qvl_cuda_pick_params *p,
                                        const double *uniforms, int n_uniforms, const int32_t *prompt, int n_prompt) {
    if (check_seq(b, seq)) return -1;
    qvl_cuda_model *m = b->m;
    if (n_uniforms < 0 || n_uniforms > b->T)
        return qvl_errorf("sampling: %d uniforms exceed the context of %d tokens", n_uniforms, b->T);
    if (!(p->temperature == p->temperature) || !(p->repetition_penalty > 0))
        return qvl_errorf("sampling: bad temperature or repetition penalty");
    slot_t *sl = &b->slots[seq];
    drop_images(b, seq);
    memset(&sl->st, 0, sizeof sl->st);
    sl->active = 1, sl->has_last = 0, sl->dropped = 0, sl->n_blocks = 0;
    int sampling = p->do_sample && p->temperature > 0;
    sl->picking = sampling || p->repetition_penalty != 1.0f || p->presence_penalty != 0.0f;
    if (!sl->picking) return 0;
    if (n_prompt > b->V) return qvl_errorf("sampling: a prompt of %d tokens is longer than the vocabulary", n_prompt);
    sl->st.p = *p;
    sl->st.n_uniforms = n_uniforms;
    sl->st.counter = 0;
    cudaStream_t s = m->st;
    /* pageable sources: the copies have taken them when cudaMemcpyAsync returns */
    CK(cudaMemcpyAsync((char *)m->pick_state + (size_t)seq * QVL_PLAN_PICK_STATE, &sl->st, sizeof sl->st,
                       cudaMemcpyHostToDevice, s));
    if (n_uniforms > 0)
        CK(cudaMemcpyAsync(m->pick_uniforms + (size_t)seq * b->T, uniforms, (size_t)n_uniforms * sizeof *uniforms,
                           cudaMemcpyHostToDevice, s));
    /* the prompt ids go through the processed-logits row (free between picks) */
    int32_t *ids = (int32_t *)m->pick_work;
    if (n_prompt > 0) CK(cudaMemcpyAsync(ids, prompt, (size_t)n_prompt * sizeof *prompt, cudaMemcpyHostToDevice, s));
    qvl_k_pick_prompt(s, m->pick_flags + (size_t)seq * b->V, b->V, ids, n_prompt);
    CK(cudaStreamSynchronize(s));
    return 0;
}

extern "C" int qvl_cuda_batch_seq_blocks(qvl_cuda_batch *b, int seq, const int32_t *blocks, int n_blocks) {
    if (check_seq(b, seq)) return -1;
    if (n_blocks < 0 || n_blocks > b->bps)
        return qvl_errorf("cuda: %d KV blocks for one sequence, at most %d", n_blocks, b->bps);
    for (int i = 0; i < n_blocks; i++)
        if (blocks[i] < 0 || blocks[i] >= b->m->plan.kv_blocks)
            return qvl_errorf("cuda: KV block %d outside the pool of %ld", blocks[i], b->m->plan.kv_blocks);
    qvl_cuda_model *m = b->m;
    /* the mirror's table area is only read by this copy; the pass that uses it syncs before the
     * host writes it again */
    CK(cudaStreamSynchronize(m->st));
    int32_t *h = b->h_in + off_tables(b) + (long)seq * b->bps;
    memcpy(h, blocks, (size_t)n_blocks * sizeof *blocks);
    CK(cudaMemcpyAsync(m->batch_in + off_tables(b) + (long)seq * b->bps, h, (size_t)n_blocks * sizeof *blocks,
                       cudaMemcpyHostToDevice, m->st));
    b->slots[seq].n_blocks = n_blocks;
    return 0;
}

extern "C" void qvl_cuda_batch_seq_drop_images(qvl_cuda_batch *b, int seq) {
    if (seq < 0 || seq >= b->S) return;
    drop_images(b, seq);
    b->slots[seq].dropped = 1;
}

extern "C" void qvl_cuda_batch_seq_free(qvl_cuda_batch *b, int seq) {
    if (seq < 0 || seq >= b->S) return;
    drop_images(b, seq);
    slot_t *sl = &b->slots[seq];
    sl->active = 0, sl->picking = 0, sl->has_last = 0, sl->n_blocks = 0, sl->dropped = 0;
    qvl_cuda_sample_peak(b->m);
}

/* ---- vision: images packed into passes of at most max_patches patches ---- */
extern "C" int qvl_cuda_batch_encode(qvl_cuda_batch *b, const qvl_pixel_values *const *pv, const int *seqs, int n) {
    qvl_cuda_model *m = b->m;
    const qvl_vision_config *v = &m->cfg.vision;
    const int unit = v->spatial_merge_size * v->spatial_merge_size, D = m->cfg.text.hidden_size;
    int *made = (int *)malloc((size_t)(n > 0 ? n : 1) * sizeof(int));
    const float **px = (const float **)malloc((size_t)(n > 0 ? n : 1) * sizeof *px);
    if (!made || !px) {
        free(made), free(px);
        return qvl_errorf("image: out of memory");
    }
    int n_made = 0, rc = 0;
    for (int i = 0; i < n && !rc; i++) {
        if (check_seq(b, seqs[i])) rc = -1;
        else if (!b->slots[seqs[i]].active) rc = qvl_errorf("cuda: images for sequence slot %d, which has not begun", seqs[i]);
        else if (!pv[i] || !pv[i]->data) rc = qvl_errorf("image: no pixel values");
        else if (pv[i]->num_patches > m->max_patches || pv[i]->num_patches / unit > m->max_tokens)
            rc = qvl_errorf("image: %d image tokens exceed the %ld the memory plan admits (--max-pixels, --max-model-len)",
                            pv[i]->num_patches / unit, m->max_tokens);
        px[i] = pv[i] ? pv[i]->data : NULL;
    }
    for (int i0 = 0; i0 < n && !rc;) {
        /* this pass: images i0 .. i1-1 */
        long patches = 0;
        int i1 = i0;
        while (i1 < n && patches + pv[i1]->num_patches <= m->max_patches) patches += pv[i1++]->num_patches;
        long tokens = patches / unit;
        long start = seg_find(b, tokens);
        if (start < 0 && b->cache_tokens - cache_used(b) >= tokens) {
            if (compact(b)) {
                rc = -1;
                break;
            }
            start = seg_find(b, tokens);
        }
        if (start < 0) {
            rc = qvl_errorf("image: %ld image tokens do not fit the image cache (%ld of %ld rows in use)", tokens,
                            cache_used(b), b->cache_tokens);
            break;
        }
        bf16 *out[1 + QVL_MAX_DEEPSTACK];
        for (int j = 0; j <= v->n_deepstack; j++) out[j] = m->img[j] + (size_t)start * D;
        if (qvl_cuda_vision_pass(m, pv + i0, px + i0, NULL, i1 - i0, out)) {
            rc = -1;
            break;
        }
        for (int i = i0; i < i1; i++) {
            slot_t *sl = &b->slots[seqs[i]];
            long tk = pv[i]->num_patches / unit;
            int id = sl->n_img < MAX_IMAGES ? seg_add(b, start, tk, seqs[i]) : -1;
            if (id < 0) {
                rc = qvl_errorf("image: more than %d images for one sequence", MAX_IMAGES);
                break;
            }
            sl->img_ids[sl->n_img++] = id;
            made[n_made++] = seqs[i];
            start += tk;
        }
        i0 = i1;
    }
    if (!rc) {
        cudaError_t e = cudaStreamSynchronize(m->st);
        if (e == cudaSuccess) e = cudaGetLastError();
        if (e != cudaSuccess) rc = qvl_errorf("cuda: %s (vision pass)", cudaGetErrorString(e));
    }
    if (rc) /* nothing kept: the images this call appended go again */
        for (int k = n_made - 1; k >= 0; k--) {
            slot_t *sl = &b->slots[made[k]];
            seg_remove(b, sl->img_ids[--sl->n_img]);
        }
    free(made), free(px);
    qvl_cuda_sample_peak(m);
    return rc;
}

/* The cache row of image row r of slot sl, or -1. */
static long image_row(const qvl_cuda_batch *b, const slot_t *sl, long r) {
    for (int i = 0; i < sl->n_img; i++) {
        int k = seg_index(b, sl->img_ids[i]);
        if (k < 0) return -1;
        if (r < b->segs[k].tokens) return b->segs[k].start + r;
        r -= b->segs[k].tokens;
    }
    return -1;
}

/* ---- the forward pass ---- */
typedef struct {
    int r0, n, p0, seq;
} chunk_t;

static int forward(qvl_cuda_batch *b, int n, const chunk_t *chunks, int n_chunks, int n_single, int any_image,
                   int n_pick) {
    qvl_cuda_model *m = b->m;
    const qvl_text_config *t = &m->cfg.text;
    const int D = t->hidden_size, hd = t->head_dim, Hq = t->num_heads, Hkv = t->num_kv_heads, I = t->intermediate_size;
    const int qdim = Hq * hd, kv = Hkv * hd, qkvd = qdim + 2 * kv;
    const float eps = (float)t->rms_norm_eps;
    const int n_ds = any_image ? m->cfg.vision.n_deepstack : 0;
    cudaStream_t s = m->st;
    qvl_rope_desc rd = {Hq, Hkv, hd, {t->mrope_section[0], t->mrope_section[1], t->mrope_section[2]}, t->mrope_interleaved, eps};
    const int32_t *ids = m->batch_in, *pos = m->batch_in + n, *vis = m->batch_in + 4 * n, *slot = m->batch_in + 5 * n;
    const int32_t *kvlen = m->batch_in + 6 * n, *seq = m->batch_in + 7 * n, *single = m->batch_in + 8 * n;
    const int32_t *tables = m->batch_in + off_tables(b), *pick_rows = m->batch_in + off_pick_rows(b);
    const size_t layer_rows = (size_t)m->plan.kv_blocks * b->block;
    /* split keys of the single rows only where the rows alone leave the GPU idle */
    int splits = 1;
    if (n_single > 0) {
        splits = (2 * 132 + n_single * Hkv - 1) / (n_single * Hkv);
        if (splits > QVL_PLAN_DEC_SPLITS) splits = QVL_PLAN_DEC_SPLITS;
        if (n_single > b->S) splits = 1;   /* the partials are planned for one row per sequence */
        if (splits < 1) splits = 1;
    }
    qvl_k_embed(s, m->x, m->embed, ids, any_image ? vis : NULL, m->img[0], n, D);
    int normed = 0; /* m->y already holds this layer's input norm (fused into the last residual add) */
    for (int l = 0; l < t->num_layers; l++) {
        const tlayer *L = &m->tl[l];
        /* the layer's pool: BF16 elements, or e4m3 bytes (--kv-dtype fp8) */
        const size_t layer_off = (size_t)l * layer_rows * kv;
        bf16 *kc = m->k_cache + layer_off, *vc = m->v_cache + layer_off;
        uint8_t *kc8 = (uint8_t *)m->k_cache + layer_off, *vc8 = (uint8_t *)m->v_cache + layer_off;
        if (!normed) qvl_k_rmsnorm(s, m->y, m->x, L->in_norm, n, D, eps);
        G(qvl_cuda_lin(m, s, m->qkv, qkvd, m->y, D, L->qkv_w, NULL, n, D, qkvd));
        if (m->kv_fp8) {
            qvl_k_qk_norm_rope_slots_fp8(s, &rd, m->qkv, qkvd, kc8, vc8, m->qkv, L->q_norm, L->k_norm, m->txt_inv_freq, n,
                                         pos, n, slot);
            qvl_attention_paged_fp8(s, m->att, qdim, m->qkv, qkvd, kc8, vc8, kv, single, n_single, seq, kvlen, tables,
                                    b->bps, b->block, Hq, Hkv, hd, splits, m->att_partial);
        } else {
            qvl_k_qk_norm_rope_slots(s, &rd, m->qkv, qkvd, kc, vc, m->qkv, L->q_norm, L->k_norm, m->txt_inv_freq, n, pos,
                                     n, slot);
            qvl_attention_paged(s, m->att, qdim, m->qkv, qkvd, kc, vc, kv, single, n_single, seq, kvlen, tables, b->bps,
                                b->block, Hq, Hkv, hd, splits, m->att_partial);
        }
        for (int c = 0; c < n_chunks; c++) {
            const chunk_t *ch = &chunks[c];
            const int n_kv = ch->p0 + ch->n;
            /* the sequence's keys as BF16 rows (FP8: upcast, exact), then flash attention as for BF16 */
            if (m->kv_fp8)
                qvl_k_kv_gather_fp8(s, m->gather_k, m->gather_v, kc8, vc8, kv, tables + (size_t)ch->seq * b->bps, b->block,
                                    n_kv);
            else
                qvl_k_kv_gather(s, m->gather_k, m->gather_v, kc, vc, kv, tables + (size_t)ch->seq * b->bps, b->block, n_kv);
            qvl_attention(s, m->att + (size_t)ch->r0 * qdim, qdim, m->qkv + (size_t)ch->r0 * qkvd, qkvd, m->gather_k,
                          m->gather_v, kv, ch->n, n_kv, Hq, Hkv, hd, ch->p0, NULL, m->tuning.attention - 1);
        }
        G(qvl_cuda_lin(m, s, m->y, D, m->att, qdim, L->o_w, NULL, n, qdim, D));
        qvl_k_add_rmsnorm(s, m->y, m->x, m->y, L->post_norm, n, D, eps);
        G(qvl_cuda_lin(m, s, m->gu, 2 * I, m->y, D, L->gu_w, NULL, n, D, 2 * I));
        qvl_k_silu_mul(s, m->h, m->gu, n, I);
        G(qvl_cuda_lin(m, s, m->y, D, m->h, I, L->down_w, NULL, n, I, D));
        normed = l + 1 < t->num_layers && l >= n_ds;
        if (normed)
            qvl_k_add_rmsnorm(s, m->y, m->x, m->y, m->tl[l + 1].in_norm, n, D, eps);
        else
            qvl_k_add(s, m->x, m->y, (size_t)n * D);
        if (l < n_ds) qvl_k_deepstack_add(s, m->x, vis, m->img[1 + l], n, D);
    }
    /* the picked rows: final norm, logits, the greedy ids (the sampling picks follow per row) */
    if (n_pick > 0) {
        qvl_k_gather_rows(s, m->y, m->x, pick_rows, n_pick, D);
        qvl_k_rmsnorm(s, m->h, m->y, m->norm, n_pick, D, eps);
        G(qvl_cuda_lin(m, s, m->logits, b->V, m->h, D, m->lm_head, NULL, n_pick, D, b->V));
        qvl_k_argmax(s, m->batch_in + off_picked(b), m->logits, n_pick, b->V, m->sync);
    }
    return 0;
}

/* The rows of the bucket that holds n decode rows (its index in *k): min(2^k, S). */
static int bucket_rows(const qvl_cuda_batch *b, int n, int *k) {
    int r = 1, i = 0;
    while (r < n) r *= 2, i++;
    *k = i;
    return r < b->S ? r : b->S;
}

/* A decode-only pass of B rows (padded; inputs in batch_in at stride B): from bucket k's graph,
 * captured on the bucket's second pass, when graphs are on; else launched kernel by kernel. */
static int decode_pass(qvl_cuda_batch *b, int B, int k) {
    cudaStream_t st = b->m->st;
    if (!b->graphs_on || k >= MAX_BUCKETS || b->graph_state[k] <= 0) {
        if (b->graphs_on && k < MAX_BUCKETS && b->graph_state[k] == 0) b->graph_state[k] = 1;
        return forward(b, B, NULL, 0, B, 0, B);
    }
    if (b->graph_state[k] == 1) {
        cudaGraph_t g = NULL;
        int rc = 0;
        cudaError_t e = cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal);
        if (e == cudaSuccess) {
            rc = forward(b, B, NULL, 0, B, 0, B);
            e = cudaStreamEndCapture(st, &g);
        }
        if (!rc && e == cudaSuccess) e = cudaGraphInstantiate(&b->graph[k], g, 0);
        if (g) cudaGraphDestroy(g);
        if (rc || e != cudaSuccess) {
            /* nothing ran while capturing: this bucket stays kernel by kernel */
            b->graph[k] = NULL;
            b->graph_state[k] = -1;
            (void)cudaGetLastError();
            return forward(b, B, NULL, 0, B, 0, B);
        }
        b->graph_state[k] = 2;
        b->graph_captures++;
    }
    CK(cudaGraphLaunch(b->graph[k], st));
    b->graph_replays++;
    return 0;
}

extern "C" int qvl_cuda_batch_run(qvl_cuda_batch *b, const qvl_batch *bt, int32_t *picked, float *logits) {
    qvl_cuda_model *m = b->m;
    const int n = bt->n_tokens;
    if (n <= 0) return 0;
    if (n > b->budget) return qvl_errorf("cuda: a batch of %d rows exceeds the token budget of %d", n, b->budget);
    /* decode-only: one row per sequence (runs of one row), every row picked, no image row */
    int decode_only = 1;
    for (int r = 0; r < n && decode_only; r++)
        decode_only = bt->pick[r] && (!bt->image_row || bt->image_row[r] < 0) && (r == 0 || bt->seq[r] != bt->seq[r - 1]);
    int k_bucket = 0;
    const int B = decode_only && n <= b->S ? bucket_rows(b, n, &k_bucket) : n;   /* rows launched (stride) */
    if (B < n) decode_only = 0;
    int32_t *h = b->h_in;
    int32_t *ids = h, *pos = h + B, *vis = h + 4 * B, *slot = h + 5 * B, *kvlen = h + 6 * B, *seq = h + 7 * B;
    int32_t *single = h + 8 * B, *pick_rows = h + off_pick_rows(b);
    chunk_t *chunks = (chunk_t *)malloc((size_t)n * sizeof *chunks);
    int *pick_seq = (int *)malloc((size_t)(b->S > 0 ? b->S : 1) * sizeof(int));
    if (!chunks || !pick_seq) {
        free(chunks), free(pick_seq);
        return qvl_errorf("cuda: out of memory");
    }
    int n_chunks = 0, n_single = 0, n_pick = 0, any_image = 0, rc = 0;
    b->pass++;
    for (int r0 = 0; r0 < n && !rc;) {
        const int s = bt->seq[r0];
        if (check_seq(b, s) || !b->slots[s].active) {
            rc = rc ? rc : qvl_errorf("cuda: batch row %d names sequence slot %d, which has not begun", r0, s);
            break;
        }
        const slot_t *sl = &b->slots[s];
        /* one run of rows per sequence (its rows consecutive, batch.h) */
        if (sl->in_pass == b->pass + 1) {
            rc = qvl_errorf("cuda: the rows of sequence %d are not consecutive in the batch", s);
            break;
        }
        b->slots[s].in_pass = b->pass + 1;
        int r1 = r0;
        while (r1 < n && bt->seq[r1] == s) r1++;
        for (int r = r0; r < r1 && !rc; r++) {
            const int k = bt->kv_index[r];
            if (r > r0 && k != bt->kv_index[r - 1] + 1)
                rc = qvl_errorf("cuda: batch rows of sequence %d are not consecutive positions", s);
            else if (k < 0 || k >= sl->n_blocks * b->block)
                rc = qvl_errorf("cuda: sequence %d row %d lies outside its %d KV blocks", s, k, sl->n_blocks);
            else if (bt->token[r] < 0 || bt->token[r] >= b->V)
                rc = qvl_errorf("cuda: token id %d outside the vocabulary of %d", bt->token[r], b->V);
            if (rc) break;
            ids[r] = bt->token[r];
            for (int a = 0; a < 3; a++) pos[a * B + r] = bt->pos[a][r];
            long ir = -1;
            if (bt->image_row && bt->image_row[r] >= 0) {
                ir = sl->dropped ? -1 : image_row(b, sl, bt->image_row[r]);
                if (ir < 0) {
                    rc = qvl_errorf("cuda: sequence %d has no image row %d", s, bt->image_row[r]);
                    break;
                }
                any_image = 1;
            }
            vis[r] = (int32_t)ir;
            slot[r] = h[off_tables(b) + (long)s * b->bps + k / b->block] * b->block + k % b->block;
            kvlen[r] = k + 1;
            seq[r] = s;
            if (bt->pick[r]) {
                if (n_pick >= b->S) {
                    rc = qvl_errorf("cuda: more picked rows than the %d sequences", b->S);
                    break;
                }
                pick_seq[n_pick] = s;
                pick_rows[n_pick++] = r;
            }
        }
        if (rc) break;
        if (r1 - r0 > SINGLE_MAX)
            chunks[n_chunks++] = (chunk_t){r0, r1 - r0, bt->kv_index[r0], s};
        else
            for (int r = r0; r < r1; r++) single[n_single++] = r;
        r0 = r1;
    }
    if (rc) {
        free(chunks), free(pick_seq);
        return -1;
    }
    /* padding rows of a decode-only pass: token 0 at position 0, no cache row (slot -1), no keys
     * (length 0: attention gives zeros), sequence 0's table (not read); picked, ignored */
    for (int r = n; r < B; r++) {
        ids[r] = 0, vis[r] = -1, slot[r] = -1, kvlen[r] = 0, seq[r] = 0, single[r] = r, pick_rows[r] = r;
        for (int a = 0; a < 3; a++) pos[a * B + r] = 0;
    }
    if (decode_only) n_single = B;
    qvl_cuda_model *mm = m;
    cudaStream_t st = mm->st;
    /* the pass's inputs: its rows (stride B), then the picked rows */
    CK(cudaMemcpyAsync(mm->batch_in, h, (size_t)9 * B * sizeof(int32_t), cudaMemcpyHostToDevice, st));
    const int n_pick_run = decode_only ? B : n_pick;
    if (n_pick_run)
        CK(cudaMemcpyAsync(mm->batch_in + off_pick_rows(b), pick_rows, (size_t)n_pick_run * sizeof(int32_t),
                           cudaMemcpyHostToDevice, st));
    rc = decode_only ? decode_pass(b, B, k_bucket) : forward(b, n, chunks, n_chunks, n_single, any_image, n_pick);
    free(chunks);
    if (rc) {
        free(pick_seq);
        return -1;
    }
    if (n_pick) {
        int32_t *d_picked = mm->batch_in + off_picked(b), *d_last = mm->batch_in + off_last(b);
        for (int j = 0; j < n_pick; j++) {
            slot_t *sl = &b->slots[pick_seq[j]];
            if (!sl->picking) continue;
            const int s = pick_seq[j];
            /* the slot's previous pick counts as generated before this one (qvl_sampler_accept) */
            if (sl->has_last)
                CK(cudaMemcpyAsync(d_picked + j, d_last + s, sizeof(int32_t), cudaMemcpyDeviceToDevice, st));
            qvl_k_pick(st, d_picked + j, mm->logits + (size_t)j * b->V, b->V,
                       (qvl_pick_state *)((char *)mm->pick_state + (size_t)s * QVL_PLAN_PICK_STATE),
                       mm->pick_flags + (size_t)s * b->V, mm->pick_work, mm->pick_uniforms + (size_t)s * b->T,
                       sl->has_last, 1);
            CK(cudaMemcpyAsync(d_last + s, d_picked + j, sizeof(int32_t), cudaMemcpyDeviceToDevice, st));
            sl->has_last = 1;
        }
        CK(cudaMemcpyAsync(picked, d_picked, (size_t)n_pick * sizeof(int32_t), cudaMemcpyDeviceToHost, st));
        if (logits)
            CK(cudaMemcpyAsync(b->h_logits, mm->logits, (size_t)n_pick * b->V * 2, cudaMemcpyDeviceToHost, st));
    }
    free(pick_seq);
    CK(cudaStreamSynchronize(st));
    CK(cudaGetLastError());
    if (logits && n_pick)
        for (size_t i = 0; i < (size_t)n_pick * b->V; i++) logits[i] = qvl_bf16_to_f32(b->h_logits[i]);
    return 0;
}
