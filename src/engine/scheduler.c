/* One scheduler step (qvl_step): waiting requests go to the preparation workers; prepared ones
 * are admitted while a sequence slot, the KV blocks of their whole length (prompt + answer) and
 * room in the backend's image cache are free (first come, first served); the images of the newly
 * admitted go through the vision tower together (as few passes as the backend's vision budget
 * allows); then one forward pass runs a decode row for every sequence past its prompt plus prompt
 * chunks under the token budget (chunked prefill), and each picked token is handed to its request.
 * A request that fails (unreadable image, prompt too long, a bad image grid) fails alone; a backend
 * failure of run_batch fails every request in flight. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine_internal.h"
#include "model/model.h"
#include "util/error.h"

/* ---- preparation (worker threads) ---- */

static void unlink_locked(qvl_engine *e, qvl_req *prev, qvl_req *r);

void qvl_engine_prepare_item(void *engine, void *req) {
    qvl_engine *e = engine;
    qvl_req *r = req;
    r->t_prep_start = qvl_now_mono();
    if (!__atomic_load_n(&r->cancelled, __ATOMIC_ACQUIRE))
        qvl_req_prepare(r, &e->prep);   /* on failure r->status/code/error say why */
    r->t_prep_end = qvl_now_mono();
    pthread_mutex_lock(&e->mu);
    e->n_preparing--;
    if (__atomic_load_n(&r->cancelled, __ATOMIC_ACQUIRE)) {   /* cancelled meanwhile: finished now */
        qvl_req *prev = NULL, *q = e->queue_head;
        while (q && q != r) prev = q, q = q->next;
        if (q) unlink_locked(e, prev, r);
        r->status = -1;
        r->code = QVL_ERR_CANCELLED;
        snprintf(r->error, sizeof r->error, "request %lld: cancelled", (long long)r->id);
        qvl_engine_finish_locked(e, r, NULL);
    } else {
        r->state = QVL_REQ_READY;
        e->n_ready++;
        e->ready_image_tokens += r->image_tokens;
    }
    pthread_cond_broadcast(&e->prepared);
    pthread_mutex_unlock(&e->mu);
}

void qvl_engine_unready_locked(qvl_engine *e, const qvl_req *r) {
    e->n_ready--;
    e->ready_image_tokens -= r->image_tokens;
}

/* Hands waiting requests to the workers, up to the lookahead: a few more than the sequence slots,
 * and not while the prepared ones already hold more image tokens than the backend's image cache
 * (their pixel values wait in host memory) (mu held). */
static void dispatch_locked(qvl_engine *e) {
    for (qvl_req *r = e->queue_head;
         r && e->n_preparing + e->n_ready < e->lookahead && e->ready_image_tokens <= e->lim.image_cache_tokens;
         r = r->next) {
        if (r->state != QVL_REQ_WAITING) continue;
        r->state = QVL_REQ_PREPARING;
        e->n_preparing++;
        if (qvl_workers_push(e->workers, r)) {   /* no memory for the queue node: prepare here */
            pthread_mutex_unlock(&e->mu);
            qvl_engine_prepare_item(e, r);
            pthread_mutex_lock(&e->mu);
        }
    }
}

static void unlink_locked(qvl_engine *e, qvl_req *prev, qvl_req *r) {
    if (prev) prev->next = r->next;
    else e->queue_head = r->next;
    if (e->queue_tail == r) e->queue_tail = prev;
    r->next = NULL;
    e->n_queue--;
}

/* ---- finishing ---- */

static int is_eos(const qvl_config *cfg, int32_t id) {
    for (int i = 0; i < cfg->gen.n_eos; i++)
        if (cfg->gen.eos_ids[i] == id) return 1;
    return 0;
}

static void fail_with(qvl_req *r, qvl_error_code code, const char *msg) {
    r->status = -1;
    r->code = code;
    snprintf(r->error, sizeof r->error, "%s", msg);
}

