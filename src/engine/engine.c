/* The public engine (include/qvl.h): one request runs image load -> preprocess -> vision -> prefill
 * -> decode loop, on the CPU reference model (docs/model.md section 10). Buffers that live for
 * every token (logits, sampler state) are allocated once at open; per-request buffers (KV cache
 * sized to the request, pixel values, vision output) once per request; the token loop allocates
 * nothing except inside the streaming detokenizer's reused buffer. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "backend/cuda/cuda_device.h"
#include "backend/cuda/cuda_nvml.h"
#include "engine/request.h"
#include "engine/sampler.h"
#include "image/image.h"
#include "model/context_len.h"
#include "model/model.h"
#include "model/model_cuda.h"
#include "qvl.h"
#include "tokenizer/chat.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"
#include "util/file.h"


typedef struct qvl_event_node {
    qvl_event ev;
    struct qvl_event_node *next;
} qvl_event_node;

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
    /* Requests in flight: waiting (submitted, not started), the one running inside qvl_step, and
     * finished events not yet polled. mu guards the lists, the counters and next_id. */
    pthread_mutex_t mu;
    int mu_ok;
    qvl_req *wait_head, *wait_tail, *running;
    qvl_event_node *done_head, *done_tail;
    int n_waiting, max_queue;
    qvl_req_id next_id;
    long long finished, failed, prompt_tokens, generated_tokens;
};

