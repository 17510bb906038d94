/* `qvl serve` as a child process and a raw HTTP client (see serve_proc.h). */
#include "serve_proc.h"

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "test.h"
#include "util/file.h"

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

char *serve_proc_log(const serve_proc *p) {
    size_t n;
    char *s = qvl_read_file(p->log, &n);
    return s ? s : strdup("");
}

int serve_proc_start(serve_proc *p, const char *args, int timeout_s) {
    static int count;
    const char *bin = getenv("QVL_BIN");
    if (!bin) bin = "build/qvl";
    memset(p, 0, sizeof *p);
    snprintf(p->log, sizeof p->log, "%s/serve%d.log", test_tmpdir(), count++);
    size_t n = strlen(bin) + strlen(args) + strlen(p->log) + 64;
    char *cmd = malloc(n);
    snprintf(cmd, n, "exec %s serve --port 0 %s </dev/null >/dev/null 2>%s", bin, args, p->log);
    pid_t pid = fork();
    if (pid == 0) {
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    free(cmd);
    if (pid < 0) return -1;
    p->pid = pid;
    double end = now_s() + timeout_s;
    while (now_s() < end) {
        char *log = serve_proc_log(p);
        const char *at = strstr(log, "listening on http://");
        if (at) {
            const char *colon = strrchr(at, ':');
            p->port = atoi(colon + 1);
        }
        free(log);
        if (p->port > 0) return 0;
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            p->pid = 0;
            return -1;
        }
        usleep(20000);
    }
    serve_proc_stop(p, SIGKILL, 5);
    return -1;
}

int serve_proc_stop(serve_proc *p, int sig, int timeout_s) {
    if (p->pid <= 0) return -1;
    kill(p->pid, sig);
    double end = now_s() + timeout_s;
    int st = 0;
    for (;;) {
        pid_t r = waitpid(p->pid, &st, WNOHANG);
        if (r == p->pid) break;
        if (r < 0 && errno != EINTR) return -1;
        if (now_s() > end) {
            kill(p->pid, SIGKILL);
            waitpid(p->pid, &st, 0);
            p->pid = 0;
            return -1;
        }
        usleep(10000);
    }
    p->pid = 0;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
}

/* ---- HTTP ---- */

int http_connect(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a)) {
        close(fd);
        return -1;
    }
    return fd;
}

int http_send_all(int fd, const void *data, size_t n) {
    const char *p = data;
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Decodes a chunked body in place; returns its length. */
static size_t dechunk(char *b, size_t n) {
    size_t in = 0, out = 0;
    while (in < n) {
        char *end;
        unsigned long len = strtoul(b + in, &end, 16);
        char *crlf = strstr(b + in, "\r\n");
        if (!crlf || end == b + in) break;
        in = (size_t)(crlf - b) + 2;
        if (len == 0 || in + len > n) break;
        memmove(b + out, b + in, len);
        out += len;
        in += len + 2;
    }
    b[out] = 0;
    return out;
}

int http_read_reply(int fd, int timeout_ms, http_reply *r) {
    memset(r, 0, sizeof *r);
    size_t cap = 65536, len = 0;
    char *buf = malloc(cap);
    double end = now_s() + timeout_ms / 1000.0;
    for (;;) {
        int left = (int)((end - now_s()) * 1000);
        if (left <= 0) break;
        struct pollfd pf = {.fd = fd, .events = POLLIN};
        if (poll(&pf, 1, left) <= 0) break;
        if (len + 4096 > cap) buf = realloc(buf, cap *= 2);
        ssize_t got = recv(fd, buf + len, cap - len - 1, 0);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) break;
        len += (size_t)got;
    }
    buf[len] = 0;
    if (!len) {
        free(buf);
        return -1;
    }
    char *sep = strstr(buf, "\r\n\r\n");
    size_t head_len = sep ? (size_t)(sep - buf) : len;
    r->head = strndup(buf, head_len);
    sscanf(buf, "HTTP/1.%*d %d", &r->status);
    size_t body_at = sep ? head_len + 4 : len;
    r->body_len = len - body_at;
    r->body = malloc(r->body_len + 1);
    memcpy(r->body, buf + body_at, r->body_len);
    r->body[r->body_len] = 0;
    if (strcasestr(r->head, "Transfer-Encoding: chunked")) r->body_len = dechunk(r->body, r->body_len);
    free(buf);
    return 0;
}

