/* The "cuda" backend of a CUDA build until the batched CUDA backend (src/backend/cuda/) lands: an
 * adapter over the one-sequence qvl_cuda_model (model_cuda.h), so that the engine never branches
 * on the device. One sequence slot; a prompt runs in one run_batch (the token budget is the whole
 * context), then one decode row per step; the device picks each token (model_cuda.h picking). Its
 * KV cache is the model's own contiguous cache: the block table only counts. The GPU memory meter
 * (NVML) is started before the CUDA context exists and sampled after open and after each request. */
#ifdef QVL_CUDA
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cuda_device.h"
#include "backend/cuda/cuda_nvml.h"
#include "engine/backend.h"
#include "model/model_cuda.h"
#include "util/error.h"

struct qvl_backend {
    qvl_cuda_model *m;
    qvl_backend_limits lim;
    qvl_mem_plan plan;
    qvl_gpu_meter meter;
    const char *context_measure;
    int active, n_prompt, len, n_blocks, images_pending;
};

static int cs_devices(void) { return qvl_cuda_device_count(); }

static void cs_close(qvl_backend *b) {
    if (!b) return;
    qvl_cuda_model_close(b->m);
    free(b);
}

static qvl_backend *cs_open(const qvl_backend_opts *o) {
    if (qvl_cuda_device_count() <= 0) {
        qvl_errorf("cuda: no usable CUDA device");
        qvl_error_set_kind(QVL_ERR_DEVICE);
        return NULL;
    }
    qvl_backend *b = calloc(1, sizeof *b);
    if (!b) {
        qvl_errorf("%s: out of memory", o->model_dir);
        qvl_error_set_kind(QVL_ERR_NO_MEMORY);
        return NULL;
    }
    qvl_cuda_opts co = {.max_model_len = o->max_model_len, .max_pixels = o->max_pixels, .gpu_mem_mib = o->gpu_mem_mib,
                        .tuning = o->tuning, .max_image_tokens = o->plan_image_tokens, .kv_dtype = o->kv_dtype};
    /* The meter's baseline comes before this process's context exists; the context is then
     * created and measured the way the peak will be (NVML), not as device-wide used memory. */
    qvl_gpu_meter_start(&b->meter);
    double ctx = qvl_gpu_context_mib(&b->meter, &b->context_measure);
    if (!(b->m = qvl_cuda_model_open(o->model_dir, &co))) {
        cs_close(b);
        return NULL;
    }
    b->plan = *qvl_cuda_model_plan(b->m);
    if (ctx >= 0 && b->meter.measure != QVL_GPU_MEASURE_NONE) {
        b->plan.total += ctx - b->plan.cuda_context;
        b->plan.cuda_context = ctx;
    } else {
        b->context_measure = "cudaMemGetInfo device used";
    }
    qvl_gpu_meter_sample(&b->meter);
    qvl_backend_limits *L = &b->lim;
    L->max_seqs = 1;
    L->kv_block_tokens = o->kv_block_tokens > 0 ? o->kv_block_tokens : QVL_KV_BLOCK_TOKENS;
    L->max_model_len = b->plan.max_model_len > 0 ? b->plan.max_model_len : o->max_model_len;
    L->kv_blocks = (int)((L->max_model_len + L->kv_block_tokens - 1) / L->kv_block_tokens);
    L->token_budget = (int)L->max_model_len;   /* a prompt runs whole (the model chunks it itself) */
    L->max_image_tokens = qvl_cuda_model_max_image_tokens(b->m);
    if (L->max_image_tokens < 1) L->max_image_tokens = 1;
    L->vision_tokens = L->image_cache_tokens = L->max_image_tokens;
    b->plan.sequences = 1;
    return b;
}

static const qvl_config *cs_config(const qvl_backend *b) { return qvl_cuda_model_config(b->m); }
static const qvl_mem_plan *cs_plan(const qvl_backend *b) { return &b->plan; }
static void cs_limits(const qvl_backend *b, qvl_backend_limits *out) { *out = b->lim; }

