/* qvl serve: an OpenAI-compatible HTTP server over the batched engine.
 *
 *   serve_server *s = serve_start(&opts);      // listening: /health answers 503 until attached
 *   ... open the engine, serve_jobs_start() ...
 *   serve_attach(s, engine, jobs);              // /health 200, chat completions accepted
 *   ... until SIGINT/SIGTERM ...
 *   serve_drain(s); serve_jobs_shutdown(jobs, grace); serve_stop(s);   // then free jobs, engine
 *
 * HTTP threads (one per connection, libmicrohttpd) parse, submit and answer; the engine runs on
 * the one thread of serve/jobs.c. */
#ifndef QVL_SERVE_H
#define QVL_SERVE_H
#include "qvl.h"
#include "serve/chat_request.h"
#include "serve/jobs.h"
#include "serve/metrics.h"

typedef struct {
    const char *host;          /* numeric or a name getaddrinfo resolves; "127.0.0.1" by default */
    int port;                  /* 0: any free port (serve_port tells which) */
    const char *model_name;    /* the id in /v1/models and in responses */
    long max_body_bytes;       /* request body */
    int max_connections;       /* concurrent HTTP connections (each may carry one request) */
    int timeout_s;             /* an idle connection is closed after this many seconds */
    serve_chat_limits chat;
} serve_opts;

typedef struct serve_server serve_server;

/* Binds and starts the HTTP threads. NULL + error ("<host>:<port>: <reason>"). */
serve_server *serve_start(const serve_opts *o);
int serve_port(const serve_server *s);
/* The engine is loaded: chat completions are accepted from now on. */
void serve_attach(serve_server *s, qvl_engine *e, serve_jobs *jobs);
/* New chat completions are refused with 503 from now on (shutdown begins). */
void serve_drain(serve_server *s);
/* Stops the HTTP threads (after the jobs are shut down, so none waits on the engine) and frees s. */
void serve_stop(serve_server *s);
serve_metrics *serve_server_metrics(serve_server *s);

#endif
