/* The HTTP side of qvl serve (see serve.h): libmicrohttpd with one thread per connection, so a
 * handler may block while its request generates; routes, request bodies under a size limit,
 * answers, server-sent events, and noticing clients that went away. */
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "serve/chat_response.h"
#include "serve/mhd.h"
#include "serve/serve.h"
#include "util/error.h"

struct serve_server {
    serve_opts o;
    struct MHD_Daemon *daemon;
    int port;
    serve_metrics metrics;
    long long started;
    qvl_engine *_Atomic engine;
    serve_jobs *_Atomic jobs;
    atomic_int draining;
    atomic_ullong next_id;
};

/* One HTTP request's state across libmicrohttpd's calls. */
typedef struct {
    char *body;
    size_t len, cap;
    int too_large;
} request_state;

/* ---- answers ---- */

static enum MHD_Result send_body(serve_server *s, struct MHD_Connection *c, int status, const char *ctype, char *body,
                                 int retry_after) {
    static const char oom[] = "{\"error\":{\"message\":\"serve: out of memory\",\"type\":\"server_error\"}}";
    if (!body) {
        status = 500;
        ctype = "application/json";
    }
    struct MHD_Response *r = body ? serve_mhd.create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE)
                                  : serve_mhd.create_response_from_buffer(sizeof oom - 1, (void *)oom,
                                                                          MHD_RESPMEM_PERSISTENT);
    if (!r) {
        free(body);
        return MHD_NO;
    }
    serve_mhd.add_response_header(r, "Content-Type", ctype);
    if (retry_after) serve_mhd.add_response_header(r, "Retry-After", "1");
    enum MHD_Result ret = serve_mhd.queue_response(c, (unsigned)status, r);
    serve_mhd.destroy_response(r);
    serve_metrics_http(&s->metrics, status);
    return ret;
}

static enum MHD_Result send_json(serve_server *s, struct MHD_Connection *c, int status, char *json) {
    return send_body(s, c, status, "application/json", json, 0);
}

static enum MHD_Result send_error(serve_server *s, struct MHD_Connection *c, int status, const char *msg) {
    return send_body(s, c, status, "application/json", serve_error_json(status, msg), status == 503 || status == 429);
}

/* The HTTP status for an engine error code. */
static int status_of(qvl_error_code code) {
    switch (code) {
    case QVL_ERR_INPUT:
    case QVL_ERR_TOO_LONG:
    case QVL_ERR_UNSUPPORTED: return 400;
    case QVL_ERR_QUEUE_FULL:
    case QVL_ERR_NO_MEMORY:
    case QVL_ERR_CANCELLED: return 503;   /* cancelled by the server: only at shutdown */
    default: return 500;
    }
}

/* 1 if the client closed its side of the connection (it disconnected or gave up). */
static int client_gone(struct MHD_Connection *c) {
    const union MHD_ConnectionInfo *ci = serve_mhd.get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!ci) return 0;
    int fd = ci->connect_fd;
    struct pollfd p = {.fd = fd, .events = POLLIN | POLLRDHUP};
    if (poll(&p, 1, 0) <= 0) return 0;
    if (p.revents & (POLLHUP | POLLERR | POLLRDHUP | POLLNVAL)) return 1;
    char b;
    ssize_t r = recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    return r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

/* ---- streaming ---- */

typedef struct {
    serve_server *s;
    serve_job *j;
    struct MHD_Connection *c;
    serve_chat_meta meta;
    char id[48];
    int include_usage, role_sent, ended;
    size_t sent;              /* answer bytes already turned into events */
    char *out;                /* events not yet handed to libmicrohttpd */
    size_t out_len, out_pos;
} stream_state;

static void stream_take(stream_state *ss, char *ev) {
    if (!ev) return;
    size_t n = strlen(ev);
    char *p = realloc(ss->out, ss->out_len + n + 1);
    if (p) {
        memcpy(p + ss->out_len, ev, n + 1);
        ss->out = p;
        ss->out_len += n;
    }
    free(ev);
}

/* Fills ss->out with the next events: new text, or the end (finish reason, usage, [DONE]).
 * Returns 0, 1 when the stream is over, -1 when the client went away. */
