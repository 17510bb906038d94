/* The engine-driving thread and the state of each request in flight (see jobs.h).
 *
 * Locks: `mu` (the scheduler's) guards the list of jobs in flight, reference counts and flags the
 * engine thread acts on; it is held around qvl_submit and qvl_poll so that an id is in the list
 * before its event can be polled. Each job's `mu` guards its text and outcome; the token callback
 * (inside qvl_step, which may hold the engine's own lock) takes only that one, so the order is
 * always scheduler -> engine -> job and never the reverse. */
#include "serve/jobs.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/error.h"

struct serve_job {
    serve_jobs *owner;
    serve_job *next;              /* in the list of jobs in flight */
    qvl_req_id id;
    int refs;                     /* HTTP side + engine side; guarded by owner->mu */
    int cancel_wanted, cancel_sent;   /* owner->mu */
    int delivered;                /* owner->mu: its event was polled (no longer in flight) */
    double t_submit;
    /* Guarded by mu: */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    char *text;
    size_t len, cap, sendable, checked;
    int stop_hit, done, ok, finish_stop, prompt_tokens, completion_tokens;
    double t_first;
    qvl_error_code code;
    char error[512];
    serve_stops stops;
    char *stop_mem;
};

struct serve_jobs {
    qvl_engine *engine;
    serve_metrics *metrics;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t work;          /* the engine thread waits here when idle */
    pthread_cond_t idle;          /* shutdown waits here for the list to empty */
    serve_job *active;
    int n_active, refusing, cancel_all, quit;
};

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void deadline_in(struct timespec *ts, int ms) {
    clock_gettime(CLOCK_REALTIME, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) ts->tv_sec++, ts->tv_nsec -= 1000000000L;
}

static void job_free(serve_job *j) {
    pthread_mutex_destroy(&j->mu);
    pthread_cond_destroy(&j->cv);
    free(j->text);
    free(j->stop_mem);
    free(j);
}

/* Drops one reference; owner->mu held. */
static void unref_locked(serve_job *j) {
    if (--j->refs == 0) job_free(j);
}

static int append(serve_job *j, const char *s, size_t n) {
    if (j->len + n + 1 > j->cap) {
        size_t cap = (j->cap ? j->cap * 2 : 256) + n;
        char *p = realloc(j->text, cap);
        if (!p) return -1;
        j->text = p;
        j->cap = cap;
    }
    memcpy(j->text + j->len, s, n);
    j->len += n;
    j->text[j->len] = 0;
    return 0;
}

/* Looks for a stop string in the text added since the last look; on a match the text ends there.
 * Then moves `sendable` up to what can no longer become a stop string. job->mu held. */
static void scan_stops(serve_job *j, int final) {
    if (j->stops.n) {
        long at = serve_stop_find(&j->stops, j->text, j->len, j->checked);
        if (at >= 0) {
            j->len = (size_t)at;
            j->text[j->len] = 0;
            j->stop_hit = 1;
        }
        j->checked = j->len;
    }
    size_t safe = j->stop_hit || final || !j->stops.n ? j->len : serve_stop_safe_len(&j->stops, j->text, j->len);
    if (safe > j->sendable) j->sendable = safe;
}

/* Asks the engine to end j now (it may be inside qvl_step: qvl_cancel may be called from any
 * thread, and a running request stops before its next token). owner->mu held. */
static void cancel_locked(serve_jobs *s, serve_job *j) {
    if (j->cancel_sent || j->delivered) return;
    qvl_cancel(s->engine, j->id);   /* -1 only when it just finished: its event is on the way */
    j->cancel_sent = 1;
}

/* qvl_gen_opts.on_token: runs on the engine thread inside qvl_step, with no engine lock held. */
static void on_token(const char *piece, void *user) {
    serve_job *j = user;
    pthread_mutex_lock(&j->mu);
    int was_hit = j->stop_hit;
    if (!j->stop_hit && !j->done && piece[0]) {
        if (!j->t_first) j->t_first = now_s();
        if (append(j, piece, strlen(piece)) == 0) scan_stops(j, 0);
        pthread_cond_broadcast(&j->cv);
    }
    int hit_now = j->stop_hit && !was_hit;
    pthread_mutex_unlock(&j->mu);
    if (hit_now) {   /* a stop string: nothing more is wanted (j->id is set under owner->mu) */
        pthread_mutex_lock(&j->owner->mu);
        cancel_locked(j->owner, j);
        pthread_mutex_unlock(&j->owner->mu);
    }
}

