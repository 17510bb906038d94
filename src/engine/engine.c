/* The public engine (include/qvl.h): one request runs image load -> preprocess -> vision -> prefill
 * -> decode loop, on the CPU reference model (spec/qwen3vl.md section 10). Buffers that live for
 * every token (logits, sampler state) are allocated once at open; per-request buffers (KV cache
 * sized to the request, pixel values, vision output) once per request; the token loop allocates
 * nothing except inside the streaming detokenizer's reused buffer. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "backend/cuda/cuda_device.h"
#include "backend/cuda/cuda_nvml.h"
#include "engine/sampler.h"
#include "image/image.h"
#include "model/model.h"
#include "model/model_cuda.h"
#include "qvl.h"
#include "tokenizer/chat.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"
#include "util/file.h"

/* Default context when --max-model-len is not given: the model's own limit (262144 for the
 * released checkpoints) would let one huge image take minutes on the CPU; 32768 covers any
 * OCRBench image at the default pixel limits. */
enum { QVL_DEFAULT_MAX_MODEL_LEN = 32768 };

struct qvl_engine {
    qvl_model *model;
    qvl_cuda_model *gpu;       /* --device cuda: the CUDA model instead of model */
    const qvl_config *cfg;
    qvl_tokenizer *tok;
    qvl_sampler *sampler;
    float *logits;             /* CPU: [vocab] the last position's logits, picked from on the host */
    double *uniforms;          /* CUDA: [max_model_len] the request's random stream, picked from on the device */
    int vocab;
    int threads;
    long max_model_len;
    qvl_image_params img;      /* pixel limits after the options */
    char device_name[64];
    /* GPU memory: the meter (NVML) sampled after open and after every request, and the plan with
     * the context as that meter measured it. */
    qvl_gpu_meter meter;
    qvl_mem_plan plan;
    const char *context_measure;
};

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

qvl_engine_opts qvl_engine_opts_default(void) {
    qvl_engine_opts o = {0};
    o.device = QVL_DEVICE_AUTO;
    return o;
}

qvl_gen_opts qvl_gen_opts_default(void) {
    qvl_gen_opts g = {0};
    g.max_new_tokens = 128;
    g.temperature = g.top_p = g.repetition_penalty = g.presence_penalty = NAN;
    g.top_k = -1;
    return g;
}

/* The checkpoint's pixel limits, overridden by the options (as `qvl preprocess` applies them). */
static int resolve_image_params(const qvl_config *cfg, const qvl_engine_opts *o, int threads, qvl_image_params *p) {
    *p = qvl_config_image_params(cfg);
    p->threads = threads;
    return qvl_image_params_set_pixels(p, o->min_pixels > 0 ? o->min_pixels : -1, o->max_pixels > 0 ? o->max_pixels : -1,
                                       o->max_image_tokens > 0 ? o->max_image_tokens : -1);
}

static int resolve_device(const qvl_engine_opts *o, int threads, char *name, size_t len) {
    if (o->device == QVL_DEVICE_CUDA) {
        if (qvl_cuda_device_count() <= 0) return qvl_errorf("cuda: no usable CUDA device");
        return 0;
    }
    snprintf(name, len, "cpu (%d thread%s)", threads, threads == 1 ? "" : "s");
    return 0;
}