/* Ends a running (or just admitted) request: frees its slot, blocks and image room, fills its
 * result and posts the event. status 0: done; else r->status/code/error are set. */
static void finish_running(qvl_engine *e, qvl_req *r) {
    int slot = r->slot;
    if (slot >= 0) e->ops->seq_free(e->be, slot);
    if (!r->images_dropped) e->image_cache_used -= r->image_tokens;
    r->images_dropped = 1;
    qvl_result *res = &r->res;
    double t_end = qvl_now_mono();
    if (!r->status || r->code == QVL_ERR_CANCELLED) {
        if (!r->status && r->ds) {
            const char *rest = qvl_detok_stream_flush(r->ds);
            if (r->g.on_token && rest && rest[0]) r->g.on_token(rest, r->g.user);
        }
        res->text = qvl_tokenizer_decode(e->tok, res->token_ids, (size_t)res->n_tokens, 1);
        if (!res->text && !r->status) {
            qvl_req_fail(r, QVL_ERR_NO_MEMORY);
        }
        res->prompt_tokens = r->n_ids;
        res->image_tokens = r->image_tokens;
        res->downscaled_from_tokens = r->downscaled_from_tokens;
        res->load_s = r->load_s;
        res->preprocess_s = r->preprocess_s;
        res->vision_s = r->vision_s;
        double t_first = r->t_first > 0 ? r->t_first : t_end;
        double t_vis = r->t_vision_end > 0 ? r->t_vision_end : t_first;
        res->prefill_s = t_first - t_vis;
        res->decode_s = t_end - t_first;
        res->total_s = t_end - r->t_submit;
        if (r->t_admit > 0) res->queue_s = (r->t_prep_start - r->t_submit) + (r->t_admit - r->t_prep_end);
    }
    pthread_mutex_lock(&e->mu);
    if (slot >= 0) {
        qvl_kv_pool_release(&e->kv, slot);   /* under mu: qvl_engine_stats_get reads the pool */
        e->slots[slot] = NULL;
        e->n_running--;
    }
    for (int i = 0; i < e->n_order; i++)
        if (e->order[i] == slot) {
            memmove(e->order + i, e->order + i + 1, (size_t)(e->n_order - i - 1) * sizeof *e->order);
            e->n_order--;
            break;
        }
    qvl_engine_finish_locked(e, r, res);
    pthread_mutex_unlock(&e->mu);
}

static void finish_cancelled(qvl_engine *e, qvl_req *r) {
    char msg[64];
    snprintf(msg, sizeof msg, "request %lld: cancelled", (long long)r->id);
    fail_with(r, QVL_ERR_CANCELLED, msg);
    finish_running(e, r);
}

static int cancelled(const qvl_req *r) { return __atomic_load_n(&r->cancelled, __ATOMIC_ACQUIRE); }

/* ---- admission ---- */

/* Checks that never change while the request waits: its image sizes against the backend's
 * limits, its KV need against the whole pool. Returns 0, or -1 + error + kind. */
static int static_checks(const qvl_engine *e, const qvl_req *r, long tokens) {
    for (int i = 0; i < r->n_images; i++)
        if (r->pv[i].image_tokens > e->lim.vision_tokens) {
            qvl_errorf("%s: %d image tokens exceed the %ld the memory plan admits per image (--max-pixels, "
                       "--max-image-tokens, --gpu-mem)", r->images[i].name, r->pv[i].image_tokens, e->lim.vision_tokens);
            qvl_error_set_kind(QVL_ERR_INPUT);   /* this request alone: the others go on (eval skips it) */
            return -1;
        }
    if (r->image_tokens > e->lim.image_cache_tokens) {
        qvl_errorf("%s: %d image tokens exceed the %ld the image cache holds (--max-pixels, --gpu-mem)",
                   r->n_images ? r->images[0].name : "request", r->image_tokens, e->lim.image_cache_tokens);
        qvl_error_set_kind(QVL_ERR_INPUT);
        return -1;
    }
    int need = qvl_kv_pool_blocks_for(&e->kv, tokens);
    if (need > e->kv.n_blocks) {
        qvl_errorf("request %lld: %ld tokens (prompt + max-new-tokens) need %d KV blocks, the pool has %d "
                   "(lower --max-new-tokens or raise --gpu-mem)",
                   (long long)r->id, tokens, need, e->kv.n_blocks);
        qvl_error_set_kind(QVL_ERR_TOO_LONG);
        return -1;
    }
    return 0;
}