/* Records the outcome of a polled event; owner->mu held. */
static void deliver(serve_jobs *s, qvl_event *ev) {
    serve_job **pp = &s->active, *j = NULL;
    for (; *pp; pp = &(*pp)->next)
        if ((*pp)->id == ev->id) {
            j = *pp;
            *pp = j->next;
            break;
        }
    if (!j) {   /* cannot happen: ids enter the list under the same lock as qvl_submit */
        if (ev->status == 0) qvl_result_free(&ev->result);
        return;
    }
    s->n_active--;
    j->delivered = 1;
    pthread_mutex_lock(&j->mu);
    const qvl_result *r = &ev->result;
    int ok = ev->status == 0 || (ev->code == QVL_ERR_CANCELLED && j->stop_hit && !j->cancel_wanted);
    if (ev->status == 0) {
        /* The result's text is the reference; the pieces streamed so far are its prefix. Keep the
         * streamed text when they differ (never take back what was sent). */
        if (!j->stop_hit && r->text && strlen(r->text) >= j->len && !memcmp(r->text, j->text ? j->text : "", j->len)) {
            size_t n = strlen(r->text);
            append(j, r->text + j->len, n - j->len);
        }
        scan_stops(j, 1);
    }
    j->ok = ok;
    j->finish_stop = j->stop_hit || (ev->status == 0 && r->finish_reason == QVL_FINISH_STOP);
    /* A request cancelled on a stop string still reports the tokens counted when the engine fills
     * its result on cancel (n_tokens generated so far). */
    j->prompt_tokens = r->prompt_tokens;
    j->completion_tokens = r->n_tokens;
    if (!ok) {
        j->code = ev->code;
        snprintf(j->error, sizeof j->error, "%s", ev->error[0] ? ev->error : "request failed");
    }
    j->sendable = j->len;
    j->done = 1;
    double t_end = now_s();
    int outcome = ok ? 0 : ev->code == QVL_ERR_CANCELLED ? 2 : 1;
    serve_metrics_chat(s->metrics, outcome, j->stop_hit, j->prompt_tokens, j->completion_tokens,
                       j->t_first ? j->t_first - j->t_submit : -1, t_end - j->t_submit);
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&j->mu);
    qvl_result_free(&ev->result);   /* zeroed before qvl_poll: safe when unfilled */
    unref_locked(j);
    if (!s->n_active) pthread_cond_broadcast(&s->idle);
}

static void *engine_thread(void *arg) {
    serve_jobs *s = arg;
    qvl_event ev;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (!s->n_active && !s->quit) pthread_cond_wait(&s->work, &s->mu);
        if (s->quit && !s->n_active) break;
        /* Cancels decided since the last step: stop strings, gone clients, shutdown. */
        for (serve_job *j = s->active; j; j = j->next) {
            if (j->cancel_sent) continue;
            pthread_mutex_lock(&j->mu);
            int stop_hit = j->stop_hit;
            pthread_mutex_unlock(&j->mu);
            if (stop_hit || j->cancel_wanted || s->cancel_all) cancel_locked(s, j);
        }
        pthread_mutex_unlock(&s->mu);
        int left = qvl_step(s->engine);
        if (left < 0) fprintf(stderr, "qvl: serve: engine step failed: %s\n", qvl_last_error());
        pthread_mutex_lock(&s->mu);
        int got = 0;
        memset(&ev, 0, sizeof ev);
        while (qvl_poll(s->engine, &ev) == 1) {
            deliver(s, &ev);
            got++;
            memset(&ev, 0, sizeof ev);
        }
        /* Nothing moved (an engine failure, or requests the engine does not know): do not spin. */
        if ((left <= 0 && !got && s->n_active) ) {
            struct timespec ts;
            deadline_in(&ts, 10);
            pthread_cond_timedwait(&s->work, &s->mu, &ts);
        }
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

serve_jobs *serve_jobs_start(qvl_engine *e, serve_metrics *m) {
    serve_jobs *s = calloc(1, sizeof *s);
    if (!s) {
        qvl_errorf("serve: out of memory");
        return NULL;
    }
    s->engine = e;
    s->metrics = m;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->work, NULL);
    pthread_cond_init(&s->idle, NULL);
    int rc = pthread_create(&s->thread, NULL, engine_thread, s);
    if (rc) {
        qvl_errorf("serve: cannot start the engine thread: %s", strerror(rc));
        pthread_mutex_destroy(&s->mu);
        pthread_cond_destroy(&s->work);
        pthread_cond_destroy(&s->idle);
        free(s);
        return NULL;
    }
    return s;
}

