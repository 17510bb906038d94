#include "model/mem_plan.h"

#include <string.h>

#include "model/tensor_check.h"
#include "util/error.h"

static const double MiB = 1048576.0;
enum { BF16 = 2, F32 = 4, I32 = 4 };

/* The CUDA backend hands out its arena in 256-byte aligned pieces (cuda_model.cu, take()); the
 * plan adds the pieces up the same way so that its arena part is the arena to the byte. */
typedef struct {
    double bytes;
} walk;
static void piece(walk *w, double bytes) {
    double off = (double)(((unsigned long long)w->bytes + 255ULL) & ~255ULL);
    w->bytes = off + bytes;
}

/* Decode attention's split-key scratch: kv heads x QVL_PLAN_ATT_SPLITS x QVL_PLAN_ATT_ROWS rows of
 * head_dim + 2 floats (qvl_attention_partial_floats), for the larger of the text and vision heads. */
static double attention_partial_bytes(const qvl_config *c) {
    int hd = c->text.head_dim, vhd = c->vision.hidden_size / c->vision.num_heads;
    int d = hd > vhd ? hd : vhd;
    return (double)c->text.num_kv_heads * QVL_PLAN_ATT_SPLITS * QVL_PLAN_ATT_ROWS * (d + 2) * F32;
}

int qvl_mem_plan_compute(const qvl_config *cfg, double weight_bytes, long max_model_len, long max_pixels,
                         double cuda_context_mib, qvl_mem_plan *out) {
    qvl_plan_inputs in = {.max_model_len = max_model_len, .max_pixels = max_pixels};
    return qvl_mem_plan_compute_inputs(cfg, weight_bytes, &in, cuda_context_mib, out);
}

/* What the inputs resolve to: the largest image, the vision rows, the MLP chunk, the prefill rows. */
typedef struct {
    long tokens;        /* the largest single image, tokens */
    double n, nh;       /* vision rows (patches of one pass), MLP hidden rows */
    double C;           /* rows of the text activations (prefill chunk, or the token budget) */
    long vision_tokens, cache_tokens, blocks_per_seq;
    int block, budget, seqs, batched;
} resolved;

static int resolve(const qvl_config *cfg, const qvl_plan_inputs *in, resolved *r) {
    memset(r, 0, sizeof *r);
    long max_model_len = in->max_model_len, max_pixels = in->max_pixels;
    if (max_model_len < 2) return qvl_errorf("max-model-len: %ld leaves no room to generate", max_model_len);
    const qvl_vision_config *v = &cfg->vision;
    long unit = (long)v->patch_size * v->spatial_merge_size;   /* 32 px per token side */
    long tokens = max_pixels / (unit * unit);
    /* The image leaves the text reserve free; a context shorter than the reserve (accepted by every
     * command: model/context_len.h) plans an image as long as the whole context, an upper bound. */
    long room = max_model_len > QVL_PLAN_TEXT_RESERVE ? max_model_len - QVL_PLAN_TEXT_RESERVE : max_model_len;
    if (tokens > room) tokens = room;
    if (in->max_image_tokens > 0) tokens = in->max_image_tokens < max_model_len ? in->max_image_tokens : max_model_len - 1;
    if (tokens < 1) tokens = 1;
    r->tokens = tokens;
    double merge = (double)v->spatial_merge_size * v->spatial_merge_size;
    long chunk = in->vision_mlp_chunk > 0 ? in->vision_mlp_chunk : (long)QVL_PLAN_VISION_MLP_CHUNK;
    r->batched = in->kv_blocks > 0;
    r->seqs = in->sequences > 0 ? in->sequences : 1;
    if (r->batched) {
        r->block = in->kv_block_tokens > 0 ? in->kv_block_tokens : QVL_PLAN_KV_BLOCK_TOKENS;
        r->budget = in->token_budget > 0 ? in->token_budget : QVL_PLAN_TOKEN_BUDGET;
        if (r->budget < r->seqs) r->budget = r->seqs;   /* one decode row of every sequence */
        r->vision_tokens = in->vision_tokens > 0 ? in->vision_tokens : QVL_PLAN_VISION_TOKENS;
        if (r->vision_tokens < tokens) r->vision_tokens = tokens;
        r->cache_tokens = in->image_cache_tokens > 0 ? in->image_cache_tokens : 2 * r->vision_tokens;
        if (r->cache_tokens < r->vision_tokens) r->cache_tokens = r->vision_tokens;
        r->blocks_per_seq = qvl_plan_blocks_per_seq(max_model_len, r->block);
        r->C = r->budget;
        r->n = (double)r->vision_tokens * merge;
    } else {
        int pc = in->prefill_chunk > 0 ? in->prefill_chunk : QVL_PLAN_PREFILL_CHUNK;
        r->C = max_model_len < pc ? (double)max_model_len : pc;
        r->n = (double)tokens * merge;
        r->cache_tokens = tokens;
    }
    r->nh = r->n < (double)chunk ? r->n : (double)chunk;
    return 0;
}

