/* The CUDA backend table (engine/backend.h) over the batched CUDA path (cuda_batch.h): the model
 * opened batched with its memory plan (KV pool, sequences, token budget, vision batch) inside
 * --gpu-mem, and the NVML meter for the memory report. Without the CUDA build this file is empty
 * and "cuda" is not registered. */
#ifdef QVL_CUDA
#include "backend/cuda/cuda_backend.h"

#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cuda_batch.h"
#include "backend/cuda/cuda_device.h"
#include "backend/cuda/cuda_nvml.h"
#include "util/error.h"

struct qvl_backend {
    qvl_cuda_batch *cb;
    qvl_cuda_model *m;
    qvl_mem_plan plan;        /* the model's plan, its context figure as the meter measured it */
    qvl_gpu_meter meter;
    const char *context_measure;
};

static int devices(void) { return qvl_cuda_device_count(); }

static qvl_backend *open_(const qvl_backend_opts *o) {
    qvl_backend *b = calloc(1, sizeof *b);
    if (!b) {
        qvl_errorf("%s: out of memory", o->model_dir);
        return NULL;
    }
    qvl_cuda_opts co;
    memset(&co, 0, sizeof co);
    co.max_model_len = o->max_model_len;
    co.max_pixels = o->max_pixels;
    co.max_image_tokens = o->plan_image_tokens;
    co.gpu_mem_mib = o->gpu_mem_mib;
    co.kv_dtype = o->kv_dtype;
    co.tuning = o->tuning;
    co.batched = 1;
    co.max_seqs = o->max_seqs;
    co.kv_block_tokens = o->kv_block_tokens > 0 ? o->kv_block_tokens : QVL_KV_BLOCK_TOKENS;
    co.token_budget = o->token_budget;
    co.vision_tokens = o->vision_tokens;
    co.image_cache_tokens = o->image_cache_tokens;
    co.kv_blocks = o->kv_blocks;
    /* The meter's baseline comes before this process's context exists; the context is then
     * created and measured the way the peak will be (NVML). */
    qvl_gpu_meter_start(&b->meter);
    double ctx = qvl_gpu_context_mib(&b->meter, &b->context_measure);
    if (!(b->cb = qvl_cuda_batch_open(o->model_dir, &co))) {
        free(b);
        return NULL;
    }
    b->m = qvl_cuda_batch_model(b->cb);
    b->plan = *qvl_cuda_model_plan(b->m);
    if (ctx >= 0 && b->meter.measure != QVL_GPU_MEASURE_NONE) {
        b->plan.total += ctx - b->plan.cuda_context;
        b->plan.cuda_context = ctx;
    } else {
        b->context_measure = "cudaMemGetInfo device used";
    }
    qvl_gpu_meter_sample(&b->meter);
    return b;
}

static void close_(qvl_backend *b) {
    if (!b) return;
    qvl_cuda_batch_close(b->cb);
    free(b);
}

static const qvl_config *config(const qvl_backend *b) { return qvl_cuda_model_config(b->m); }
static const qvl_mem_plan *plan(const qvl_backend *b) { return &b->plan; }

static void limits(const qvl_backend *b, qvl_backend_limits *out) {
    const qvl_mem_plan *p = &b->plan;
    memset(out, 0, sizeof *out);
    out->max_seqs = p->sequences;
    out->kv_blocks = (int)p->kv_blocks;
    out->kv_block_tokens = p->kv_block_tokens;
    out->token_budget = p->token_budget;
    out->max_model_len = p->max_model_len;
    out->vision_tokens = p->vision_tokens;
    out->image_cache_tokens = p->image_cache_tokens;
    out->max_image_tokens = p->max_image_tokens;
}

static int seq_begin(qvl_backend *b, int seq, const qvl_pick_params *p, const double *uniforms, int n_uniforms,
                     const int32_t *prompt, int n_prompt) {
    qvl_cuda_pick_params pp = {p->do_sample, p->temperature, p->top_k, p->top_p, p->repetition_penalty,
                               p->presence_penalty};
    return qvl_cuda_batch_seq_begin(b->cb, seq, &pp, uniforms, n_uniforms, prompt, n_prompt);
}
static int seq_blocks(qvl_backend *b, int seq, const int32_t *blocks, int n) {
    return qvl_cuda_batch_seq_blocks(b->cb, seq, blocks, n);
}
static void seq_drop_images(qvl_backend *b, int seq) { qvl_cuda_batch_seq_drop_images(b->cb, seq); }
static void seq_free(qvl_backend *b, int seq) {
    qvl_cuda_batch_seq_free(b->cb, seq);
    qvl_gpu_meter_sample(&b->meter);
}
static int encode_images(qvl_backend *b, const qvl_pixel_values *const *pv, const int *seqs, int n) {
    return qvl_cuda_batch_encode(b->cb, pv, seqs, n);
}
static int run_batch(qvl_backend *b, const qvl_batch *batch, int32_t *picked, float *logits) {
    return qvl_cuda_batch_run(b->cb, batch, picked, logits);
}

static double peak_mib(const qvl_backend *b) {
    return b->meter.peak_mib > 0 ? b->meter.peak_mib : qvl_cuda_model_peak_mib(b->m);
}

static int memory(const qvl_backend *b, qvl_memory_info *out) {
    memset(out, 0, sizeof *out);
    out->peak_mib = peak_mib(b);
    out->peak_measure = b->meter.measure != QVL_GPU_MEASURE_NONE ? qvl_gpu_measure_name(b->meter.measure)
                                                                 : "cudaMemGetInfo device used";
    out->note = b->meter.note;
    out->cuda_used_peak_mib = qvl_cuda_model_peak_mib(b->m);
    const qvl_mem_plan *p = &b->plan;
    out->has_plan = 1;
    out->plan_cuda_context = p->cuda_context;
    out->plan_weights = p->weights;
    out->plan_kv_cache = p->kv_cache;
    out->plan_vision_activations = p->vision_activations;
    out->plan_workspace = p->workspace;
    out->plan_total = p->total;
    out->plan_context_measure = b->context_measure ? b->context_measure : "";
    out->arena_mib = qvl_cuda_model_arena_mib(b->m);
    out->plan_max_model_len = p->max_model_len;
    out->plan_max_image_tokens = p->max_image_tokens;
    out->plan_max_image_pixels = p->max_image_pixels;
    return 0;
}

static const char *device_name(const qvl_backend *b) { return qvl_cuda_model_device_name(b->m); }

static const qvl_backend_ops OPS = {
    .name = "cuda",
    .devices = devices,
    .open = open_,
    .close = close_,
    .config = config,
    .plan = plan,
    .limits = limits,
    .seq_begin = seq_begin,
    .seq_blocks = seq_blocks,
    .seq_drop_images = seq_drop_images,
    .seq_free = seq_free,
    .encode_images = encode_images,
    .run_batch = run_batch,
    .peak_mib = peak_mib,
    .memory = memory,
    .device_name = device_name,
};

const qvl_backend_ops *qvl_cuda_backend_ops(void) { return &OPS; }
qvl_cuda_batch *qvl_cuda_backend_batch(qvl_backend *b) { return b->cb; }
#else
typedef int qvl_cuda_backend_absent; /* ISO C: a translation unit is not empty */
#endif