/* Tokens a request reserves: its prompt and its whole answer. */
static long request_tokens(const qvl_engine *e, qvl_req *r) {
    long room = e->max_model_len - r->n_ids;
    r->max_new = r->g.max_new_tokens < room ? r->g.max_new_tokens : (int)room;
    if (r->max_new < 1) r->max_new = 1;
    return (long)r->n_ids + r->max_new;
}

static int free_slot_locked(const qvl_engine *e) {
    for (int i = 0; i < e->lim.max_seqs; i++)
        if (!e->slots[i]) return i;
    return -1;
}

/* Takes prepared requests off the queue into free slots, in submission order; finishes the ones
 * that failed preparation or were cancelled. Returns how many were admitted (into e->admitted). */
static int admit_locked(qvl_engine *e) {
    int n = 0;
    qvl_req *prev = NULL, *r = e->queue_head;
    while (r) {
        qvl_req *next = r->next;
        if (r->state != QVL_REQ_READY) {
            if (r->state == QVL_REQ_WAITING) break;   /* later ones are not prepared either */
            prev = r, r = next;
            continue;
        }
        if (cancelled(r) || r->status) {
            unlink_locked(e, prev, r);
            qvl_engine_unready_locked(e, r);
            if (!r->status) {
                r->status = -1;
                r->code = QVL_ERR_CANCELLED;
                snprintf(r->error, sizeof r->error, "request %lld: cancelled", (long long)r->id);
            }
            qvl_engine_finish_locked(e, r, NULL);
            r = next;
            continue;
        }
        long tokens = request_tokens(e, r);
        if (static_checks(e, r, tokens)) {
            unlink_locked(e, prev, r);
            qvl_engine_unready_locked(e, r);
            qvl_req_fail(r, QVL_ERR_INPUT);
            qvl_engine_finish_locked(e, r, NULL);
            r = next;
            continue;
        }
        int slot = free_slot_locked(e);
        if (slot < 0) break;
        if (e->image_cache_used + r->image_tokens > e->lim.image_cache_tokens) break;
        if (qvl_kv_pool_reserve(&e->kv, slot, tokens)) break;   /* first come, first served: wait */
        unlink_locked(e, prev, r);
        qvl_engine_unready_locked(e, r);
        r->state = QVL_REQ_RUNNING;
        r->t_admit = qvl_now_mono();
        r->slot = slot;
        e->slots[slot] = r;
        e->n_running++;
        e->image_cache_used += r->image_tokens;
        e->order[e->n_order++] = slot;
        e->admitted[n++] = r;
        r = next;
    }
    return n;
}