qvl_engine_opts qvl_engine_opts_default(void) {
    qvl_engine_opts o = {0};
    o.device = QVL_DEVICE_AUTO;
    o.tuning = qvl_tuning_default();
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

/* Open fails on the options, the checkpoint, memory or the device: the lower modules record the
 * message, this gives it its code (the one place that reads message text). */
static void classify_open_error(void) {
    if (qvl_error_kind()) return;
    const char *m = qvl_error();
    qvl_error_code c = QVL_ERR_INPUT;
    if (strstr(m, "out of memory") || strstr(m, "does not fit") || strstr(m, "--gpu-mem")) c = QVL_ERR_NO_MEMORY;
    else if (strstr(m, "not supported")) c = QVL_ERR_UNSUPPORTED;
    else if (!strncmp(m, "cuda", 4) || strstr(m, "CUDA")) c = QVL_ERR_DEVICE;
    qvl_error_set_kind(c);
}

qvl_engine *qvl_engine_open(const qvl_engine_opts *opts) {
    qvl_engine_opts o = opts ? *opts : qvl_engine_opts_default();
    if (!o.model_dir || !o.model_dir[0]) {
        qvl_errorf("model: no model folder given");
        qvl_error_set_kind(QVL_ERR_INPUT);
        return NULL;
    }
    if (!qvl_is_dir(o.model_dir)) {
        qvl_errorf("%s: no such model folder", o.model_dir);
        qvl_error_set_kind(QVL_ERR_INPUT);
        return NULL;
    }
    qvl_engine *e = calloc(1, sizeof *e);
    if (!e) {
        qvl_errorf("%s: out of memory", o.model_dir);
        qvl_error_set_kind(QVL_ERR_NO_MEMORY);
        return NULL;
    }
    if (pthread_mutex_init(&e->mu, NULL)) {
        free(e);
        qvl_errorf("%s: cannot create a mutex", o.model_dir);
        qvl_error_set_kind(QVL_ERR_INTERNAL);
        return NULL;
    }
    e->mu_ok = 1;
    e->max_queue = o.max_queue;
    e->threads = o.threads > 0 ? o.threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (e->threads < 1) e->threads = 1;
    /* The default device is CUDA when a GPU is usable, else the CPU (docs/cli.md). */
    if (o.device == QVL_DEVICE_AUTO) o.device = qvl_cuda_device_count() > 0 ? QVL_DEVICE_CUDA : QVL_DEVICE_CPU;
    if (resolve_device(&o, e->threads, e->device_name, sizeof e->device_name)) goto fail;
    if (o.device == QVL_DEVICE_CUDA) {
        /* The arena is planned for the context and the largest image the options admit. */
        long px = o.max_pixels > 0 ? o.max_pixels : 0;
        if (o.max_image_tokens > 0 && (px <= 0 || px > o.max_image_tokens * 1024)) px = o.max_image_tokens * 1024;
        qvl_cuda_opts co = {.max_model_len = o.max_model_len > 0 ? o.max_model_len : QVL_DEFAULT_MAX_MODEL_LEN,
                            .max_pixels = px, .gpu_mem_mib = o.gpu_mem_mib, .tuning = o.tuning,
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
        qvl_model_set_dump_dir(e->model, o.tuning.dump_dir);
        e->cfg = qvl_model_config(e->model);
    }
    if (qvl_context_len(e->cfg, o.max_model_len, &e->max_model_len)) goto fail;   /* the rule every command shares */
    if (resolve_image_params(e->cfg, &o, e->threads, &e->img)) goto fail;
    e->tok = qvl_tokenizer_load_cached(o.model_dir, o.tokenizer_cache_dir);
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
    classify_open_error();
    {
        int code = qvl_error_kind();
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", qvl_error());
        qvl_engine_close(e);
        qvl_errorf("%s", msg);
        qvl_error_set_kind(code);
    }
    return NULL;
}

static void free_events(qvl_event_node *n) {
    while (n) {
        qvl_event_node *next = n->next;
        qvl_result_free(&n->ev.result);
        free(n);
        n = next;
    }
}

void qvl_engine_close(qvl_engine *e) {
    if (!e) return;
    for (qvl_req *r = e->wait_head, *next; r; r = next) {
        next = r->next;
        qvl_req_free(r);
        free(r);
    }
    free_events(e->done_head);
    if (e->mu_ok) pthread_mutex_destroy(&e->mu);
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

/* ---- running one request (one sequence; the batched scheduler replaces this) ---- */

static int is_eos(const qvl_config *cfg, int32_t id) {
    for (int i = 0; i < cfg->gen.n_eos; i++)
        if (cfg->gen.eos_ids[i] == id) return 1;
    return 0;
}

static int cancelled(const qvl_req *r) { return __atomic_load_n(&r->cancelled, __ATOMIC_ACQUIRE); }

/* Runs a prepared request to its end. Returns 0 (out filled), or -1 with r->status/code/error set. */
static int run_one(qvl_engine *e, qvl_req *r, qvl_result *out) {
    memset(out, 0, sizeof *out);
    double t0 = r->t_submit;
    double t_pre = qvl_now_mono();
    int n_img = r->n_images;
    qvl_vision_out *vo = calloc((size_t)n_img + 1, sizeof *vo);
    qvl_seq *seq = NULL;
    qvl_detok_stream *ds = NULL;
    qvl_error_code code = QVL_ERR_INTERNAL;
    int rc = -1;
    if (!vo) {
        qvl_errorf("request: out of memory");
        code = QVL_ERR_NO_MEMORY;
        goto done;
    }
    if (e->gpu) qvl_cuda_clear_images(e->gpu);
    for (int i = 0; i < n_img; i++)
        if (e->gpu ? qvl_cuda_encode_image(e->gpu, &r->pv[i]) : qvl_model_encode_image(e->model, &r->pv[i], &vo[i])) {
            const char *msg = qvl_error();
            if (!strstr(msg, r->images[i].name)) {
                char buf[512];
                snprintf(buf, sizeof buf, "%s", msg);
                qvl_errorf("%s: %s", r->images[i].name, buf);
            }
            code = e->gpu ? QVL_ERR_DEVICE : QVL_ERR_INPUT;
            goto done;
        }
    double t_vis = qvl_now_mono();

    const qvl_gen_opts *g = &r->g;
    int n_ids = r->n_ids;
    long M = e->max_model_len;
    int max_new = g->max_new_tokens;
    if ((long)max_new > M - (long)n_ids) max_new = (int)(M - (long)n_ids);
    out->token_ids = malloc((size_t)max_new * sizeof *out->token_ids);
    if (!e->gpu && !(seq = qvl_seq_new(e->model, n_ids + max_new))) goto done;
    ds = qvl_detok_stream_new(e->tok, 1);
    if (!out->token_ids || !ds) {
        qvl_errorf("request: out of memory");
        code = QVL_ERR_NO_MEMORY;
        goto done;
    }
    qvl_sampler_params sp = qvl_sampler_params_resolve(g, &e->cfg->gen);
    qvl_sampler_reset(e->sampler, &sp);
    qvl_sampler_accept_prompt(e->sampler, r->ids, n_ids);
    /* CUDA: the device picks with the sampler's semantics and the sampler's uniforms (one per
     * sampled token, uploaded once); only the picked id comes back per token. */
    int gpu_id = -1;
    if (e->gpu) {
        qvl_cuda_pick_params pp = {sp.do_sample, sp.temperature, sp.top_k, sp.top_p, sp.repetition_penalty,
                                   sp.presence_penalty};
        int n_uni = sp.do_sample && sp.temperature > 0 ? max_new : 0;
        if (n_uni > e->max_model_len) n_uni = (int)e->max_model_len;
        qvl_sampler_uniforms(e->sampler, e->uniforms, n_uni);
        code = QVL_ERR_DEVICE;
        if (qvl_cuda_set_picking(e->gpu, &pp, e->uniforms, n_uni) || (gpu_id = qvl_cuda_prefill(e->gpu, r->ids, n_ids)) < 0)
            goto done;
    } else if (qvl_seq_prefill(e->model, seq, r->ids, n_ids, n_img ? vo : NULL, n_img, e->logits)) {
        goto done;
    }
    double t_prefill = qvl_now_mono();
    out->finish_reason = QVL_FINISH_LENGTH;
    for (;;) {
        int32_t id = e->gpu ? gpu_id : qvl_sampler_pick(e->sampler, e->logits);
        if (out->n_tokens == 0) out->ttft_s = qvl_now_mono() - t0;
        out->token_ids[out->n_tokens++] = id;
        qvl_sampler_accept(e->sampler, id);
        const char *piece = qvl_detok_stream_push(ds, id);
        if (g->on_token && piece && piece[0]) g->on_token(piece, g->user);
        if (is_eos(e->cfg, id)) {
            out->finish_reason = QVL_FINISH_STOP;
            break;
        }
        if (out->n_tokens >= max_new) break;
        if (cancelled(r)) {   /* the event keeps what was generated so far */
            out->text = qvl_tokenizer_decode(e->tok, out->token_ids, (size_t)out->n_tokens, 1);
            out->prompt_tokens = n_ids;
            out->image_tokens = r->image_tokens;
            qvl_errorf("request %lld: cancelled", (long long)r->id);
            code = QVL_ERR_CANCELLED;
            goto done;
        }
        if (e->gpu) {
            if ((gpu_id = qvl_cuda_decode(e->gpu, id)) < 0) goto done;
        } else if (qvl_seq_decode(e->model, seq, id, e->logits)) {
            goto done;
        }
    }
    const char *rest = qvl_detok_stream_flush(ds);
    if (g->on_token && rest && rest[0]) g->on_token(rest, g->user);
    out->text = qvl_tokenizer_decode(e->tok, out->token_ids, (size_t)out->n_tokens, 1);
    if (!out->text) goto done;
    double t_end = qvl_now_mono();
    out->prompt_tokens = n_ids;
    out->image_tokens = r->image_tokens;
    out->downscaled_from_tokens = r->downscaled_from_tokens;
    out->load_s = r->load_s;
    out->preprocess_s = r->preprocess_s;
    out->vision_s = t_vis - t_pre;
    out->prefill_s = t_prefill - t_vis;
    out->decode_s = t_end - t_prefill;
    out->total_s = t_end - t0;
    rc = 0;
done:
    if (rc) {
        qvl_req_fail(r, code);
        if (code != QVL_ERR_CANCELLED) qvl_result_free(out);
    }
    if (e->gpu) qvl_gpu_meter_sample(&e->meter);   /* after the request: kernels loaded on first use */
    if (ds) qvl_detok_stream_free(ds);
    qvl_seq_free(seq);
    for (int i = 0; vo && i < n_img; i++) qvl_vision_out_free(&vo[i]);
    free(vo);
    return rc;
}

/* ---- many requests in flight ---- */

static int fail_code(qvl_error_code c) {
    qvl_error_set_kind(c);
    return -1;
}

/* Turns a finished request into an event on the done list (mu held). */
static void finish_locked(qvl_engine *e, qvl_req *r, qvl_result *res) {
    qvl_event_node *n = calloc(1, sizeof *n);
    if (n) {
        n->ev.id = r->id;
        n->ev.status = r->status;
        n->ev.code = r->status ? r->code : QVL_ERR_NONE;
        snprintf(n->ev.error, sizeof n->ev.error, "%s", r->status ? r->error : "");
        if (res && (!r->status || r->code == QVL_ERR_CANCELLED)) n->ev.result = *res;
        if (e->done_tail) e->done_tail->next = n;
        else e->done_head = n;
        e->done_tail = n;
    } else if (res) {
        qvl_result_free(res);   /* no room to report it: the result is lost, the engine goes on */
    }
    if (res && r->status && r->code != QVL_ERR_CANCELLED) qvl_result_free(res);
    if (r->status) {
        e->failed++;
    } else {
        e->finished++;
        e->prompt_tokens += res ? res->prompt_tokens : 0;
        e->generated_tokens += res ? res->n_tokens : 0;
    }
    qvl_req_free(r);
    free(r);
}

qvl_req_id qvl_submit(qvl_engine *e, const qvl_request *req, const qvl_gen_opts *g) {
    if (!e) return qvl_errorf("engine: NULL"), fail_code(QVL_ERR_INPUT);
    qvl_req *r = calloc(1, sizeof *r);
    if (!r) return qvl_errorf("request: out of memory"), fail_code(QVL_ERR_NO_MEMORY);
    if (qvl_req_init(r, req, g)) {
        int code = qvl_error_kind();
        qvl_req_free(r);
        free(r);
        return fail_code(code ? code : QVL_ERR_INPUT);
    }
    r->t_submit = qvl_now_mono();
    pthread_mutex_lock(&e->mu);
    if (e->max_queue > 0 && e->n_waiting >= e->max_queue) {
        int n = e->n_waiting;
        pthread_mutex_unlock(&e->mu);
        qvl_req_free(r);
        free(r);
        qvl_errorf("request: the waiting queue is full (%d requests)", n);
        return fail_code(QVL_ERR_QUEUE_FULL);
    }
    r->id = e->next_id++;
    if (e->wait_tail) e->wait_tail->next = r;
    else e->wait_head = r;
    e->wait_tail = r;
    e->n_waiting++;
    qvl_req_id id = r->id;
    pthread_mutex_unlock(&e->mu);
    return id;
}

static qvl_req *pop_waiting_locked(qvl_engine *e) {
    qvl_req *r = e->wait_head;
    if (!r) return NULL;
    e->wait_head = r->next;
    if (!e->wait_head) e->wait_tail = NULL;
    r->next = NULL;
    e->n_waiting--;
    return r;
}

int qvl_step(qvl_engine *e) {
    if (!e) return qvl_errorf("engine: NULL"), fail_code(QVL_ERR_INPUT);
    pthread_mutex_lock(&e->mu);
    qvl_req *r = pop_waiting_locked(e);
    e->running = r;
    pthread_mutex_unlock(&e->mu);
    if (r) {
        qvl_result res = {0};
        qvl_prep_ctx pc = {e->tok, e->img, e->max_model_len};
        if (qvl_req_prepare(r, &pc) == 0) run_one(e, r, &res);
        pthread_mutex_lock(&e->mu);
        e->running = NULL;

        finish_locked(e, r, &res);
        pthread_mutex_unlock(&e->mu);
    }
    pthread_mutex_lock(&e->mu);
    int left = e->n_waiting + (e->running != NULL);
    pthread_mutex_unlock(&e->mu);
    return left;
}

int qvl_poll(qvl_engine *e, qvl_event *ev) {
    if (!e) return 0;
    pthread_mutex_lock(&e->mu);
    qvl_event_node *n = e->done_head;
    if (n) {
        e->done_head = n->next;
        if (!e->done_head) e->done_tail = NULL;
    }
    pthread_mutex_unlock(&e->mu);
    if (!n) return 0;
    *ev = n->ev;
    free(n);
    return 1;
}

/* Takes the event of one id out of the done list (qvl_generate). */
static int take_event(qvl_engine *e, qvl_req_id id, qvl_event *ev) {
    pthread_mutex_lock(&e->mu);
    qvl_event_node *prev = NULL, *n = e->done_head;
    while (n && n->ev.id != id) prev = n, n = n->next;
    if (n) {
        if (prev) prev->next = n->next;
        else e->done_head = n->next;
        if (e->done_tail == n) e->done_tail = prev;
    }
    pthread_mutex_unlock(&e->mu);
    if (!n) return 0;
    *ev = n->ev;
    free(n);
    return 1;
}

int qvl_cancel(qvl_engine *e, qvl_req_id id) {
    if (!e) return qvl_errorf("engine: NULL"), fail_code(QVL_ERR_INPUT);
    pthread_mutex_lock(&e->mu);
    qvl_req *prev = NULL, *r = e->wait_head;
    while (r && r->id != id) prev = r, r = r->next;
    if (r) {   /* waiting: finished at once */
        if (prev) prev->next = r->next;
        else e->wait_head = r->next;
        if (e->wait_tail == r) e->wait_tail = prev;
        e->n_waiting--;
        r->status = -1;
        r->code = QVL_ERR_CANCELLED;
        snprintf(r->error, sizeof r->error, "request %lld: cancelled", (long long)id);
        finish_locked(e, r, NULL);
        pthread_mutex_unlock(&e->mu);
        return 0;
    }
    if (e->running && e->running->id == id) {   /* running: ends at its next token */
        __atomic_store_n(&e->running->cancelled, 1, __ATOMIC_RELEASE);
        pthread_mutex_unlock(&e->mu);
        return 0;
    }
    pthread_mutex_unlock(&e->mu);
    qvl_errorf("request %lld: not in flight", (long long)id);
    return fail_code(QVL_ERR_INPUT);
}

void qvl_engine_stats_get(qvl_engine *e, qvl_engine_stats *out) {
    memset(out, 0, sizeof *out);
    if (!e) return;
    pthread_mutex_lock(&e->mu);
    out->waiting = e->n_waiting;
    out->running = e->running != NULL;
    out->max_batch = 1;
    out->requests_finished = e->finished;
    out->requests_failed = e->failed;
    out->prompt_tokens = e->prompt_tokens;
    out->generated_tokens = e->generated_tokens;
    pthread_mutex_unlock(&e->mu);
}

int qvl_generate(qvl_engine *e, const qvl_request *req, const qvl_gen_opts *g, qvl_result *out) {
    memset(out, 0, sizeof *out);
    qvl_req_id id = qvl_submit(e, req, g);
    if (id < 0) return -1;
    qvl_event ev;
    while (!take_event(e, id, &ev))
        if (qvl_step(e) < 0) return -1;
    if (ev.status) {
        qvl_errorf("%s", ev.error);
        return fail_code(ev.code);
    }
    *out = ev.result;
    return 0;
}

qvl_error_code qvl_last_error_code(void) {
    if (!qvl_error()[0]) return QVL_ERR_NONE;
    int c = qvl_error_kind();
    return c ? (qvl_error_code)c : QVL_ERR_INTERNAL;
}