static int stream_next(stream_state *ss) {
    free(ss->out);
    ss->out = NULL;
    ss->out_len = ss->out_pos = 0;
    if (ss->ended) return 1;
    if (!ss->role_sent) {
        stream_take(ss, serve_chunk_event(&ss->meta, 1, NULL, 0, -1, 0, 0, 0));
        ss->role_sent = 1;
        return 0;
    }
    for (;;) {
        serve_job_state st;
        serve_job_wait(ss->j, ss->sent, 100, &st);
        if (st.sendable > ss->sent) {
            size_t n = st.sendable - ss->sent;
            char *piece = malloc(n);
            if (!piece) return -1;
            serve_job_copy(ss->j, ss->sent, st.sendable, piece);
            stream_take(ss, serve_chunk_event(&ss->meta, 0, piece, n, -1, 0, 0, 0));
            free(piece);
            ss->sent = st.sendable;
            return 0;
        }
        if (st.done) {
            if (st.ok) {
                stream_take(ss, serve_chunk_event(&ss->meta, 0, NULL, 0, st.finish_stop, 0, 0, 0));
                if (ss->include_usage)
                    stream_take(ss, serve_chunk_event(&ss->meta, 0, NULL, 0, -1, 1, st.prompt_tokens,
                                                      st.completion_tokens));
            } else {
                /* The status line is gone already: the error travels as an event (as vLLM does). */
                char *e = serve_error_json(status_of(st.code), st.error);
                if (e) {
                    char *ev = malloc(strlen(e) + 9);
                    if (ev) sprintf(ev, "data: %s\n\n", e);
                    stream_take(ss, ev);
                    free(e);
                }
            }
            stream_take(ss, strdup("data: [DONE]\n\n"));
            ss->ended = 1;
            return 0;
        }
        if (client_gone(ss->c)) return -1;
    }
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
    stream_state *ss = cls;
    (void)pos;
    while (ss->out_pos == ss->out_len) {
        int rc = stream_next(ss);
        if (rc > 0) return MHD_CONTENT_READER_END_OF_STREAM;
        if (rc < 0) {
            serve_job_cancel(ss->j);
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
    }
    size_t n = ss->out_len - ss->out_pos < max ? ss->out_len - ss->out_pos : max;
    memcpy(buf, ss->out + ss->out_pos, n);
    ss->out_pos += n;
    return (ssize_t)n;
}

static void stream_free(void *cls) {
    stream_state *ss = cls;
    if (!ss->ended) serve_job_cancel(ss->j);   /* the connection ended before the answer did */
    serve_job_release(ss->j);
    free(ss->out);
    free(ss);
}

/* ---- routes ---- */

static enum MHD_Result chat_completions(serve_server *s, struct MHD_Connection *c, request_state *rs) {
    serve_jobs *jobs = atomic_load(&s->jobs);
    if (atomic_load(&s->draining)) return send_error(s, c, 503, "serve: the server is shutting down");
    if (!jobs) return send_error(s, c, 503, "serve: the model is still loading");
    serve_chat req;
    int status = 400;
    char err[700];
    if (serve_chat_parse(rs->body ? rs->body : "", rs->len, &s->o.chat, &req, &status, err, sizeof err)) {
        serve_chat_free(&req);
        return send_error(s, c, status, err);
    }
    qvl_error_code code = QVL_ERR_INTERNAL;
    serve_job *j = serve_job_submit(jobs, &req.req, &req.gen, &req.stops, &code, err, sizeof err);
    int stream = req.stream, include_usage = req.include_usage;
    serve_chat_free(&req);
    if (!j) return send_error(s, c, status_of(code), err);

    serve_chat_meta meta = {NULL, (long long)time(NULL), s->o.model_name};
    char id[48];
    snprintf(id, sizeof id, "chatcmpl-qvl%llx%016llx", s->started, (unsigned long long)atomic_fetch_add(&s->next_id, 1));
    meta.id = id;
    /* Wait for the outcome (or, streaming, the first text: errors found before then, such as an
     * unreadable image, still get their own status line). */
    serve_job_state st;
    for (;;) {
        serve_job_wait(j, 0, 100, &st);
        if (st.done || (stream && st.sendable > 0)) break;
        if (client_gone(c)) {
            serve_job_cancel(j);
            serve_job_release(j);
            serve_metrics_http(&s->metrics, 499);   /* nginx's "client closed request" */
            return MHD_NO;
        }
    }
    if (st.done && !st.ok) {
        char msg[600];
        snprintf(msg, sizeof msg, "%s", st.error);
        int http = status_of(st.code);
        serve_job_release(j);
        return send_error(s, c, http, msg);
    }
    if (!stream) {
        char *body = serve_completion_json(&meta, serve_job_text(j), st.sendable, st.finish_stop, st.prompt_tokens,
                                           st.completion_tokens);
        serve_job_release(j);
        return send_json(s, c, 200, body);
    }
    stream_state *ss = calloc(1, sizeof *ss);
    if (!ss) {
        serve_job_cancel(j);
        serve_job_release(j);
        return send_error(s, c, 500, "serve: out of memory");
    }
    ss->s = s;
    ss->j = j;
    ss->c = c;
    memcpy(ss->id, id, sizeof id);
    ss->meta = meta;
    ss->meta.id = ss->id;
    ss->include_usage = include_usage;
    struct MHD_Response *r = serve_mhd.create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, stream_read, ss, stream_free);
    if (!r) {
        stream_free(ss);
        return MHD_NO;
    }
    serve_mhd.add_response_header(r, "Content-Type", "text/event-stream");
    serve_mhd.add_response_header(r, "Cache-Control", "no-cache");
    enum MHD_Result ret = serve_mhd.queue_response(c, 200, r);
    serve_mhd.destroy_response(r);
    serve_metrics_http(&s->metrics, 200);
    return ret;
}

