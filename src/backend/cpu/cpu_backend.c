/* The CPU backend (engine/backend.h) over the CPU reference model: F32 weights, a KV pool of
 * fixed-size blocks (each block's memory allocated the first time a sequence is given it, then
 * kept; float32 elements, or e4m3 bytes with kv_dtype fp8: kv_fp8.h), per-slot image features and
 * per-slot picking with engine/sampler.c. A batch runs every
 * stage over all its rows together; each row's numbers depend only on its own sequence, so a
 * request gives the same tokens and logits, bit for bit, alone or among others. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "backend/cpu/forward.h"
#include "engine/backend.h"
#include "engine/sampler.h"
#include "model/model.h"
#include "util/error.h"

/* Defaults when the engine leaves the choice to the backend. */
enum { CPU_MAX_SEQS = 16, CPU_TOKEN_BUDGET = 2048, CPU_VISION_TOKENS_MIN = 1024 };

typedef struct {
    int active;
    qvl_sampler *sampler;          /* made the first time the slot is used, then reused */
    double *uniforms;              /* [max_model_len] the request's random stream */
    int n_uniforms, next_uniform;
    int n_prompt;
    int32_t *table;                /* [max blocks per sequence] */
    int n_blocks;
    qvl_vision_out *images;        /* in prompt order */
    int n_images, cap_images;
    long image_rows;
} cpu_slot;

struct qvl_backend {
    qvl_model *model;
    const qvl_config *cfg;
    qvl_backend_limits lim;
    qvl_mem_plan plan;
    char name[64];
    cpu_slot *slots;
    void **blocks;                 /* [kv_blocks] NULL until first used */
    size_t block_elems;            /* K and V elements of every layer for kv_block_tokens tokens */
    size_t elem_bytes;             /* 4 (float32) or 1 (fp8) */
    int kv_fp8;
    long image_rows_used;
    qvl_cpu_batch_state st;
    /* Per-batch row tables. */
    const float **image_embed, **image_ds;   /* [budget], [MAX_DEEPSTACK][budget] */
    int32_t *kv_block, *kv_row;
    int *pick_rows;
    float *logits;                 /* [max_seqs][vocab] */
};

static int cpu_devices(void) { return 1; }

static void cpu_close(qvl_backend *b) {
    if (!b) return;
    for (int i = 0; b->slots && i < b->lim.max_seqs; i++) {
        cpu_slot *s = &b->slots[i];
        for (int k = 0; k < s->n_images; k++) qvl_vision_out_free(&s->images[k]);
        free(s->images);
        free(s->table);
        free(s->uniforms);
        qvl_sampler_free(s->sampler);
    }
    free(b->slots);
    for (int i = 0; b->blocks && i < b->lim.kv_blocks; i++) free(b->blocks[i]);
    free(b->blocks);
    qvl_cpu_batch_state_free(&b->st);
    free(b->image_embed);
    free(b->image_ds);
    free(b->kv_block);
    free(b->kv_row);
    free(b->pick_rows);
    free(b->logits);
    qvl_model_close(b->model);
    free(b);
}