/* Positions, picking state and block table of an admitted request. Returns 0, or -1 + error. */
static int begin_sequence(qvl_engine *e, qvl_req *r) {
    const qvl_config *c = e->cfg;
    for (int i = 0; i < r->n_ids; i++)
        if (r->ids[i] < 0 || r->ids[i] >= c->text.vocab_size) {
            qvl_errorf("prompt: token id %d at position %d is outside the vocabulary of %d", r->ids[i], i,
                       c->text.vocab_size);
            qvl_error_set_kind(QVL_ERR_INPUT);
            return -1;
        }
    int grids[64][3];
    if (r->n_images > 64) {
        qvl_errorf("prompt: %d images, at most 64 are supported", r->n_images);
        qvl_error_set_kind(QVL_ERR_INPUT);
        return -1;
    }
    for (int i = 0; i < r->n_images; i++) {
        grids[i][0] = r->pv[i].grid_t;
        grids[i][1] = r->pv[i].grid_h;
        grids[i][2] = r->pv[i].grid_w;
    }
    if (!(r->pos = malloc((size_t)3 * r->n_ids * sizeof *r->pos)) || !(r->ds = qvl_detok_stream_new(e->tok, 1)) ||
        !(r->res.token_ids = malloc((size_t)r->max_new * sizeof *r->res.token_ids))) {
        qvl_errorf("request: out of memory");
        qvl_error_set_kind(QVL_ERR_NO_MEMORY);
        return -1;
    }
    if (qvl_mrope_positions(r->ids, r->n_ids, c->image_token_id, (const int(*)[3])grids, r->n_images,
                            c->vision.spatial_merge_size, r->pos, &r->rope_delta)) {
        qvl_error_set_kind(QVL_ERR_INPUT);
        return -1;
    }
    qvl_sampler_params sp = qvl_sampler_params_resolve(&r->g, &c->gen);
    qvl_sampler_reset(e->streams, &sp);
    int n_uni = sp.do_sample && sp.temperature > 0 ? r->max_new : 0;
    qvl_sampler_uniforms(e->streams, e->uniforms, n_uni);
    qvl_pick_params pp = {sp.do_sample, sp.temperature, sp.top_k, sp.top_p, sp.repetition_penalty,
                          sp.presence_penalty};
    int nb;
    const int32_t *table = qvl_kv_pool_table(&e->kv, r->slot, &nb);
    if (e->ops->seq_begin(e->be, r->slot, &pp, e->uniforms, n_uni, r->ids, r->n_ids) ||
        e->ops->seq_blocks(e->be, r->slot, table, nb))
        return -1;
    return 0;
}

/* Names the image in an error that does not name it already. */
static void name_image_error(const char *name) {
    const char *msg = qvl_error();
    if (strstr(msg, name)) return;
    char buf[512];
    snprintf(buf, sizeof buf, "%s", msg);
    int kind = qvl_error_kind();
    qvl_errorf("%s: %s", name, buf);
    qvl_error_set_kind(kind ? kind : QVL_ERR_INPUT);
}

/* The images of the admitted requests through the vision tower, as few passes as the vision
 * budget allows; a failed pass runs again image by image so that only the bad image's request
 * fails. */
static void encode_admitted(qvl_engine *e, qvl_req **adm, int n_adm, qvl_engine_stats *time) {
    int cap = 0;
    for (int i = 0; i < n_adm; i++) cap += adm[i] ? adm[i]->n_images : 0;
    if (!cap) return;
    const qvl_pixel_values **pv = malloc((size_t)cap * sizeof *pv);
    int *seqs = malloc((size_t)cap * sizeof *seqs), *owner = malloc((size_t)cap * sizeof *owner);
    if (!pv || !seqs || !owner) {
        free(pv), free(seqs), free(owner);
        for (int i = 0; i < n_adm; i++)
            if (adm[i] && adm[i]->n_images) {
                qvl_errorf("request: out of memory");
                qvl_req_fail(adm[i], QVL_ERR_NO_MEMORY);
            }
        return;
    }
    int a = 0, k = 0;   /* next request, next image of it */
    while (a < n_adm) {
        int n = 0;
        long tokens = 0;
        double t0 = qvl_now_mono();
        /* Whole requests' images in order while they fit the pass (one image always fits). */
        for (int i = a; i < n_adm; i++) {
            qvl_req *r = adm[i];
            if (!r || r->status) {
                if (i == a) a++, k = 0;
                continue;
            }
            for (; k < r->n_images; k++) {
                long t = r->pv[k].image_tokens;
                if (n > 0 && tokens + t > e->lim.vision_tokens) break;
                pv[n] = &r->pv[k], seqs[n] = r->slot, owner[n] = i, tokens += t, n++;
            }
            if (k < r->n_images) break;
            a = i + 1, k = 0;
        }
        if (!n) break;
        if (e->ops->encode_images(e->be, pv, seqs, n)) {
            /* Find the bad image: everything of this pass again, one image at a time. Images of a
             * request after its failed one are skipped (the request has failed). */
            for (int j = 0; j < n; j++) {
                qvl_req *r = adm[owner[j]];
                if (r->status) continue;
                if (e->ops->encode_images(e->be, &pv[j], &seqs[j], 1)) {
                    name_image_error(r->images[pv[j] - r->pv].name);
                    qvl_req_fail(r, QVL_ERR_INPUT);
                }
            }
        }
        double dt = qvl_now_mono() - t0;
        time->vision_s += dt;
        time->vision_passes++;
        for (int j = 0; j < n; j++) {
            qvl_req *r = adm[owner[j]];
            if (j == 0 || owner[j] != owner[j - 1]) r->vision_s += dt;
        }
    }
    free(pv), free(seqs), free(owner);
}