long qvl_plan_blocks_per_seq(long max_model_len, int kv_block_tokens) {
    return (max_model_len + kv_block_tokens - 1) / kv_block_tokens;
}
long qvl_plan_batch_in_ints(int token_budget, int sequences, long blocks_per_seq) {
    return 9L * token_budget + 3L * sequences + (long)sequences * blocks_per_seq;
}

int qvl_mem_plan_buffers(const qvl_config *cfg, const qvl_plan_inputs *in, qvl_plan_buf *out) {
    resolved r;
    if (resolve(cfg, in, &r)) return -1;
    const qvl_text_config *t = &cfg->text;
    const qvl_vision_config *v = &cfg->vision;
    double kvb = in->kv_dtype == QVL_PLAN_KV_FP8 ? 1.0 : (double)BF16;
    double T = (double)in->max_model_len, C = r.C, S = r.batched ? r.seqs : 1, V = t->vocab_size;
    double D = t->hidden_size, I = t->intermediate_size, hd = t->head_dim;
    double q = (double)t->num_heads * hd, kv = (double)t->num_kv_heads * hd, Dv = v->hidden_size;
    int k = 0;
#define BUF(i, cat, b) (out[k].id = (i), out[k].category = (cat), out[k].bytes = (b), k++)
    enum { VIS = QVL_PLAN_CAT_VISION, KV = QVL_PLAN_CAT_KV, WS = QVL_PLAN_CAT_WORKSPACE };
    BUF(QVL_BUF_VIS_INV_FREQ, WS, 512.0 * F32);   /* vision rotary inverse frequencies */
    BUF(QVL_BUF_TXT_INV_FREQ, WS, hd / 2 * F32);  /* text rotary inverse frequencies */
    /* vision: residual, normed input, qkv (also the F32 pixels, the attention projection's output and
     * the merger hidden), MLP hidden (QVL_PLAN_VISION_MLP_CHUNK rows at most; also the BF16 pixels) */
    BUF(QVL_BUF_VX, VIS, r.n * Dv * BF16), BUF(QVL_BUF_VY, VIS, r.n * Dv * BF16);
    BUF(QVL_BUF_VQKV, VIS, r.n * 3 * Dv * BF16), BUF(QVL_BUF_VHID, VIS, r.nh * v->intermediate_size * BF16);
    /* merger + deepstack outputs, alive until the prefill has consumed them (batched: the image cache) */
    for (int j = 0; j <= v->n_deepstack; j++) BUF(QVL_BUF_IMG + j, VIS, (double)r.cache_tokens * D * BF16);
    /* KV: one sequence's whole context, or the pool of blocks */
    double kv_rows = r.batched ? (double)in->kv_blocks * r.block : T;
    BUF(QVL_BUF_K_CACHE, KV, t->num_layers * kv_rows * kv * kvb), BUF(QVL_BUF_V_CACHE, KV, t->num_layers * kv_rows * kv * kvb);
    /* text rows (prefill chunk / token budget): x, y, qkv, attention output, gate|up, SwiGLU product;
     * logits of one row (batched: of every sequence's picked row) */
    BUF(QVL_BUF_X, WS, C * D * BF16), BUF(QVL_BUF_Y, WS, C * D * BF16), BUF(QVL_BUF_QKV, WS, C * (q + 2 * kv) * BF16);
    BUF(QVL_BUF_ATT, WS, C * q * BF16), BUF(QVL_BUF_GU, WS, C * 2 * I * BF16), BUF(QVL_BUF_H, WS, C * I * BF16);
    BUF(QVL_BUF_LOGITS, WS, (r.batched ? S : 1) * V * BF16);
    if (!r.batched) {
        /* ids, positions (3 rows), image rows, next id, decode step */
        BUF(QVL_BUF_IDS, WS, T * I32), BUF(QVL_BUF_POS, WS, 3 * T * I32), BUF(QVL_BUF_VIS, WS, T * I32);
        BUF(QVL_BUF_NEXT, WS, I32), BUF(QVL_BUF_STEP, WS, 2 * I32);
        BUF(QVL_BUF_ATT_PARTIAL, WS, attention_partial_bytes(cfg));
    } else {
        /* decode attention's split-key partials: sequences x query heads x splits x (head_dim + 2) */
        BUF(QVL_BUF_ATT_PARTIAL, WS, S * t->num_heads * QVL_PLAN_DEC_SPLITS * (hd + 2) * F32);
    }
    BUF(QVL_BUF_GEMM_WS, WS, (double)QVL_PLAN_GEMM_WORKSPACE);
    /* device sampler: state, per-id flags (seen / generated), processed logits, the request's uniforms
     * (batched: per sequence, one processed-logits row shared: the picks run one after another) */
    BUF(QVL_BUF_PICK_STATE, WS, S * QVL_PLAN_PICK_STATE), BUF(QVL_BUF_PICK_FLAGS, WS, S * V);
    BUF(QVL_BUF_PICK_WORK, WS, V * F32), BUF(QVL_BUF_PICK_UNIFORMS, WS, S * T * 8);
    /* the counters of the kernels whose last block merges (decode attention, one-row argmax) */
    BUF(QVL_BUF_SYNC, WS, (double)QVL_PLAN_SYNC_BYTES);
    if (r.batched) {
        BUF(QVL_BUF_GATHER_K, WS, T * kv * BF16), BUF(QVL_BUF_GATHER_V, WS, T * kv * BF16);
        BUF(QVL_BUF_BATCH_IN, WS, (double)qvl_plan_batch_in_ints(r.budget, r.seqs, r.blocks_per_seq) * I32);
    }
#undef BUF
    return k;
}