static int cs_seq_begin(qvl_backend *b, int seq, const qvl_pick_params *p, const double *uniforms, int n_uniforms,
                        const int32_t *prompt, int n_prompt) {
    (void)prompt;   /* the prefill marks the prompt ids as seen on the device */
    if (seq != 0) return qvl_errorf("backend: sequence slot %d out of range (one slot)", seq);
    qvl_cuda_pick_params pp = {p->do_sample, p->temperature, p->top_k, p->top_p, p->repetition_penalty,
                               p->presence_penalty};
    if (qvl_cuda_set_picking(b->m, &pp, uniforms, n_uniforms)) return -1;
    qvl_cuda_clear_images(b->m);
    b->active = 1;
    b->n_prompt = n_prompt;
    b->len = 0;
    return 0;
}

static int cs_seq_blocks(qvl_backend *b, int seq, const int32_t *blocks, int n_blocks) {
    (void)blocks;
    if (seq != 0) return qvl_errorf("backend: sequence slot %d out of range (one slot)", seq);
    b->n_blocks = n_blocks;
    return 0;
}

static void cs_seq_drop_images(qvl_backend *b, int seq) { (void)b, (void)seq; }

static void cs_seq_free(qvl_backend *b, int seq) {
    if (seq != 0 || !b->active) return;
    b->active = 0;
    qvl_cuda_clear_images(b->m);
    qvl_gpu_meter_sample(&b->meter);   /* after a request: kernels are loaded on first use */
}

static int cs_encode_images(qvl_backend *b, const qvl_pixel_values *const *pv, const int *seqs, int n) {
    for (int i = 0; i < n; i++) {
        if (seqs[i] != 0) return qvl_errorf("backend: sequence slot %d out of range (one slot)", seqs[i]);
        if (qvl_cuda_encode_image(b->m, pv[i])) {
            qvl_error_set_kind(QVL_ERR_INPUT);
            return -1;
        }
    }
    return 0;
}

static int cs_run_batch(qvl_backend *b, const qvl_batch *batch, int32_t *picked, float *logits) {
    const int n = batch->n_tokens;
    if (n < 1) return 0;
    if (!b->active) return qvl_errorf("batch: sequence slot 0 is not in use");
    for (int i = 0; i < n; i++)
        if (batch->seq[i] != 0 || batch->kv_index[i] != b->len + i)
            return qvl_errorf("batch: row %d is not the next token of the one sequence", i);
    int id;
    if (b->len == 0) {
        if (n != b->n_prompt || !batch->pick[n - 1])
            return qvl_errorf("batch: this backend runs a prompt of %d tokens whole (got %d rows)", b->n_prompt, n);
        id = qvl_cuda_prefill(b->m, batch->token, n);
    } else {
        if (n != 1) return qvl_errorf("batch: %d decode rows for one sequence", n);
        id = qvl_cuda_decode(b->m, batch->token[0]);
    }
    if (id < 0) {
        qvl_error_set_kind(QVL_ERR_DEVICE);
        return -1;
    }
    b->len += n;
    picked[0] = id;
    if (logits && qvl_cuda_logits(b->m, logits)) return -1;
    return 0;
}

static double cs_peak_mib(const qvl_backend *b) {
    return b->meter.measure != QVL_GPU_MEASURE_NONE ? b->meter.peak_mib : qvl_cuda_model_peak_mib(b->m);
}

static int cs_memory(const qvl_backend *b, qvl_memory_info *out) {
    memset(out, 0, sizeof *out);
    out->peak_mib = cs_peak_mib(b);
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

static const char *cs_device_name(const qvl_backend *b) { return qvl_cuda_model_device_name(b->m); }

static const qvl_backend_ops OPS = {
    .name = "cuda",
    .devices = cs_devices,
    .open = cs_open,
    .close = cs_close,
    .config = cs_config,
    .plan = cs_plan,
    .limits = cs_limits,
    .seq_begin = cs_seq_begin,
    .seq_blocks = cs_seq_blocks,
    .seq_drop_images = cs_seq_drop_images,
    .seq_free = cs_seq_free,
    .encode_images = cs_encode_images,
    .run_batch = cs_run_batch,
    .peak_mib = cs_peak_mib,
    .memory = cs_memory,
    .device_name = cs_device_name,
};

const qvl_backend_ops *qvl_cuda_single_backend_ops(void);
const qvl_backend_ops *qvl_cuda_single_backend_ops(void) { return &OPS; }
#else
typedef int qvl_no_cuda_single_backend;   /* ISO C wants a translation unit to declare something */
#endif