/* ---- the step ---- */

/* Appends the rows of this step: a decode row for each sequence past its prompt, then prompt
 * chunks in admission order while the token budget lasts. */
static void build_batch(qvl_engine *e) {
    qvl_batch *b = &e->batch;
    qvl_batch_clear(b);
    for (int i = 0; i < e->n_order; i++) {
        qvl_req *r = e->slots[e->order[i]];
        if (!r || r->n_run < r->n_ids) continue;
        int kv = r->n_ids + r->res.n_tokens - 1;
        int32_t p = kv + r->rope_delta, pos[3] = {p, p, p};
        qvl_batch_add(b, r->res.token_ids[r->res.n_tokens - 1], pos, r->slot, kv, -1, 1);
    }
    const int image_id = e->cfg->image_token_id;
    for (int i = 0; i < e->n_order && b->n_tokens < b->capacity; i++) {
        qvl_req *r = e->slots[e->order[i]];
        if (!r || r->n_run >= r->n_ids) continue;
        int room = b->capacity - b->n_tokens, left = r->n_ids - r->n_run;
        int cnt = left < room ? left : room;
        for (int t = r->n_run; t < r->n_run + cnt; t++) {
            int32_t pos[3] = {r->pos[t], r->pos[r->n_ids + t], r->pos[2 * r->n_ids + t]};
            int img = r->n_images > 0 && r->ids[t] == image_id ? r->next_image_row++ : -1;
            qvl_batch_add(b, r->ids[t], pos, r->slot, t, img, t == r->n_ids - 1);
        }
        r->n_run += cnt;
    }
}

/* A picked token for r: recorded, streamed, and the end checked. Returns 1 when r is done. */
static int take_token(qvl_engine *e, qvl_req *r, int32_t id, double now) {
    qvl_result *res = &r->res;
    if (res->n_tokens == 0) {
        r->t_first = now;
        res->ttft_s = now - r->t_submit;
    }
    res->token_ids[res->n_tokens++] = id;
    const char *piece = qvl_detok_stream_push(r->ds, id);
    if (r->g.on_token && piece && piece[0]) r->g.on_token(piece, r->g.user);
    if (is_eos(e->cfg, id)) {
        res->finish_reason = QVL_FINISH_STOP;
        return 1;
    }
    res->finish_reason = QVL_FINISH_LENGTH;
    return res->n_tokens >= r->max_new;
}

/* The backend failed: every running request ends with that error. */
static void fail_running(qvl_engine *e, const char *msg, qvl_error_code code) {
    for (int s = 0; s < e->lim.max_seqs; s++) {
        qvl_req *r = e->slots[s];
        if (!r) continue;
        fail_with(r, code, msg);
        finish_running(e, r);
    }
}

static int left_locked(const qvl_engine *e) { return e->n_queue + e->n_running; }