static qvl_backend *cpu_open(const qvl_backend_opts *o) {
    if (o->kv_dtype != QVL_KV_BF16 && o->kv_dtype != QVL_KV_FP8) {
        qvl_errorf("kv-dtype: %d is not bf16 (%d) or fp8 (%d)", o->kv_dtype, QVL_KV_BF16, QVL_KV_FP8);
        qvl_error_set_kind(QVL_ERR_INPUT);
        return NULL;
    }
    qvl_backend *b = calloc(1, sizeof *b);
    if (!b) {
        qvl_errorf("%s: out of memory", o->model_dir);
        return NULL;
    }
    if (!(b->model = qvl_model_open(o->model_dir, o->threads))) goto fail;
    qvl_model_set_dump_dir(b->model, o->tuning.dump_dir);
    b->cfg = qvl_model_config(b->model);
    const qvl_config *c = b->cfg;
    int threads = qvl_model_threads(b->model);
    snprintf(b->name, sizeof b->name, "cpu (%d thread%s)", threads, threads == 1 ? "" : "s");

    qvl_backend_limits *L = &b->lim;
    L->max_model_len = o->max_model_len > 0 ? o->max_model_len : 8192;
    if (L->max_model_len > INT_MAX / 2) L->max_model_len = INT_MAX / 2;
    L->max_seqs = o->max_seqs > 0 ? o->max_seqs : CPU_MAX_SEQS;
    L->kv_block_tokens = o->kv_block_tokens > 0 ? o->kv_block_tokens : QVL_KV_BLOCK_TOKENS;
    long per_seq = (L->max_model_len + L->kv_block_tokens - 1) / L->kv_block_tokens;
    if ((long)L->max_seqs * per_seq > INT_MAX / 2) {
        qvl_errorf("batch: %d sequences of %ld tokens are too many KV blocks", L->max_seqs, L->max_model_len);
        goto fail;
    }
    /* Every slot can hold a whole context: block memory is only taken when a sequence is given it. */
    L->kv_blocks = (int)(L->max_seqs * per_seq);
    if (o->kv_blocks > 0 && o->kv_blocks < L->kv_blocks) L->kv_blocks = o->kv_blocks;
    L->token_budget = o->token_budget > 0 ? o->token_budget : CPU_TOKEN_BUDGET;
    if (L->token_budget < L->max_seqs) L->token_budget = L->max_seqs;
    long token_px = (long)c->vision.patch_size * c->vision.spatial_merge_size * c->vision.patch_size *
                    c->vision.spatial_merge_size;
    L->max_image_tokens = o->plan_image_tokens > 0 ? o->plan_image_tokens
                          : o->max_pixels > 0      ? o->max_pixels / token_px
                                                   : L->max_model_len - 1;
    if (L->max_image_tokens > L->max_model_len - 1) L->max_image_tokens = L->max_model_len - 1;
    if (L->max_image_tokens < 1) L->max_image_tokens = 1;
    L->vision_tokens = o->vision_tokens > 0 ? o->vision_tokens : CPU_VISION_TOKENS_MIN;
    if (L->vision_tokens < L->max_image_tokens) L->vision_tokens = L->max_image_tokens;
    L->image_cache_tokens = 4 * L->vision_tokens;
    if (L->image_cache_tokens < L->max_model_len) L->image_cache_tokens = L->max_model_len;

    const int kv = c->text.num_kv_heads * c->text.head_dim;
    /* The default ("bf16", the GPU's element type) keeps the reference's float32 here. */
    b->kv_fp8 = o->kv_dtype == QVL_KV_FP8;
    if (b->kv_fp8 && c->text.head_dim > QVL_ATTN_FP8_MAX_HD) {
        qvl_errorf("kv-dtype: fp8 on the CPU reads heads of at most %d dims, the model has %d", QVL_ATTN_FP8_MAX_HD,
                   c->text.head_dim);
        qvl_error_set_kind(QVL_ERR_UNSUPPORTED);
        goto fail;
    }
    b->elem_bytes = b->kv_fp8 ? 1 : sizeof(float);
    b->block_elems = (size_t)2 * c->text.num_layers * L->kv_block_tokens * kv;
    b->plan.max_model_len = L->max_model_len;
    b->plan.max_image_tokens = L->max_image_tokens;
    b->plan.max_image_pixels = L->max_image_tokens * token_px;
    b->plan.sequences = L->max_seqs;
    b->plan.kv_dtype = b->kv_fp8 ? QVL_PLAN_KV_FP8 : QVL_PLAN_KV_BF16;
    b->plan.kv_cache = (double)L->kv_blocks * b->block_elems * b->elem_bytes / (1 << 20);

    int R = L->token_budget, S = L->max_seqs, V = c->text.vocab_size;
    b->slots = calloc((size_t)S, sizeof *b->slots);
    b->blocks = calloc((size_t)L->kv_blocks, sizeof *b->blocks);
    b->image_embed = calloc((size_t)R, sizeof *b->image_embed);
    b->image_ds = calloc((size_t)R * QVL_MAX_DEEPSTACK, sizeof *b->image_ds);
    b->kv_block = malloc((size_t)R * sizeof *b->kv_block);
    b->kv_row = malloc((size_t)R * sizeof *b->kv_row);
    b->pick_rows = malloc((size_t)R * sizeof *b->pick_rows);
    b->logits = malloc((size_t)S * V * sizeof *b->logits);
    if (!b->slots || !b->blocks || !b->image_embed || !b->image_ds || !b->kv_block || !b->kv_row || !b->pick_rows ||
        !b->logits) {
        qvl_errorf("%s: out of memory for %d sequences", o->model_dir, S);
        qvl_error_set_kind(QVL_ERR_NO_MEMORY);
        goto fail;
    }
    for (int i = 0; i < S; i++)
        if (!(b->slots[i].table = malloc((size_t)per_seq * sizeof *b->slots[i].table))) {
            qvl_errorf("%s: out of memory for %d sequences", o->model_dir, S);
            qvl_error_set_kind(QVL_ERR_NO_MEMORY);
            goto fail;
        }
    if (qvl_cpu_batch_state_init(&b->st, c, R, S, (int)L->max_model_len, threads)) {
        qvl_error_set_kind(QVL_ERR_NO_MEMORY);
        goto fail;
    }
    return b;
fail:
    cpu_close(b);
    return NULL;
}