static enum MHD_Result route(serve_server *s, struct MHD_Connection *c, const char *url, const char *method,
                             request_state *rs) {
    int get = !strcmp(method, "GET") || !strcmp(method, "HEAD"), post = !strcmp(method, "POST");
    if (!strcmp(url, "/v1/chat/completions")) {
        if (!post) return send_error(s, c, 405, "/v1/chat/completions: use POST");
        if (rs->too_large) {
            char msg[120];
            snprintf(msg, sizeof msg, "request body: larger than %ld bytes", s->o.max_body_bytes);
            return send_error(s, c, 413, msg);
        }
        return chat_completions(s, c, rs);
    }
    int known = !strcmp(url, "/health") || !strcmp(url, "/v1/models") || !strcmp(url, "/metrics");
    if (known && !get) return send_error(s, c, 405, "use GET");
    if (!strcmp(url, "/health")) {
        if (!atomic_load(&s->jobs)) return send_json(s, c, 503, strdup("{\"status\":\"loading\"}"));
        if (atomic_load(&s->draining)) return send_json(s, c, 503, strdup("{\"status\":\"shutting down\"}"));
        return send_json(s, c, 200, strdup("{\"status\":\"ok\"}"));
    }
    if (!strcmp(url, "/v1/models")) return send_json(s, c, 200, serve_models_json(s->o.model_name, s->started));
    if (!strcmp(url, "/metrics"))
        return send_body(s, c, 200, "text/plain; version=0.0.4; charset=utf-8",
                         serve_metrics_text(&s->metrics, atomic_load(&s->engine), s->o.model_name), 0);
    char msg[200];
    snprintf(msg, sizeof msg, "%.100s: no such endpoint (POST /v1/chat/completions, GET /v1/models, /health, /metrics)",
             url);
    return send_error(s, c, 404, msg);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_size, void **con_cls) {
    serve_server *s = cls;
    (void)version;
    request_state *rs = *con_cls;
    if (!rs) {   /* headers only: set up, and refuse a body announced too large before it is read */
        rs = calloc(1, sizeof *rs);
        if (!rs) return MHD_NO;
        *con_cls = rs;
        serve_metrics_in_flight(&s->metrics, 1);
        const char *cl = serve_mhd.lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
        if (cl && strtoll(cl, NULL, 10) > s->o.max_body_bytes) {
            rs->too_large = 1;
            char msg[120];
            snprintf(msg, sizeof msg, "request body: larger than %ld bytes", s->o.max_body_bytes);
            return send_error(s, c, 413, msg);
        }
        return MHD_YES;
    }
    if (*upload_size) {
        size_t n = *upload_size;
        *upload_size = 0;
        if (rs->too_large) return MHD_YES;
        if ((long)(rs->len + n) > s->o.max_body_bytes) {
            rs->too_large = 1;
            free(rs->body);
            rs->body = NULL;
            rs->len = rs->cap = 0;
            return MHD_YES;
        }
        if (rs->len + n + 1 > rs->cap) {
            size_t cap = rs->cap ? rs->cap * 2 : 16384;
            while (cap < rs->len + n + 1) cap *= 2;
            char *p = realloc(rs->body, cap);
            if (!p) return MHD_NO;
            rs->body = p;
            rs->cap = cap;
        }
        memcpy(rs->body + rs->len, upload_data, n);
        rs->len += n;
        rs->body[rs->len] = 0;
        return MHD_YES;
    }
    return route(s, c, url, method, rs);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode why) {
    serve_server *s = cls;
    (void)c, (void)why;
    request_state *rs = *con_cls;
    if (!rs) return;
    free(rs->body);
    free(rs);
    *con_cls = NULL;
    serve_metrics_in_flight(&s->metrics, -1);
}

