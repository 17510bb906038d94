/* The engine's state, shared by engine.c (the public API: open, submit, poll, cancel, stats) and
 * scheduler.c (qvl_step). Locking: mu guards the queue, the slot table's membership, the done
 * list and the counters; the backend, the KV pool and the batch belong to the thread inside
 * qvl_step (no lock held while the backend runs or a token callback runs). */
#ifndef QVL_ENGINE_INTERNAL_H
#define QVL_ENGINE_INTERNAL_H
#include <pthread.h>

#include "engine/backend.h"
#include "engine/batch.h"
#include "engine/kv_pool.h"
#include "engine/request.h"
#include "engine/sampler.h"
#include "engine/workers.h"
#include "qvl.h"
#include "tokenizer/tokenizer.h"

typedef struct qvl_event_node {
    qvl_event ev;
    struct qvl_event_node *next;
} qvl_event_node;

struct qvl_engine {
    const qvl_backend_ops *ops;
    qvl_backend *be;
    qvl_backend_limits lim;
    const qvl_config *cfg;
    qvl_tokenizer *tok;
    qvl_prep_ctx prep;          /* what workers need (tokenizer, pixel limits, context) */
    long max_model_len;
    int threads;
    char device_name[96];
    /* The stepping thread's state. */
    qvl_kv_pool kv;
    qvl_batch batch;
    int32_t *picked;            /* [max_seqs] */
    float *logits;              /* [max_seqs][vocab] when keep_logits (tests), else NULL */
    int keep_logits;
    qvl_sampler *streams;       /* draws each request's uniforms from its seed */
    double *uniforms;           /* [max_model_len] */
    long image_cache_used;
    qvl_req **admitted;         /* [max_seqs] scratch: requests admitted this step */
    int *order;                 /* [max_seqs] slots in admission order (prefill goes first-come) */
    int n_order;
    qvl_workers *workers;
    int lookahead;              /* requests prepared ahead at most */
    /* Shared (mu). */
    pthread_mutex_t mu;
    pthread_cond_t prepared;    /* a worker finished a request */
    int mu_ok;
    qvl_req *queue_head, *queue_tail;   /* not running: waiting, preparing, ready (submission order) */
    int n_queue, n_preparing, n_ready, max_queue;
    long ready_image_tokens;    /* image tokens of the prepared requests not yet admitted (their pixels
                                   are in host memory): preparation stops running ahead past a cap */
    qvl_req **slots;            /* [max_seqs] the running request of each slot, or NULL */
    int n_running;
    qvl_event_node *done_head, *done_tail;
    qvl_req_id next_id;
    long long finished, failed, prompt_tokens, generated_tokens;
    qvl_engine_stats time;      /* the wait/vision/step time fields only (qvl_engine_stats_get) */
};

/* Turns a finished request into an event on the done list and frees it (mu held). res: its result
 * (moved into the event), or NULL. */
void qvl_engine_finish_locked(qvl_engine *e, qvl_req *r, qvl_result *res);
/* A prepared request leaves the ready count (admitted, cancelled or failed; mu held). */
void qvl_engine_unready_locked(qvl_engine *e, const qvl_req *r);
/* Prepares r on a worker thread (workers.h callback). */
void qvl_engine_prepare_item(void *engine, void *req);

#endif