void serve_jobs_shutdown(serve_jobs *s, double grace_s) {
    pthread_mutex_lock(&s->mu);
    s->refusing = 1;
    if (grace_s > 0 && s->n_active) {
        struct timespec ts;
        deadline_in(&ts, (int)(grace_s * 1000));
        while (s->n_active && pthread_cond_timedwait(&s->idle, &s->mu, &ts) != ETIMEDOUT) {}
    }
    s->cancel_all = 1;
    for (serve_job *j = s->active; j; j = j->next) cancel_locked(s, j);
    s->quit = 1;
    pthread_cond_broadcast(&s->work);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->thread, NULL);
}

void serve_jobs_free(serve_jobs *s) {
    if (!s) return;
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->work);
    pthread_cond_destroy(&s->idle);
    free(s);
}

serve_job *serve_job_submit(serve_jobs *s, const qvl_request *req, const qvl_gen_opts *g, const serve_stops *st,
                            qvl_error_code *code, char *err, size_t errlen) {
    serve_job *j = calloc(1, sizeof *j);
    size_t stop_bytes = 0;
    for (int i = 0; st && i < st->n; i++) stop_bytes += st->len[i] + 1;
    if (j && stop_bytes && !(j->stop_mem = malloc(stop_bytes))) {
        free(j);
        j = NULL;
    }
    if (!j) {
        *code = QVL_ERR_NO_MEMORY;
        snprintf(err, errlen, "serve: out of memory");
        return NULL;
    }
    for (int i = 0, o = 0; st && i < st->n; o += (int)st->len[i] + 1, i++) {
        memcpy(j->stop_mem + o, st->s[i], st->len[i] + 1);
        j->stops.s[i] = j->stop_mem + o;
        j->stops.len[i] = st->len[i];
        j->stops.n = i + 1;
    }
    pthread_mutex_init(&j->mu, NULL);
    pthread_cond_init(&j->cv, NULL);
    j->owner = s;
    j->t_submit = now_s();
    qvl_gen_opts go = *g;
    go.on_token = on_token;
    go.user = j;
    pthread_mutex_lock(&s->mu);
    if (s->refusing) {
        pthread_mutex_unlock(&s->mu);
        job_free(j);
        *code = QVL_ERR_CANCELLED;
        snprintf(err, errlen, "serve: the server is shutting down");
        return NULL;
    }
    j->id = qvl_submit(s->engine, req, &go);
    if (j->id < 0) {
        *code = qvl_last_error_code();
        snprintf(err, errlen, "%s", qvl_last_error());
        pthread_mutex_unlock(&s->mu);
        job_free(j);
        return NULL;
    }
    j->refs = 2;
    j->next = s->active;
    s->active = j;
    s->n_active++;
    pthread_cond_signal(&s->work);
    pthread_mutex_unlock(&s->mu);
    return j;
}

void serve_job_wait(serve_job *j, size_t sent, int timeout_ms, serve_job_state *st) {
    struct timespec ts;
    deadline_in(&ts, timeout_ms);
    pthread_mutex_lock(&j->mu);
    while (!j->done && j->sendable <= sent && pthread_cond_timedwait(&j->cv, &j->mu, &ts) != ETIMEDOUT) {}
    st->sendable = j->sendable;
    st->done = j->done;
    st->ok = j->ok;
    st->code = j->code;
    st->error = j->error;
    st->finish_stop = j->finish_stop;
    st->prompt_tokens = j->prompt_tokens;
    st->completion_tokens = j->completion_tokens;
    pthread_mutex_unlock(&j->mu);
}

void serve_job_copy(serve_job *j, size_t from, size_t to, char *dst) {
    pthread_mutex_lock(&j->mu);
    if (to > j->sendable) to = j->sendable;
    if (from < to) memcpy(dst, j->text + from, to - from);
    pthread_mutex_unlock(&j->mu);
}

const char *serve_job_text(serve_job *j) { return j->text ? j->text : ""; }

void serve_job_cancel(serve_job *j) {
    serve_jobs *s = j->owner;
    pthread_mutex_lock(&s->mu);
    if (!j->cancel_wanted) {
        j->cancel_wanted = 1;
        cancel_locked(s, j);
        pthread_cond_signal(&s->work);
    }
    pthread_mutex_unlock(&s->mu);
}

void serve_job_release(serve_job *j) {
    serve_jobs *s = j->owner;
    pthread_mutex_lock(&s->mu);
    unref_locked(j);
    pthread_mutex_unlock(&s->mu);
}