static const qvl_config *cpu_config(const qvl_backend *b) { return b->cfg; }
static const qvl_mem_plan *cpu_plan(const qvl_backend *b) { return &b->plan; }
static void cpu_limits(const qvl_backend *b, qvl_backend_limits *out) { *out = b->lim; }

static int bad_slot(const qvl_backend *b, int seq) {
    if (seq < 0 || seq >= b->lim.max_seqs) return qvl_errorf("backend: sequence slot %d out of range", seq);
    return 0;
}

static void drop_images(qvl_backend *b, cpu_slot *s) {
    for (int k = 0; k < s->n_images; k++) qvl_vision_out_free(&s->images[k]);
    s->n_images = 0;
    b->image_rows_used -= s->image_rows;
    s->image_rows = 0;
}

static void cpu_seq_free(qvl_backend *b, int seq) {
    if (seq < 0 || seq >= b->lim.max_seqs) return;
    cpu_slot *s = &b->slots[seq];
    drop_images(b, s);
    s->active = 0;
    s->n_blocks = 0;
}

static int cpu_seq_begin(qvl_backend *b, int seq, const qvl_pick_params *p, const double *uniforms, int n_uniforms,
                         const int32_t *prompt, int n_prompt) {
    if (bad_slot(b, seq)) return -1;
    cpu_slot *s = &b->slots[seq];
    cpu_seq_free(b, seq);
    if (n_uniforms < 0 || n_uniforms > b->lim.max_model_len)
        return qvl_errorf("backend: %d uniforms for a context of %ld", n_uniforms, b->lim.max_model_len);
    qvl_sampler_params sp = {p->do_sample, p->temperature, p->top_k, p->top_p, p->repetition_penalty,
                             p->presence_penalty, 0};
    if (!s->sampler && !(s->sampler = qvl_sampler_new(b->cfg->text.vocab_size, &sp)))
        return qvl_errorf("backend: out of memory for a sampler");
    if (!s->uniforms && !(s->uniforms = malloc((size_t)b->lim.max_model_len * sizeof *s->uniforms)))
        return qvl_errorf("backend: out of memory for a random stream");
    qvl_sampler_reset(s->sampler, &sp);
    qvl_sampler_accept_prompt(s->sampler, prompt, n_prompt);
    if (n_uniforms) memcpy(s->uniforms, uniforms, (size_t)n_uniforms * sizeof *uniforms);
    s->n_uniforms = n_uniforms;
    s->next_uniform = 0;
    s->n_prompt = n_prompt;
    s->active = 1;
    return 0;
}

static int cpu_seq_blocks(qvl_backend *b, int seq, const int32_t *blocks, int n_blocks) {
    if (bad_slot(b, seq)) return -1;
    int per_seq = (int)((b->lim.max_model_len + b->lim.kv_block_tokens - 1) / b->lim.kv_block_tokens);
    if (n_blocks < 0 || n_blocks > per_seq)
        return qvl_errorf("backend: a block table of %d blocks (at most %d)", n_blocks, per_seq);
    for (int i = 0; i < n_blocks; i++) {
        int32_t id = blocks[i];
        if (id < 0 || id >= b->lim.kv_blocks) return qvl_errorf("backend: KV block %d out of range", id);
        if (!b->blocks[id] && !(b->blocks[id] = malloc(b->block_elems * b->elem_bytes))) {
            qvl_errorf("KV cache: out of memory for block %d", id);
            qvl_error_set_kind(QVL_ERR_NO_MEMORY);
            return -1;
        }
    }
    memcpy(b->slots[seq].table, blocks, (size_t)n_blocks * sizeof *blocks);
    b->slots[seq].n_blocks = n_blocks;
    return 0;
}

