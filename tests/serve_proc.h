/* `qvl serve` as a child process of a test, and a raw HTTP/1.1 client over sockets (no library:
 * the tests also send what a library never would: truncated bodies, garbage, slow headers). */
#ifndef QVL_TESTS_SERVE_PROC_H
#define QVL_TESTS_SERVE_PROC_H
#include <stddef.h>
#include <sys/types.h>

typedef struct {
    pid_t pid;
    int port;
    char log[600];            /* the server's stderr */
} serve_proc;

/* Starts `$QVL_BIN serve --port 0 ARGS` (stderr to a file in the test's folder) and waits up to
 * timeout_s for its "listening on" line. 0, or -1 (the server is killed; its log stays). */
int serve_proc_start(serve_proc *p, const char *args, int timeout_s);
/* Sends sig and waits up to timeout_s for the exit: its exit status, 128 + signal if a signal
 * ended it, or -1 if it had to be killed (SIGKILL). */
int serve_proc_stop(serve_proc *p, int sig, int timeout_s);
/* The server's stderr so far (malloc'd). */
char *serve_proc_log(const serve_proc *p);

typedef struct {
    int status;               /* HTTP status; 0 when no status line came back */
    char *head;               /* status line and headers */
    char *body;               /* de-chunked, NUL-terminated */
    size_t body_len;
} http_reply;

/* A connected socket to 127.0.0.1:port, or -1. */
int http_connect(int port);
/* Writes all of data; 0 or -1. */
int http_send_all(int fd, const void *data, size_t n);
/* Reads a reply until the server closes the connection or timeout_ms passes; 0 or -1 (nothing). */
int http_read_reply(int fd, int timeout_ms, http_reply *r);
/* One request on its own connection ("Connection: close"): method, path, JSON body (may be NULL). */
int http_request(int port, const char *method, const char *path, const char *body, http_reply *r, int timeout_ms);
void http_reply_free(http_reply *r);

/* The concatenated "content" deltas of a server-sent event stream of chat.completion.chunk
 * objects (malloc'd), with the finish_reason of the last chunk that has one, and whether the
 * stream ended with "data: [DONE]". NULL if an event is not valid JSON. */
char *sse_content(const char *body, char *finish, size_t finish_len, int *done);

/* "data:image/png;base64,..." of the file at path (malloc'd), NULL if unreadable. */
char *data_url_of_file(const char *path, const char *mime);

/* The value of a sample line "name value" (or "name{labels} value": pass the name with its
 * labels) in a Prometheus text page, or -1 if absent. */
double metric_value(const char *page, const char *name);

#endif