int qvl_mem_plan_compute_inputs(const qvl_config *cfg, double weight_bytes, const qvl_plan_inputs *in,
                                double cuda_context_mib, qvl_mem_plan *out) {
    memset(out, 0, sizeof *out);
    if (weight_bytes <= 0) {
        qvl_param_counts pc;
        if (qvl_param_count(cfg, &pc)) return -1;
        weight_bytes = (double)pc.total * BF16;
    }
    resolved r;
    qvl_plan_buf bufs[QVL_BUF_COUNT];
    int nb = qvl_mem_plan_buffers(cfg, in, bufs);
    if (nb < 0 || resolve(cfg, in, &r)) return -1;
    /* Each category's walk starts aligned; in the arena the pieces follow one another, so a
     * category's last piece may push the next start by < 256 bytes: far below 0.01 MiB. */
    walk cat[3] = {{0}, {0}, {0}};
    for (int i = 0; i < nb; i++) piece(&cat[bufs[i].category], bufs[i].bytes);
    long unit = (long)cfg->vision.patch_size * cfg->vision.spatial_merge_size;
    out->max_model_len = in->max_model_len;
    out->max_image_tokens = r.tokens;
    out->max_image_pixels = r.tokens * unit * unit;
    out->vision_mlp_chunk = (long)r.nh;
    out->kv_dtype = in->kv_dtype;
    out->sequences = r.seqs;
    if (r.batched) {
        out->kv_blocks = in->kv_blocks;
        out->kv_block_tokens = r.block;
        out->token_budget = r.budget;
        out->vision_tokens = r.vision_tokens;
        out->image_cache_tokens = r.cache_tokens;
    }
    out->cuda_context_measured = cuda_context_mib >= 0;
    out->cuda_context = cuda_context_mib >= 0 ? cuda_context_mib : QVL_CUDA_CONTEXT_ESTIMATE_MIB;
    out->cuda_runtime = QVL_CUDA_RUNTIME_ESTIMATE_MIB;
    out->weights = weight_bytes / MiB;
    out->kv_cache = cat[QVL_PLAN_CAT_KV].bytes / MiB;
    out->vision_activations = cat[QVL_PLAN_CAT_VISION].bytes / MiB;
    out->workspace = cat[QVL_PLAN_CAT_WORKSPACE].bytes / MiB + out->cuda_runtime;
    out->total = out->cuda_context + out->weights + out->kv_cache + out->vision_activations + out->workspace;
    return 0;
}

