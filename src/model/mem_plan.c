#include "model/mem_plan.h"

#include <string.h>

#include "model/tensor_check.h"
#include "util/error.h"

static const double MiB = 1048576.0;
static const double BF16 = 2.0, F32 = 4.0;

/* Peak activation bytes of the vision tower for n patches. A block keeps the residual stream, the
 * normed input, qkv and the MLP hidden alive at once; attention is flash-style (O(n) softmax
 * statistics, no n x n scores); rotary tables are F32. The mergers then hold their 4*D_v inputs and
 * the main + deepstack outputs, which stay alive until the prefill has consumed them. */
static double vision_bytes(const qvl_config *c, double n) {
    const qvl_vision_config *v = &c->vision;
    double hd = (double)v->hidden_size / v->num_heads;
    double block = n * (2.0 * v->hidden_size + 3.0 * v->hidden_size + v->intermediate_size) * BF16;
    double attn_stats = n * v->num_heads * 2.0 * F32;
    double rope = n * hd * 2.0 * F32;
    double merge = v->spatial_merge_size * v->spatial_merge_size;
    double tokens = n / merge;
    double merger = tokens * 2.0 * merge * v->hidden_size * BF16;
    double outputs = tokens * (1.0 + v->n_deepstack) * c->text.hidden_size * BF16;
    return block + attn_stats + rope + merger + outputs;
}

/* Text prefill in chunks of QVL_PLAN_PREFILL_CHUNK tokens: residual, normed input, q, attention
 * output, gate, up and the SwiGLU product per token; F32 logits for one position; the sampler's
 * scratch; a 32 MiB cuBLASLt workspace. */
static double workspace_bytes(const qvl_config *c, long max_model_len) {
    const qvl_text_config *t = &c->text;
    double chunk = max_model_len < QVL_PLAN_PREFILL_CHUNK ? (double)max_model_len : QVL_PLAN_PREFILL_CHUNK;
    double q = (double)t->num_heads * t->head_dim;
    double per_tok = (2.0 * t->hidden_size + 2.0 * q + 3.0 * t->intermediate_size) * BF16;
    double logits = (double)t->vocab_size * (F32 + F32);
    return chunk * per_tok + logits + 32.0 * MiB;
}

int qvl_mem_plan_compute(const qvl_config *cfg, double weight_bytes, long max_model_len, long max_pixels,
                         double cuda_context_mib, qvl_mem_plan *out) {
    memset(out, 0, sizeof *out);
    if (max_model_len <= QVL_PLAN_TEXT_RESERVE)
        return qvl_errorf("max-model-len: %ld leaves no room for an image (at least %d tokens are needed)",
                          max_model_len, QVL_PLAN_TEXT_RESERVE + 1);
    if (weight_bytes <= 0) {
        qvl_param_counts pc;
        if (qvl_param_count(cfg, &pc)) return -1;
        weight_bytes = (double)pc.total * BF16;
    }
    const qvl_text_config *t = &cfg->text;
    long unit = (long)cfg->vision.patch_size * cfg->vision.spatial_merge_size;   /* 32 px per token side */
    long px_per_token = unit * unit;
    long tokens = max_pixels / px_per_token;
    if (tokens > max_model_len - QVL_PLAN_TEXT_RESERVE) tokens = max_model_len - QVL_PLAN_TEXT_RESERVE;
    double merge = cfg->vision.spatial_merge_size * cfg->vision.spatial_merge_size;

    out->max_model_len = max_model_len;
    out->max_image_tokens = tokens;
    out->max_image_pixels = tokens * px_per_token;
    out->cuda_context_measured = cuda_context_mib >= 0;
    out->cuda_context = cuda_context_mib >= 0 ? cuda_context_mib : QVL_CUDA_CONTEXT_ESTIMATE_MIB;
    out->weights = weight_bytes / MiB;
    out->kv_cache = (double)t->num_layers * 2.0 * t->num_kv_heads * t->head_dim * (double)max_model_len * BF16 / MiB;
    out->vision_activations = vision_bytes(cfg, (double)tokens * merge) / MiB;
    out->workspace = workspace_bytes(cfg, max_model_len) / MiB;
    out->total = out->cuda_context + out->weights + out->kv_cache + out->vision_activations + out->workspace;
    return 0;
}