int http_request(int port, const char *method, const char *path, const char *body, http_reply *r, int timeout_ms) {
    memset(r, 0, sizeof *r);
    int fd = http_connect(port);
    if (fd < 0) return -1;
    size_t bl = body ? strlen(body) : 0;
    char head[512];
    int hl = snprintf(head, sizeof head, "%s %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n", method, path,
                      port);
    if (body)
        hl += snprintf(head + hl, sizeof head - (size_t)hl, "Content-Type: application/json\r\nContent-Length: %zu\r\n",
                       bl);
    hl += snprintf(head + hl, sizeof head - (size_t)hl, "\r\n");
    int rc = -1;
    if (http_send_all(fd, head, (size_t)hl) == 0 && (!body || http_send_all(fd, body, bl) == 0))
        rc = http_read_reply(fd, timeout_ms, r);
    close(fd);
    return rc;
}

void http_reply_free(http_reply *r) {
    free(r->head);
    free(r->body);
    memset(r, 0, sizeof *r);
}

char *sse_content(const char *body, char *finish, size_t finish_len, int *done) {
    size_t cap = 256, len = 0;
    char *out = calloc(1, cap);
    if (finish_len) finish[0] = 0;
    *done = 0;
    for (const char *p = body; p && (p = strstr(p, "data: ")); p++) {
        p += 6;
        const char *e = strstr(p, "\n\n");
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (n == 6 && !strncmp(p, "[DONE]", 6)) {
            *done = 1;
            continue;
        }
        cJSON *j = cJSON_ParseWithLength(p, n);
        if (!j) {
            free(out);
            return NULL;
        }
        const cJSON *ch = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "choices"), 0);
        const cJSON *c = cJSON_GetObjectItem(cJSON_GetObjectItem(ch, "delta"), "content");
        if (cJSON_IsString(c)) {
            size_t cl = strlen(c->valuestring);
            if (len + cl + 1 > cap) out = realloc(out, cap = 2 * (len + cl + 1));
            memcpy(out + len, c->valuestring, cl + 1);
            len += cl;
        }
        const cJSON *f = cJSON_GetObjectItem(ch, "finish_reason");
        if (cJSON_IsString(f) && finish_len) snprintf(finish, finish_len, "%s", f->valuestring);
        cJSON_Delete(j);
    }
    return out;
}

char *data_url_of_file(const char *path, const char *mime) {
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t n;
    unsigned char *d = (unsigned char *)qvl_read_file(path, &n);
    if (!d) return NULL;
    size_t pre = strlen(mime) + 13, len = pre + (n + 2) / 3 * 4;
    char *out = malloc(len + 1);
    char *o = out + snprintf(out, pre + 1, "data:%s;base64,", mime);
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned)d[i] << 16 | (i + 1 < n ? (unsigned)d[i + 1] << 8 : 0) | (i + 2 < n ? d[i + 2] : 0);
        *o++ = tab[v >> 18 & 63];
        *o++ = tab[v >> 12 & 63];
        *o++ = i + 1 < n ? tab[v >> 6 & 63] : '=';
        *o++ = i + 2 < n ? tab[v & 63] : '=';
    }
    *o = 0;
    free(d);
    return out;
}

double metric_value(const char *page, const char *name) {
    size_t nl = strlen(name);
    for (const char *p = page; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
        if (!strncmp(p, name, nl) && p[nl] == ' ') return strtod(p + nl + 1, NULL);
    return -1;
}