/* ---- life cycle ---- */

serve_server *serve_start(const serve_opts *o) {
    if (serve_mhd_load()) return NULL;
    const char *host = o->host ? o->host : "127.0.0.1";
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE}, *ai = NULL;
    int gr = getaddrinfo(host, NULL, &hints, &ai);
    if (gr) {
        qvl_errorf("%s: cannot resolve the address to listen on: %s", host, gai_strerror(gr));
        return NULL;
    }
    struct sockaddr_storage addr;
    memcpy(&addr, ai->ai_addr, ai->ai_addrlen);
    int v6 = ai->ai_family == AF_INET6;
    freeaddrinfo(ai);
    if (v6) ((struct sockaddr_in6 *)&addr)->sin6_port = htons((uint16_t)o->port);
    else ((struct sockaddr_in *)&addr)->sin_port = htons((uint16_t)o->port);

    serve_server *s = calloc(1, sizeof *s);
    if (!s) {
        qvl_errorf("serve: out of memory");
        return NULL;
    }
    s->o = *o;
    s->started = (long long)time(NULL);
    serve_metrics_init(&s->metrics);
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION | MHD_USE_AUTO |
                     (v6 ? MHD_USE_IPv6 : 0);
    s->daemon = serve_mhd.start_daemon(
        flags, (uint16_t)o->port, NULL, NULL, on_request, s, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)o->max_connections, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned)o->timeout_s, MHD_OPTION_NOTIFY_COMPLETED, on_completed, s, MHD_OPTION_END);
    if (!s->daemon) {
        qvl_errorf("%s:%d: cannot listen (address in use, or not an address of this machine)", host, o->port);
        serve_metrics_destroy(&s->metrics);
        free(s);
        return NULL;
    }
    const union MHD_DaemonInfo *di = serve_mhd.get_daemon_info(s->daemon, MHD_DAEMON_INFO_BIND_PORT);
    s->port = di ? di->port : o->port;
    return s;
}

int serve_port(const serve_server *s) { return s->port; }

serve_metrics *serve_server_metrics(serve_server *s) { return &s->metrics; }

void serve_attach(serve_server *s, qvl_engine *e, serve_jobs *jobs) {
    atomic_store(&s->engine, e);
    atomic_store(&s->jobs, jobs);
}

void serve_drain(serve_server *s) { atomic_store(&s->draining, 1); }

void serve_stop(serve_server *s) {
    if (!s) return;
    /* Answers being written (a stream's last events after a cancel) get a moment to go out before
     * the daemon closes every connection; a client that reads nothing does not hold the exit up. */
    for (int i = 0; i < 300; i++) {
        pthread_mutex_lock(&s->metrics.mu);
        int busy = s->metrics.http_in_flight;
        pthread_mutex_unlock(&s->metrics.mu);
        if (!busy) break;
        struct timespec ts = {0, 10 * 1000000L};
        nanosleep(&ts, NULL);
    }
    serve_mhd.stop_daemon(s->daemon);
    serve_metrics_destroy(&s->metrics);
    free(s);
}