qvl_engine *qvl_engine_open(const qvl_engine_opts *opts) {
    qvl_engine_opts o = opts ? *opts : qvl_engine_opts_default();
    if (!o.model_dir || !o.model_dir[0]) {
        qvl_errorf("model: no model folder given");
        return NULL;
    }
    if (!qvl_is_dir(o.model_dir)) {
        qvl_errorf("%s: no such model folder", o.model_dir);
        return NULL;
    }
    qvl_engine *e = calloc(1, sizeof *e);
    if (!e) {
        qvl_errorf("%s: out of memory", o.model_dir);
        return NULL;
    }
    e->threads = o.threads > 0 ? o.threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (e->threads < 1) e->threads = 1;
    /* The default device is CUDA when a GPU is usable, else the CPU (spec/cli.md). */
    if (o.device == QVL_DEVICE_AUTO) o.device = qvl_cuda_device_count() > 0 ? QVL_DEVICE_CUDA : QVL_DEVICE_CPU;
    if (resolve_device(&o, e->threads, e->device_name, sizeof e->device_name)) goto fail;
    if (o.device == QVL_DEVICE_CUDA) {
        /* The arena is planned for the context and the largest image the options admit. */
        long px = o.max_pixels > 0 ? o.max_pixels : 0;
        if (o.max_image_tokens > 0 && (px <= 0 || px > o.max_image_tokens * 1024)) px = o.max_image_tokens * 1024;
        qvl_cuda_opts co = {.max_model_len = o.max_model_len > 0 ? o.max_model_len : QVL_DEFAULT_MAX_MODEL_LEN,
                            .max_pixels = px, .gpu_mem_mib = o.gpu_mem_mib,
                            .max_image_tokens = o.plan_image_tokens, .kv_dtype = o.kv_dtype};
        /* The meter's baseline comes before this process's context exists; the context is then
         * created and measured the way the peak will be (NVML), not as device-wide used memory. */
        qvl_gpu_meter_start(&e->meter);
        double ctx = qvl_gpu_context_mib(&e->meter, &e->context_measure);
        if (!(e->gpu = qvl_cuda_model_open(o.model_dir, &co))) goto fail;
        e->plan = *qvl_cuda_model_plan(e->gpu);
        if (ctx >= 0 && e->meter.measure != QVL_GPU_MEASURE_NONE) {
            e->plan.total += ctx - e->plan.cuda_context;
            e->plan.cuda_context = ctx;
        } else {
            e->context_measure = "cudaMemGetInfo device used";
        }
        qvl_gpu_meter_sample(&e->meter);
        e->cfg = qvl_cuda_model_config(e->gpu);
        snprintf(e->device_name, sizeof e->device_name, "%s", qvl_cuda_model_device_name(e->gpu));
    } else {
        if (o.kv_dtype != QVL_KV_BF16) {
            qvl_errorf("kv-dtype: fp8 is for the CUDA path only (the CPU reference keeps F32)");
            goto fail;
        }
        if (!(e->model = qvl_model_open(o.model_dir, e->threads))) goto fail;
        e->cfg = qvl_model_config(e->model);
    }
    long max_pos = e->cfg->text.max_position_embeddings;
    if (o.max_model_len > 0) {
        if (o.max_model_len > max_pos) {
            qvl_errorf("max-model-len: %ld exceeds the model's max_position_embeddings %ld", o.max_model_len, max_pos);
            goto fail;
        }
        e->max_model_len = o.max_model_len;
    } else {
        e->max_model_len = max_pos < QVL_DEFAULT_MAX_MODEL_LEN ? max_pos : QVL_DEFAULT_MAX_MODEL_LEN;
    }
    if (resolve_image_params(e->cfg, &o, e->threads, &e->img)) goto fail;
    e->tok = qvl_tokenizer_load(o.model_dir);
    if (!e->tok) goto fail;
    e->vocab = e->cfg->text.vocab_size;
    qvl_sampler_params sp = qvl_sampler_params_greedy();
    e->sampler = qvl_sampler_new(e->vocab, &sp);
    if (e->gpu)
        e->uniforms = malloc((size_t)e->max_model_len * sizeof *e->uniforms);
    else
        e->logits = malloc((size_t)e->vocab * sizeof *e->logits);
    if (!e->sampler || !(e->gpu ? (void *)e->uniforms : (void *)e->logits)) {
        qvl_errorf("%s: out of memory", o.model_dir);
        goto fail;
    }
    return e;
fail:
    qvl_engine_close(e);
    return NULL;
}

void qvl_engine_close(qvl_engine *e) {
    if (!e) return;
    qvl_sampler_free(e->sampler);
    free(e->logits);
    free(e->uniforms);
    qvl_tokenizer_free(e->tok);
    qvl_model_close(e->model);
    qvl_cuda_model_close(e->gpu);
    free(e);
}

const char *qvl_engine_device_name(const qvl_engine *e) { return e->device_name; }