static void add_time_locked(qvl_engine *e, const qvl_engine_stats *t) {
    e->time.wait_s += t->wait_s;
    e->time.vision_s += t->vision_s;
    e->time.prefill_steps_s += t->prefill_steps_s;
    e->time.decode_steps_s += t->decode_steps_s;
    e->time.vision_passes += t->vision_passes;
    e->time.prefill_steps += t->prefill_steps;
    e->time.decode_steps += t->decode_steps;
    e->time.step_rows += t->step_rows;
}

int qvl_step(qvl_engine *e) {
    if (!e) {
        qvl_errorf("engine: NULL");
        qvl_error_set_kind(QVL_ERR_INPUT);
        return -1;
    }
    /* Cancelled running requests end before their next token. */
    for (int s = 0; s < e->lim.max_seqs; s++)
        if (e->slots[s] && cancelled(e->slots[s])) finish_cancelled(e, e->slots[s]);

    qvl_engine_stats t = {0};   /* this step's share of the time split (added under mu at the end) */
    pthread_mutex_lock(&e->mu);
    dispatch_locked(e);
    /* Nothing to run yet: wait for a worker to finish preparing. */
    if (e->n_running == 0 && e->n_ready == 0 && e->n_preparing > 0) {
        double t0 = qvl_now_mono();
        while (e->n_running == 0 && e->n_ready == 0 && e->n_preparing > 0) pthread_cond_wait(&e->prepared, &e->mu);
        t.wait_s = qvl_now_mono() - t0;
    }
    int n_adm = admit_locked(e);
    dispatch_locked(e);   /* keep the workers busy while this step runs */
    pthread_mutex_unlock(&e->mu);

    for (int i = 0; i < n_adm; i++) {
        qvl_req *r = e->admitted[i];
        if (begin_sequence(e, r)) qvl_req_fail(r, QVL_ERR_INPUT);
    }
    encode_admitted(e, e->admitted, n_adm, &t);
    double t_vis = qvl_now_mono();
    for (int i = 0; i < n_adm; i++) {
        qvl_req *r = e->admitted[i];
        r->t_vision_end = t_vis;
        if (r->status) finish_running(e, r);
    }

    build_batch(e);
    qvl_batch *b = &e->batch;
    if (b->n_tokens > 0) {
        int prefill = 0;
        for (int i = 0; i < b->n_tokens && !prefill; i++) prefill = b->kv_index[i] < e->slots[b->seq[i]]->n_ids;
        double t0 = qvl_now_mono();
        int failed = e->ops->run_batch(e->be, b, e->picked, e->logits);
        double dt = qvl_now_mono() - t0;
        *(prefill ? &t.prefill_steps_s : &t.decode_steps_s) += dt;
        (*(prefill ? &t.prefill_steps : &t.decode_steps))++;
        t.step_rows += b->n_tokens;
        if (failed) {
            char msg[512];
            snprintf(msg, sizeof msg, "%s", qvl_error());
            qvl_error_code code = qvl_error_kind() ? (qvl_error_code)qvl_error_kind() : QVL_ERR_DEVICE;
            fail_running(e, msg, code);
            qvl_errorf("%s", msg);
            qvl_error_set_kind(code);
            return -1;
        }
        double now = qvl_now_mono();
        for (int i = 0, j = 0; i < b->n_tokens; i++) {
            if (!b->pick[i]) continue;
            qvl_req *r = e->slots[b->seq[i]];
            int32_t id = e->picked[j++];
            if (!r) continue;
            if (!r->images_dropped && b->kv_index[i] == r->n_ids - 1) {   /* the prompt has run */
                e->ops->seq_drop_images(e->be, r->slot);
                e->image_cache_used -= r->image_tokens;
                r->images_dropped = 1;
            }
            if (cancelled(r)) {
                finish_cancelled(e, r);
                continue;
            }
            if (take_token(e, r, id, now)) finish_running(e, r);
        }
    }
    pthread_mutex_lock(&e->mu);
    add_time_locked(e, &t);
    int left = left_locked(e);
    pthread_mutex_unlock(&e->mu);
    return left;
}