static void cpu_seq_drop_images(qvl_backend *b, int seq) {
    if (seq >= 0 && seq < b->lim.max_seqs) drop_images(b, &b->slots[seq]);
}

static int cpu_encode_images(qvl_backend *b, const qvl_pixel_values *const *pv, const int *seqs, int n) {
    if (n < 1) return 0;
    for (int i = 0; i < n; i++)
        if (bad_slot(b, seqs[i])) return -1;
    qvl_vision_out *out = calloc((size_t)n, sizeof *out);
    if (!out) return qvl_errorf("image: out of memory");
    if (qvl_model_encode_images(b->model, pv, n, out)) {
        free(out);
        return -1;
    }
    /* Room in each slot's list first, so that a failure keeps nothing. */
    int rc = 0;
    for (int i = 0; i < n && !rc; i++) {
        cpu_slot *s = &b->slots[seqs[i]];
        int need = s->n_images + n;
        if (need > s->cap_images) {
            qvl_vision_out *im = realloc(s->images, (size_t)need * sizeof *im);
            if (!im) rc = qvl_errorf("image: out of memory");
            else s->images = im, s->cap_images = need;
        }
    }
    for (int i = 0; i < n; i++) {
        if (rc) {
            qvl_vision_out_free(&out[i]);
            continue;
        }
        cpu_slot *s = &b->slots[seqs[i]];
        s->images[s->n_images++] = out[i];
        s->image_rows += out[i].n_tokens;
        b->image_rows_used += out[i].n_tokens;
    }
    free(out);
    return rc;
}

/* The image feature row r of a slot (merger output, or DeepStack tap `layer`). */
static const float *slot_image_row(const cpu_slot *s, long r, int layer, int D) {
    for (int i = 0; i < s->n_images; i++) {
        if (r < s->images[i].n_tokens) {
            const float *base = layer < 0 ? s->images[i].embeds : s->images[i].deepstack[layer];
            return base + (size_t)r * D;
        }
        r -= s->images[i].n_tokens;
    }
    return NULL;
}