static double peak_rss_mib(void) {
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru)) return 0;
    return (double)ru.ru_maxrss / 1024.0;   /* Linux reports KiB */
}

double qvl_engine_peak_memory_mib(const qvl_engine *e) {
    if (e && e->gpu) return e->meter.measure != QVL_GPU_MEASURE_NONE ? e->meter.peak_mib : qvl_cuda_model_peak_mib(e->gpu);
    return peak_rss_mib();
}

int qvl_engine_memory(const qvl_engine *e, qvl_memory_info *out) {
    memset(out, 0, sizeof *out);
    if (!e) return -1;
    out->peak_mib = qvl_engine_peak_memory_mib(e);
    out->note = "";
    if (!e->gpu) {
        out->peak_measure = "peak resident set";
        return 0;
    }
    out->peak_measure = e->meter.measure != QVL_GPU_MEASURE_NONE ? qvl_gpu_measure_name(e->meter.measure)
                                                                  : "cudaMemGetInfo device used";
    out->note = e->meter.note;
    out->cuda_used_peak_mib = qvl_cuda_model_peak_mib(e->gpu);
    const qvl_mem_plan *p = &e->plan;
    out->has_plan = 1;
    out->plan_cuda_context = p->cuda_context;
    out->plan_weights = p->weights;
    out->plan_kv_cache = p->kv_cache;
    out->plan_vision_activations = p->vision_activations;
    out->plan_workspace = p->workspace;
    out->plan_total = p->total;
    out->plan_context_measure = e->context_measure ? e->context_measure : "";
    out->arena_mib = qvl_cuda_model_arena_mib(e->gpu);
    out->plan_max_model_len = p->max_model_len;
    out->plan_max_image_tokens = p->max_image_tokens;
    out->plan_max_image_pixels = p->max_image_pixels;
    return 0;
}

void qvl_result_free(qvl_result *r) {
    if (!r) return;
    free(r->text);
    free(r->token_ids);
    r->text = NULL;
    r->token_ids = NULL;
    r->n_tokens = 0;
}

/* ---- one request ---- */

/* Image tokens the preprocessor will produce for a w x h image under p. */
static int plan_image_tokens(const qvl_image *img, const qvl_image_params *p) {
    int factor = p->patch_size * p->merge_size, rh, rw;
    if (qvl_smart_resize(img->height, img->width, factor, p->min_pixels, p->max_pixels, &rh, &rw)) return -1;
    return (rh / factor) * (rw / factor);
}

/* Lowers p->max_pixels until the image takes at most budget tokens. Returns its tokens or -1. */
static int shrink_to_budget(const qvl_image *img, qvl_image_params *p, int budget, const char *name, long max_len) {
    long token_px = (long)p->patch_size * p->merge_size * p->patch_size * p->merge_size;
    if (budget >= 1) {
        p->max_pixels = budget * token_px;
        for (int tries = 0; tries < 200 && p->max_pixels >= token_px; tries++) {
            if (p->min_pixels > p->max_pixels) p->min_pixels = p->max_pixels;
            int n = plan_image_tokens(img, p);
            if (n < 0) return -1;
            if (n <= budget) return n;
            p->max_pixels -= token_px;
        }
    }
    return qvl_errorf("%s: image does not fit max-model-len %ld even when downscaled", name, max_len);
}

/* Prefixes the recorded error with the image's name unless it names it already. */
static void name_error(const char *name) {
    const char *msg = qvl_error();
    if (strstr(msg, name)) return;
    char buf[512];
    snprintf(buf, sizeof buf, "%s", msg);
    qvl_errorf("%s: %s", name, buf);
}

static void request_cleanup(qvl_image *img, qvl_pixel_values *pv, qvl_vision_out *vo, int32_t *ids,
                            qvl_seq *seq, qvl_detok_stream *ds) {
    if (ds) qvl_detok_stream_free(ds);
    if (seq) qvl_seq_free(seq);
    free(ids);
    qvl_vision_out_free(vo);
    qvl_pixel_values_free(pv);
    qvl_image_free(img);
}

