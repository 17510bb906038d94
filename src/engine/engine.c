/* The public engine (include/qvl.h): open a backend (CPU or CUDA, engine/backend.h), queue
 * requests, hand out their events. The scheduler step that runs them is engine/scheduler.c;
 * requests are prepared (images read and preprocessed, prompts tokenized) on worker threads
 * (engine/workers.c). The engine never asks which device it runs on. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/engine_internal.h"
#include "image/image.h"
#include "model/config.h"
#include "model/context_len.h"
#include "util/error.h"
#include "util/file.h"

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

/* The backend of the device asked for; AUTO takes CUDA when this build has it and a device is usable. */
static const qvl_backend_ops *choose_backend(qvl_device d) {
    if (d == QVL_DEVICE_CPU) return qvl_backend_find("cpu");
    if (d == QVL_DEVICE_CUDA) {
        const qvl_backend_ops *ops = qvl_backend_find("cuda");
        if (!ops || ops->devices() <= 0) {   /* a build without CUDA has no usable device either */
            qvl_errorf("cuda: no usable CUDA device");
            qvl_error_set_kind(QVL_ERR_DEVICE);
            return NULL;
        }
        return ops;
    }
    const qvl_backend_ops *cuda = qvl_backend_find("cuda");
    qvl_error_clear();
    if (cuda && cuda->devices() > 0) return cuda;
    return qvl_backend_find("cpu");
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

static qvl_engine *open_fail(qvl_engine *e) {
    classify_open_error();
    int code = qvl_error_kind();
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", qvl_error());
    qvl_engine_close(e);
    qvl_errorf("%s", msg);
    qvl_error_set_kind(code);
    return NULL;
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
    pthread_cond_init(&e->prepared, NULL);
    e->mu_ok = 1;
    e->max_queue = o.max_queue;
    e->threads = o.threads > 0 ? o.threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (e->threads < 1) e->threads = 1;
    if (o.kv_dtype != QVL_KV_BF16 && o.kv_dtype != QVL_KV_FP8) {
        qvl_errorf("kv-dtype: %d is not QVL_KV_BF16 or QVL_KV_FP8", o.kv_dtype);
        qvl_error_set_kind(QVL_ERR_INPUT);
        return open_fail(e);
    }
    /* Both backends run an FP8 KV cache (cpu: kv_fp8.c; cuda: the paged kernels, cuda_kv_fp8.cuh). */
    if (!(e->ops = choose_backend(o.device))) return open_fail(e);

    /* The context and the pixel limits come from the checkpoint's config and the options, before
     * the backend plans its memory for them. */
    qvl_config cfg;
    qvl_image_params img;
    if (qvl_config_load(o.model_dir, &cfg) || qvl_context_len(&cfg, o.max_model_len, &e->max_model_len) ||
        resolve_image_params(&cfg, &o, e->threads, &img))
        return open_fail(e);
    long px = o.max_pixels > 0 ? o.max_pixels : 0;   /* what the old CUDA plan was given: the options' cap */
    if (o.max_image_tokens > 0 && (px <= 0 || px > o.max_image_tokens * 1024)) px = o.max_image_tokens * 1024;
    qvl_backend_opts bo = {.model_dir = o.model_dir, .threads = e->threads, .max_model_len = e->max_model_len,
                           .max_pixels = px > 0 ? px : img.max_pixels, .plan_image_tokens = o.plan_image_tokens,
                           .max_seqs = o.max_batch, .kv_block_tokens = QVL_KV_BLOCK_TOKENS,
                           .gpu_mem_mib = o.gpu_mem_mib, .kv_dtype = o.kv_dtype, .tuning = o.tuning,
                           .kv_blocks = o.kv_blocks, .token_budget = o.token_budget,
                           .vision_tokens = o.vision_tokens, .image_cache_tokens = o.image_cache_tokens};
    if (!(e->be = e->ops->open(&bo))) return open_fail(e);
    e->ops->limits(e->be, &e->lim);
    e->cfg = e->ops->config(e->be);
    snprintf(e->device_name, sizeof e->device_name, "%s", e->ops->device_name(e->be));
    if (e->lim.max_model_len < e->max_model_len) e->max_model_len = e->lim.max_model_len;
    e->prep = (qvl_prep_ctx){NULL, img, e->max_model_len};
    if (!(e->tok = qvl_tokenizer_load_cached(o.model_dir, o.tokenizer_cache_dir))) return open_fail(e);
    e->prep.tok = e->tok;

    int S = e->lim.max_seqs, V = e->cfg->text.vocab_size;
    qvl_sampler_params sp = qvl_sampler_params_greedy();
    if (qvl_kv_pool_init(&e->kv, e->lim.kv_blocks, e->lim.kv_block_tokens, S, e->max_model_len) ||
        qvl_batch_init(&e->batch, e->lim.token_budget))
        return open_fail(e);
    e->streams = qvl_sampler_new(V, &sp);
    e->uniforms = malloc((size_t)e->max_model_len * sizeof *e->uniforms);
    e->picked = malloc((size_t)S * sizeof *e->picked);
    e->slots = calloc((size_t)S, sizeof *e->slots);
    e->admitted = calloc((size_t)S, sizeof *e->admitted);
    e->order = calloc((size_t)S, sizeof *e->order);
    if (!e->streams || !e->uniforms || !e->picked || !e->slots || !e->admitted || !e->order) {
        qvl_errorf("%s: out of memory", o.model_dir);
        qvl_error_set_kind(QVL_ERR_NO_MEMORY);
        return open_fail(e);
    }
    /* Preparation runs ahead of the forward passes on a few threads (each image's resize is itself
     * split over the engine's threads). */
    int n_workers = e->threads / 4;
    if (n_workers < 1) n_workers = 1;
    if (n_workers > 8) n_workers = 8;
    e->lookahead = S + 2 * n_workers;
    if (!(e->workers = qvl_workers_new(n_workers, qvl_engine_prepare_item, e))) return open_fail(e);
    return e;
}

static void free_events(qvl_event_node *n) {
    while (n) {
        qvl_event_node *next = n->next;
        qvl_result_free(&n->ev.result);
        free(n);
        n = next;
    }
}

static void free_req(qvl_req *r) {
    qvl_req_free(r);
    free(r);
}

void qvl_engine_close(qvl_engine *e) {
    if (!e) return;
    qvl_workers_free(e->workers);   /* first: no worker touches a request after this */
    for (qvl_req *r = e->queue_head, *next; r; r = next) {
        next = r->next;
        free_req(r);
    }
    for (int i = 0; e->slots && i < e->lim.max_seqs; i++)
        if (e->slots[i]) free_req(e->slots[i]);
    free_events(e->done_head);
    if (e->mu_ok) {
        pthread_mutex_destroy(&e->mu);
        pthread_cond_destroy(&e->prepared);
    }
    if (e->be) e->ops->close(e->be);
    qvl_kv_pool_free(&e->kv);
    qvl_batch_free(&e->batch);
    qvl_sampler_free(e->streams);
    free(e->uniforms);
    free(e->picked);
    free(e->logits);
    free(e->slots);
    free(e->admitted);
    free(e->order);
    qvl_tokenizer_free(e->tok);
    free(e);
}

const char *qvl_engine_device_name(const qvl_engine *e) { return e->device_name; }

double qvl_engine_peak_memory_mib(const qvl_engine *e) { return e && e->be ? e->ops->peak_mib(e->be) : 0; }

int qvl_engine_memory(const qvl_engine *e, qvl_memory_info *out) {
    memset(out, 0, sizeof *out);
    if (!e) return -1;
    return e->ops->memory(e->be, out);
}

void qvl_result_free(qvl_result *r) {
    if (!r) return;
    free(r->text);
    free(r->token_ids);
    r->text = NULL;
    r->token_ids = NULL;
    r->n_tokens = 0;
}

/* ---- the queue ---- */

static int fail_code(qvl_error_code c) {
    qvl_error_set_kind(c);
    return -1;
}

void qvl_engine_finish_locked(qvl_engine *e, qvl_req *r, qvl_result *res) {
    qvl_event_node *n = calloc(1, sizeof *n);
    int keep = res && (!r->status || r->code == QVL_ERR_CANCELLED);
    if (n) {
        n->ev.id = r->id;
        n->ev.status = r->status;
        n->ev.code = r->status ? r->code : QVL_ERR_NONE;
        snprintf(n->ev.error, sizeof n->ev.error, "%s", r->status ? r->error : "");
        if (keep) {
            n->ev.result = *res;
            memset(res, 0, sizeof *res);
        }
        if (e->done_tail) e->done_tail->next = n;
        else e->done_head = n;
        e->done_tail = n;
    }
    if (r->status) {
        e->failed++;
    } else {
        e->finished++;
        e->prompt_tokens += n ? n->ev.result.prompt_tokens : 0;
        e->generated_tokens += n ? n->ev.result.n_tokens : 0;
    }
    if (res) qvl_result_free(res);   /* not kept (failure), or no room to report it */
    free_req(r);
}

qvl_req_id qvl_submit(qvl_engine *e, const qvl_request *req, const qvl_gen_opts *g) {
    if (!e) return qvl_errorf("engine: NULL"), fail_code(QVL_ERR_INPUT);
    qvl_req *r = calloc(1, sizeof *r);
    if (!r) return qvl_errorf("request: out of memory"), fail_code(QVL_ERR_NO_MEMORY);
    if (qvl_req_init(r, req, g)) {
        int code = qvl_error_kind();
        free_req(r);
        return fail_code(code ? code : QVL_ERR_INPUT);
    }
    r->t_submit = qvl_now_mono();
    r->slot = -1;
    r->state = QVL_REQ_WAITING;
    pthread_mutex_lock(&e->mu);
    int waiting = e->n_queue;
    if (e->max_queue > 0 && waiting >= e->max_queue) {
        pthread_mutex_unlock(&e->mu);
        free_req(r);
        qvl_errorf("request: the waiting queue is full (%d requests)", waiting);
        return fail_code(QVL_ERR_QUEUE_FULL);
    }
    r->id = e->next_id++;
    if (e->queue_tail) e->queue_tail->next = r;
    else e->queue_head = r;
    e->queue_tail = r;
    e->n_queue++;
    qvl_req_id id = r->id;
    pthread_mutex_unlock(&e->mu);
    return id;
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
    qvl_req *prev = NULL, *r = e->queue_head;
    while (r && r->id != id) prev = r, r = r->next;
    if (r && r->state != QVL_REQ_PREPARING) {   /* waiting (or prepared): finished at once */
        if (prev) prev->next = r->next;
        else e->queue_head = r->next;
        if (e->queue_tail == r) e->queue_tail = prev;
        e->n_queue--;
        if (r->state == QVL_REQ_READY) qvl_engine_unready_locked(e, r);
        r->status = -1;
        r->code = QVL_ERR_CANCELLED;
        snprintf(r->error, sizeof r->error, "request %lld: cancelled", (long long)id);
        qvl_engine_finish_locked(e, r, NULL);
        pthread_mutex_unlock(&e->mu);
        return 0;
    }
    if (!r)   /* running: ends before its next token, at the step in progress or the next one */
        for (int i = 0; i < e->lim.max_seqs && !r; i++)
            if (e->slots[i] && e->slots[i]->id == id) r = e->slots[i];
    if (r) {   /* preparing or running */
        __atomic_store_n(&r->cancelled, 1, __ATOMIC_RELEASE);
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
    out->waiting = e->n_queue;
    out->running = e->n_running;
    out->max_batch = e->lim.max_seqs;
    out->kv_blocks_total = e->kv.n_blocks;
    out->kv_blocks_used = qvl_kv_pool_used(&e->kv);
    out->kv_blocks_peak = qvl_kv_pool_high_water(&e->kv);
    out->kv_block_tokens = e->kv.block_tokens;
    out->requests_finished = e->finished;
    out->requests_failed = e->failed;
    out->prompt_tokens = e->prompt_tokens;
    out->generated_tokens = e->generated_tokens;
    out->wait_s = e->time.wait_s;
    out->vision_s = e->time.vision_s;
    out->prefill_steps_s = e->time.prefill_steps_s;
    out->decode_steps_s = e->time.decode_steps_s;
    out->vision_passes = e->time.vision_passes;
    out->prefill_steps = e->time.prefill_steps;
    out->decode_steps = e->time.decode_steps;
    out->step_rows = e->time.step_rows;
    pthread_mutex_unlock(&e->mu);
}

int qvl_generate(qvl_engine *e, const qvl_request *req, const qvl_gen_opts *g, qvl_result *out) {
    memset(out, 0, sizeof *out);
    qvl_req_id id = qvl_submit(e, req, g);
    if (id < 0) return -1;
    qvl_event ev;
    for (;;) {
        if (take_event(e, id, &ev)) break;
        if (qvl_step(e) < 0) {   /* the engine failed: every request in flight got the error */
            if (take_event(e, id, &ev)) break;
            return -1;
        }
    }
    if (ev.status) {
        qvl_result_free(&ev.result);
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
