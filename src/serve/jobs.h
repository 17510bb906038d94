/* Requests in flight: the one thread that drives the engine (qvl_step/qvl_poll), and each
 * request's state as the HTTP threads see it: the text so far (what may be sent, stop strings held
 * back), then the outcome. HTTP threads only submit, wait, read, cancel and release; a cancel (a
 * stop string, a gone client, shutdown) reaches the engine at once through qvl_cancel, even while
 * a step runs (qvl.h's thread rules). */
#ifndef QVL_SERVE_JOBS_H
#define QVL_SERVE_JOBS_H
#include <stddef.h>

#include "qvl.h"
#include "serve/metrics.h"
#include "serve/stop.h"

typedef struct serve_jobs serve_jobs;
typedef struct serve_job serve_job;

/* Starts the engine thread. NULL + error if the thread cannot start. */
serve_jobs *serve_jobs_start(qvl_engine *e, serve_metrics *m);
/* Refuses new requests, lets those in flight run up to grace_s seconds, cancels the rest, waits
 * for their outcome and joins the engine thread. Jobs not yet released stay readable. */
void serve_jobs_shutdown(serve_jobs *s, double grace_s);
/* Frees the scheduler; every job must have been released. */
void serve_jobs_free(serve_jobs *s);

/* Queues a request (copied by the engine; the stop strings are copied too). NULL when refused up
 * front: *code and err say why (QVL_ERR_QUEUE_FULL, QVL_ERR_INPUT, QVL_ERR_CANCELLED at shutdown). */
serve_job *serve_job_submit(serve_jobs *s, const qvl_request *req, const qvl_gen_opts *g, const serve_stops *st,
                            qvl_error_code *code, char *err, size_t errlen);

/* What an HTTP thread may know of its job. */
typedef struct {
    size_t sendable;          /* text[0..sendable) may be sent (never shrinks) */
    int done;                 /* the outcome is known; then sendable is the whole answer */
    int ok;                   /* done: 1 success, 0 failure (code, error) */
    qvl_error_code code;
    const char *error;
    int finish_stop;          /* done + ok: 1 "stop" (eos or a stop string), 0 "length" */
    int prompt_tokens, completion_tokens;
} serve_job_state;

/* Waits until more than `sent` bytes are sendable, the job is done, or timeout_ms passed; fills *st.
 */
void serve_job_wait(serve_job *j, size_t sent, int timeout_ms, serve_job_state *st);
/* Copies text[from..to) (to <= sendable) into dst, under the job's lock (the engine thread may
 * be appending). */
void serve_job_copy(serve_job *j, size_t from, size_t to, char *dst);
/* The whole text, once done (it no longer changes then). */
const char *serve_job_text(serve_job *j);
/* The client is gone: the engine thread cancels the request (its KV blocks are freed). */
void serve_job_cancel(serve_job *j);
/* The HTTP side is done with the job (after cancel or done). */
void serve_job_release(serve_job *j);

#endif
