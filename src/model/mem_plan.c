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

int qvl_mem_plan_compute_inputs(const qvl_config *cfg, double weight_bytes, const qvl_plan_inputs *in,
                                double cuda_context_mib, qvl_mem_plan *out) {
    memset(out, 0, sizeof *out);
    long max_model_len = in->max_model_len, max_pixels = in->max_pixels;
    if (max_model_len < 2) return qvl_errorf("max-model-len: %ld leaves no room to generate", max_model_len);
    if (weight_bytes <= 0) {
        qvl_param_counts pc;
        if (qvl_param_count(cfg, &pc)) return -1;
        weight_bytes = (double)pc.total * BF16;
    }
    const qvl_text_config *t = &cfg->text;
    const qvl_vision_config *v = &cfg->vision;
    long unit = (long)v->patch_size * v->spatial_merge_size;   /* 32 px per token side */
    long px_per_token = unit * unit;
    long tokens = max_pixels / px_per_token;
    /* The image leaves the text reserve free; a context shorter than the reserve (accepted by every
     * command: model/context_len.h) plans an image as long as the whole context, an upper bound. */
    long room = max_model_len > QVL_PLAN_TEXT_RESERVE ? max_model_len - QVL_PLAN_TEXT_RESERVE : max_model_len;
    if (tokens > room) tokens = room;
    if (in->max_image_tokens > 0) tokens = in->max_image_tokens < max_model_len ? in->max_image_tokens : max_model_len - 1;
    double kvb = in->kv_dtype == QVL_PLAN_KV_FP8 ? 1.0 : (double)BF16;
    long chunk = in->vision_mlp_chunk > 0 ? in->vision_mlp_chunk : (long)QVL_PLAN_VISION_MLP_CHUNK;
    double merge = (double)v->spatial_merge_size * v->spatial_merge_size;
    double n = (double)tokens * merge;   /* patches of the largest image */
    double nh = n < (double)chunk ? n : (double)chunk;   /* rows of the vision MLP's hidden buffer */
    double T = (double)max_model_len, C = max_model_len < QVL_PLAN_PREFILL_CHUNK ? T : QVL_PLAN_PREFILL_CHUNK;
    double D = t->hidden_size, I = t->intermediate_size, hd = t->head_dim;
    double q = (double)t->num_heads * hd, kv = (double)t->num_kv_heads * hd;
    double Dv = v->hidden_size;

    /* The arena's buffers in the order cuda_model.cu lays them out; each piece is counted where the
     * plan shows it. */
    walk vis = {0}, kvc = {0}, ws = {0};
    piece(&ws, 512.0 * F32);                  /* vision rotary inverse frequencies */
    piece(&ws, hd / 2 * F32);                 /* text rotary inverse frequencies */
    /* vision: residual, normed input, qkv (also the F32 pixels, the attention projection's output and
     * the merger hidden), MLP hidden (QVL_PLAN_VISION_MLP_CHUNK rows at most; also the BF16 pixels) */
    piece(&vis, n * Dv * BF16), piece(&vis, n * Dv * BF16), piece(&vis, n * 3 * Dv * BF16);
    piece(&vis, nh * v->intermediate_size * BF16);
    /* merger + deepstack outputs, alive until the prefill has consumed them */
    for (int j = 0; j <= v->n_deepstack; j++) piece(&vis, (double)tokens * D * BF16);
    piece(&kvc, t->num_layers * T * kv * kvb), piece(&kvc, t->num_layers * T * kv * kvb);
    /* prefill chunk: x, y, qkv, attention output, gate|up, SwiGLU product; one row of logits */
    piece(&ws, C * D * BF16), piece(&ws, C * D * BF16), piece(&ws, C * (q + 2 * kv) * BF16);
    piece(&ws, C * q * BF16), piece(&ws, C * 2 * I * BF16), piece(&ws, C * I * BF16);
    piece(&ws, (double)t->vocab_size * BF16);
    /* ids, positions (3 rows), image rows, next id, decode step */
    piece(&ws, T * I32), piece(&ws, 3 * T * I32), piece(&ws, T * I32), piece(&ws, I32), piece(&ws, 2 * I32);
    piece(&ws, attention_partial_bytes(cfg));
    piece(&ws, (double)QVL_PLAN_GEMM_WORKSPACE);
    /* device sampler: state, per-id flags (seen / generated), processed logits, the request's uniforms */
    piece(&ws, QVL_PLAN_PICK_STATE), piece(&ws, (double)t->vocab_size), piece(&ws, (double)t->vocab_size * F32);
    piece(&ws, T * 8);

    out->max_model_len = max_model_len;
    out->max_image_tokens = tokens;
    out->max_image_pixels = tokens * px_per_token;
    out->vision_mlp_chunk = (long)nh;
    out->kv_dtype = in->kv_dtype;
    out->sequences = in->sequences > 0 ? in->sequences : 1;
    out->cuda_context_measured = cuda_context_mib >= 0;
    out->cuda_context = cuda_context_mib >= 0 ? cuda_context_mib : QVL_CUDA_CONTEXT_ESTIMATE_MIB;
    out->cuda_runtime = QVL_CUDA_RUNTIME_ESTIMATE_MIB;
    out->weights = weight_bytes / MiB;
    out->kv_cache = kvc.bytes / MiB;
    out->vision_activations = vis.bytes / MiB;
    /* Each category's walk starts aligned; in the arena the pieces follow one another, so a
     * category's last piece may push the next start by < 256 bytes: far below 0.01 MiB. */
    out->workspace = ws.bytes / MiB + out->cuda_runtime;
    out->total = out->cuda_context + out->weights + out->kv_cache + out->vision_activations + out->workspace;
    return 0;
}

double qvl_mem_plan_arena_mib(const qvl_mem_plan *p) {
    return p->weights + p->kv_cache + p->vision_activations + p->workspace - p->cuda_runtime;
}