int qvl_mem_plan_batched(const qvl_config *cfg, double weight_bytes, qvl_plan_inputs *in, double cuda_context_mib,
                         double cap_mib, qvl_mem_plan *out) {
    const qvl_text_config *t = &cfg->text;
    int block = in->kv_block_tokens > 0 ? in->kv_block_tokens : QVL_PLAN_KV_BLOCK_TOKENS;
    in->kv_block_tokens = block;
    long per_seq = qvl_plan_blocks_per_seq(in->max_model_len, block);
    double kvb = in->kv_dtype == QVL_PLAN_KV_FP8 ? 1.0 : (double)BF16;
    double block_mib = 2.0 * t->num_layers * block * (double)t->num_kv_heads * t->head_dim * kvb / MiB;
    if (cap_mib <= 0 && in->kv_blocks > 0 && in->sequences > 0) {
        cap_mib = 1e15;   /* no cap, the pool and the slots given (a data plan: eval/plan_fit.h): as asked */
    } else if (cap_mib <= 0) {   /* no cap given: what one request at a time took */
        qvl_plan_inputs one = *in;
        one.kv_blocks = 0, one.sequences = 1;
        qvl_mem_plan p1;
        if (qvl_mem_plan_compute_inputs(cfg, weight_bytes, &one, cuda_context_mib, &p1)) return -1;
        cap_mib = p1.total;
        one = *in;   /* plus the slots asked for (or the default's) beside one whole context */
        one.sequences = in->sequences > 0 ? in->sequences : QVL_PLAN_DEFAULT_SEQS, one.kv_blocks = per_seq;
        if (qvl_mem_plan_compute_inputs(cfg, weight_bytes, &one, cuda_context_mib, &p1)) return -1;
        if (p1.total > cap_mib) cap_mib = p1.total;
    }
    int auto_seqs = in->sequences <= 0;
    long want_blocks = in->kv_blocks;
    if (auto_seqs) {
        /* the pool with one sequence's fixed parts chooses the sequences */
        qvl_plan_inputs x = *in;
        x.sequences = 1, x.kv_blocks = 1;
        if (qvl_mem_plan_compute_inputs(cfg, weight_bytes, &x, cuda_context_mib, out)) return -1;
        long fit = (long)((cap_mib - (out->total - out->kv_cache)) / block_mib);
        long s = fit * block / QVL_PLAN_TEXT_RESERVE;
        in->sequences = s < 1 ? 1 : s > QVL_PLAN_MAX_SEQS ? QVL_PLAN_MAX_SEQS : (int)s;
    }
    for (;;) {
        qvl_plan_inputs x = *in;
        x.kv_blocks = 1;
        if (qvl_mem_plan_compute_inputs(cfg, weight_bytes, &x, cuda_context_mib, out)) return -1;
        double fixed = out->total - out->kv_cache;
        long fit = (long)((cap_mib - fixed) / block_mib);
        long blocks = want_blocks > 0 ? want_blocks : fit;
        long most = per_seq * (long)x.sequences;   /* more than every slot's whole context is never used */
        if (blocks > most) blocks = most;
        if (fit < per_seq && auto_seqs && in->sequences > 1) {   /* fewer slots leave room for one sequence */
            in->sequences /= 2;
            continue;
        }
        if (blocks < per_seq || (want_blocks > 0 && fixed + blocks * block_mib > cap_mib)) {
            if (want_blocks > 0 && blocks >= per_seq)
                return qvl_errorf("gpu-mem: %ld KV blocks need %.0f MiB beside the fixed %.0f MiB, above %.0f MiB", blocks,
                                  blocks * block_mib, fixed, cap_mib);
            if (fit <= 0)
                return qvl_errorf("gpu-mem: %.0f MiB is below the plan's fixed %.0f MiB (context %.0f + weights %.0f + "
                                  "vision %.0f + workspace %.0f), and one sequence of %ld tokens needs %ld KV blocks "
                                  "(%.0f MiB) more; raise --gpu-mem or lower --max-model-len or --max-pixels",
                                  cap_mib, fixed, out->cuda_context, out->weights, out->vision_activations,
                                  out->workspace, in->max_model_len, per_seq, per_seq * block_mib);
            return qvl_errorf("gpu-mem: %.0f MiB hold %ld KV blocks after the fixed %.0f MiB (context %.0f + weights %.0f "
                              "+ vision %.0f + workspace %.0f) but one sequence of %ld tokens needs %ld; lower "
                              "--max-model-len or --max-pixels",
                              cap_mib, fit > 0 ? fit : 0, fixed, out->cuda_context, out->weights, out->vision_activations,
                              out->workspace, in->max_model_len, per_seq);
        }
        in->kv_blocks = blocks;
        break;
    }
    return qvl_mem_plan_compute_inputs(cfg, weight_bytes, in, cuda_context_mib, out);
}

double qvl_mem_plan_arena_mib(const qvl_mem_plan *p) {
    return p->weights + p->kv_cache + p->vision_activations + p->workspace - p->cuda_runtime;
}