static void overflow_error(const char *image, long n, int n_img, long max_len) {
    const char *why = n > max_len ? "exceeds" : "leaves no room to generate within";
    if (image)
        qvl_errorf("%s: prompt of %ld tokens (%d image tokens) %s max-model-len %ld", image, n, n_img, why, max_len);
    else
        qvl_errorf("prompt of %ld tokens %s max-model-len %ld", n, why, max_len);
}

static int is_eos(const qvl_config *cfg, int32_t id) {
    for (int i = 0; i < cfg->gen.n_eos; i++)
        if (cfg->gen.eos_ids[i] == id) return 1;
    return 0;
}

int qvl_generate(qvl_engine *e, const qvl_request *req, const qvl_gen_opts *gopt, qvl_result *out) {
    memset(out, 0, sizeof *out);
    qvl_gen_opts g = gopt ? *gopt : qvl_gen_opts_default();
    double t0 = now_s();
    if (!req || !req->prompt) return qvl_errorf("prompt: no prompt given");
    if (g.max_new_tokens < 1) return qvl_errorf("max-new-tokens: %d is not a positive count", g.max_new_tokens);
    const char *name = req->image_path ? req->image_path : req->image_name ? req->image_name : "image";
    int has_image = req->image_path || req->image_data;

    qvl_image img = {0};
    qvl_pixel_values pv = {0};
    qvl_vision_out vo = {0};
    int32_t *ids = NULL;
    size_t n_ids = 0;
    qvl_seq *seq = NULL;
    qvl_detok_stream *ds = NULL;
#define FAIL()                                                  \
    do {                                                        \
        if (e->gpu) qvl_gpu_meter_sample(&e->meter);            \
        request_cleanup(&img, &pv, &vo, ids, seq, ds);          \
        qvl_result_free(out);                                   \
        return -1;                                              \
    } while (0)

    /* Load the image, then settle its token count so that the prompt fits the context. */
    qvl_image_params ip = e->img;
    int n_img = 0;
    if (has_image) {
        int rc = req->image_path ? qvl_image_load(req->image_path, &img)
                                 : qvl_image_decode(req->image_data, req->image_size, name, &img);
        if (rc) {
            name_error(name);
            FAIL();
        }
        n_img = plan_image_tokens(&img, &ip);
        if (n_img < 0) {
            name_error(name);
            FAIL();
        }
    }
    double t_load = now_s();
    if (qvl_chat_encode_single(e->tok, req->prompt, n_img, &ids, &n_ids)) FAIL();
    long M = e->max_model_len;
    if ((long)n_ids >= M) {   /* at least one generated token must fit */
        int text_len = (int)n_ids - n_img;
        if (!has_image || !g.on_overflow_downscale || text_len >= M - 1) {
            overflow_error(has_image ? name : NULL, (long)n_ids, n_img, M);
            FAIL();
        }
        int before = n_img;
        n_img = shrink_to_budget(&img, &ip, (int)(M - 1 - text_len), name, M);
        if (n_img < 0) {
            name_error(name);
            FAIL();
        }
        free(ids);
        ids = NULL;
        if (qvl_chat_encode_single(e->tok, req->prompt, n_img, &ids, &n_ids)) FAIL();
        out->downscaled_from_tokens = before;
    }

    if (has_image) {
        if (e->gpu && n_img <= qvl_cuda_model_max_image_tokens(e->gpu)) {
            /* BF16 pixels straight into the pinned upload buffer (NULL: F32 as before; an image
             * over the plan goes the F32 way to encode's error) */
            ip.bf16_buf = qvl_cuda_pixel_staging(e->gpu, &ip.bf16_buf_bytes);
            ip.out_bf16 = ip.bf16_buf != NULL;
        }
        if (qvl_image_preprocess(&img, &ip, &pv)) {
            name_error(name);
            FAIL();
        }
        if (pv.image_tokens != n_img) {
            qvl_errorf("%s: preprocessing gave %d image tokens, planned %d", name, pv.image_tokens, n_img);
            FAIL();
        }
    }
    double t_pre = now_s();
    if (e->gpu) qvl_cuda_clear_images(e->gpu);
    if (has_image && (e->gpu ? (ip.out_bf16 ? qvl_cuda_encode_image_bf16(e->gpu, &pv, ip.bf16_buf) : qvl_cuda_encode_image(e->gpu, &pv))
                             : qvl_model_encode_image(e->model, &pv, &vo))) {
        name_error(name);
        FAIL();
    }
    double t_vis = now_s();

    /* Prefill, then pick and decode until eos, max_new_tokens or the end of the context. */
    int max_new = g.max_new_tokens;
    if ((long)max_new > M - (long)n_ids) max_new = (int)(M - (long)n_ids);
    out->token_ids = malloc((size_t)max_new * sizeof *out->token_ids);
    if (!e->gpu && !(seq = qvl_seq_new(e->model, (int)n_ids + max_new))) FAIL();
    ds = qvl_detok_stream_new(e->tok, 1);
    if (!out->token_ids || !ds) {
        qvl_errorf("%s: out of memory for the request", has_image ? name : "prompt");
        FAIL();
    }
    qvl_sampler_params sp = qvl_sampler_params_resolve(&g, &e->cfg->gen);
    qvl_sampler_reset(e->sampler, &sp);
    qvl_sampler_accept_prompt(e->sampler, ids, (int)n_ids);
    /* CUDA: the device picks with the sampler's semantics and the sampler's uniforms (one per
     * sampled token, uploaded once); only the picked id comes back per token. */
    int gpu_id = -1;
    if (e->gpu) {
        qvl_cuda_pick_params pp = {sp.do_sample, sp.temperature, sp.top_k, sp.top_p, sp.repetition_penalty,
                                   sp.presence_penalty};
        int n_uni = sp.do_sample && sp.temperature > 0 ? max_new : 0;
        if (n_uni > e->max_model_len) n_uni = (int)e->max_model_len;
        qvl_sampler_uniforms(e->sampler, e->uniforms, n_uni);
        if (qvl_cuda_set_picking(e->gpu, &pp, e->uniforms, n_uni) || (gpu_id = qvl_cuda_prefill(e->gpu, ids, (int)n_ids)) < 0)
            FAIL();
    } else if (qvl_seq_prefill(e->model, seq, ids, (int)n_ids, has_image ? &vo : NULL, has_image, e->logits))
        FAIL();
    double t_prefill = now_s();
    out->finish_reason = QVL_FINISH_LENGTH;
    for (;;) {
        int32_t id = e->gpu ? gpu_id : qvl_sampler_pick(e->sampler, e->logits);
        if (out->n_tokens == 0) out->ttft_s = now_s() - t0;
        out->token_ids[out->n_tokens++] = id;
        qvl_sampler_accept(e->sampler, id);
        const char *piece = qvl_detok_stream_push(ds, id);
        if (g.on_token && piece && piece[0]) g.on_token(piece, g.user);
        if (is_eos(e->cfg, id)) {
            out->finish_reason = QVL_FINISH_STOP;
            break;
        }
        if (out->n_tokens >= max_new) break;
        if (e->gpu) {
            if ((gpu_id = qvl_cuda_decode(e->gpu, id)) < 0) FAIL();
        } else if (qvl_seq_decode(e->model, seq, id, e->logits))
            FAIL();
    }
    const char *rest = qvl_detok_stream_flush(ds);
    if (g.on_token && rest && rest[0]) g.on_token(rest, g.user);
    out->text = qvl_tokenizer_decode(e->tok, out->token_ids, (size_t)out->n_tokens, 1);
    if (!out->text) FAIL();
    double t_end = now_s();

    out->prompt_tokens = (int)n_ids;
    out->image_tokens = n_img;
    out->load_s = t_load - t0;
    out->preprocess_s = t_pre - t_load;
    out->vision_s = t_vis - t_pre;
    out->prefill_s = t_prefill - t_vis;
    out->decode_s = t_end - t_prefill;
    out->total_s = t_end - t0;
    if (e->gpu) qvl_gpu_meter_sample(&e->meter);   /* after the request: kernels loaded on first use */
    request_cleanup(&img, &pv, &vo, ids, seq, ds);
    return 0;
#undef FAIL
}