static int cpu_run_batch(qvl_backend *b, const qvl_batch *batch, int32_t *picked, float *logits) {
    const qvl_config *c = b->cfg;
    const int n = batch->n_tokens, D = c->text.hidden_size, V = c->text.vocab_size, bt = b->lim.kv_block_tokens;
    const int n_ds = c->vision.n_deepstack;
    if (n < 1) return 0;
    if (n > b->lim.token_budget) return qvl_errorf("batch: %d tokens exceed the budget of %d", n, b->lim.token_budget);
    qvl_attn_seg *segs = b->st.segs;
    int n_segs = 0, n_pick = 0;
    for (int i = 0; i < n; i++) {
        int seq = batch->seq[i], k = batch->kv_index[i];
        if (bad_slot(b, seq)) return -1;
        cpu_slot *s = &b->slots[seq];
        if (!s->active) return qvl_errorf("batch: row %d belongs to sequence slot %d, which is not in use", i, seq);
        if (batch->token[i] < 0 || batch->token[i] >= V)
            return qvl_errorf("batch: token id %d at row %d is outside the vocabulary of %d", batch->token[i], i, V);
        if (k < 0 || k >= s->n_blocks * bt)
            return qvl_errorf("batch: row %d at cache index %d is beyond its %d KV blocks", i, k, s->n_blocks);
        if (n_segs > 0 && segs[n_segs - 1].table == s->table && i > 0 && batch->seq[i - 1] == seq) {
            qvl_attn_seg *g = &segs[n_segs - 1];
            if (k != g->causal_pos0 + g->n_q)
                return qvl_errorf("batch: rows of sequence slot %d are not consecutive cache indexes", seq);
            g->n_q++;
            g->n_kv++;
        } else {
            segs[n_segs++] = (qvl_attn_seg){.row0 = i, .n_q = 1, .n_kv = k + 1, .causal_pos0 = k, .table = s->table};
        }
        b->kv_block[i] = s->table[k / bt];
        b->kv_row[i] = k % bt;
        int r = batch->image_row[i];
        b->image_embed[i] = NULL;
        if (r >= 0) {
            if (r >= s->image_rows)
                return qvl_errorf("batch: row %d takes image row %d of sequence slot %d, which has %ld", i, r, seq,
                                  s->image_rows);
            b->image_embed[i] = slot_image_row(s, r, -1, D);
            for (int l = 0; l < n_ds; l++) b->image_ds[(size_t)l * n + i] = slot_image_row(s, r, l, D);
        }
        if (batch->pick[i]) {
            if (n_pick >= b->lim.max_seqs) return qvl_errorf("batch: more picks than sequence slots");
            b->pick_rows[n_pick++] = i;
        }
    }
    qvl_cpu_batch_rows rows = {.n = n, .ids = batch->token, .pos = {batch->pos[0], batch->pos[1], batch->pos[2]},
                               .image_embed = b->image_embed, .n_deepstack = n_ds, .kv_block = b->kv_block,
                               .kv_row = b->kv_row, .segs = segs, .n_segs = n_segs, .pick_rows = b->pick_rows,
                               .n_pick = n_pick};
    for (int l = 0; l < n_ds; l++) rows.image_deepstack[l] = b->image_ds + (size_t)l * n;
    /* Parity dumps: a batch of one sequence's prompt rows, named as qvl_seq_prefill names them. */
    const char *dump_dir = qvl_model_dump_dir(b->model), *dump = NULL;
    char suffix[32] = "";
    if (dump_dir && n_segs == 1) {
        const cpu_slot *s = &b->slots[batch->seq[0]];
        if (batch->kv_index[n - 1] < s->n_prompt) {
            if (n < s->n_prompt) snprintf(suffix, sizeof suffix, "@%d", batch->kv_index[0]);
            dump = suffix;
        }
    }
    qvl_cpu_kv_blocks kvb = {b->blocks, bt, b->kv_fp8};
    qvl_cpu_text_forward_batch(qvl_model_pool(b->model), c, &qvl_model_weights(b->model)->text, &b->st, &kvb, &rows,
                               b->logits, dump, dump_dir);
    for (int j = 0; j < n_pick; j++) {
        cpu_slot *s = &b->slots[batch->seq[b->pick_rows[j]]];
        float *lg = b->logits + (size_t)j * V;
        if (logits) memcpy(logits + (size_t)j * V, lg, (size_t)V * sizeof *lg);
        double u = 0;
        if (qvl_sampler_samples(s->sampler))
            u = s->next_uniform < s->n_uniforms ? s->uniforms[s->next_uniform++] : 0.5;
        picked[j] = qvl_sampler_pick_u(s->sampler, lg, u);
        qvl_sampler_accept(s->sampler, picked[j]);
    }
    return 0;
}

static double cpu_peak_mib(const qvl_backend *b) {
    (void)b;
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru)) return 0;
    return (double)ru.ru_maxrss / 1024.0;   /* Linux reports KiB */
}

static int cpu_memory(const qvl_backend *b, qvl_memory_info *out) {
    memset(out, 0, sizeof *out);
    out->peak_mib = cpu_peak_mib(b);
    out->peak_measure = "peak resident set";
    out->note = "";
    return 0;
}

static const char *cpu_device_name(const qvl_backend *b) { return b->name; }

const qvl_backend_ops qvl_cpu_backend_ops = {
    .name = "cpu",
    .devices = cpu_devices,
    .open = cpu_open,
    .close = cpu_close,
    .config = cpu_config,
    .plan = cpu_plan,
    .limits = cpu_limits,
    .seq_begin = cpu_seq_begin,
    .seq_blocks = cpu_seq_blocks,
    .seq_drop_images = cpu_seq_drop_images,
    .seq_free = cpu_seq_free,
    .encode_images = cpu_encode_images,
    .run_batch = cpu_run_batch,
    .peak_mib = cpu_peak_mib,
    .memory = cpu_memory,
    .device_name = cpu_device_name,
};
