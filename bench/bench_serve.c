/* Load benchmark of a running `qvl serve`: N concurrent clients, each sending streamed chat
 * completions one after another, with OCRBench-shaped requests (an image of an OCRBench size and
 * its question). Reports per concurrency level: requests/s, generated tokens/s, latency and
 * time-to-first-token percentiles, and that no request was lost; then the server's own counters
 * (GET /metrics: requests, KV blocks, GPU memory beside the plan).
 *
 *   make build/bench_serve
 *   build/qvl serve --model DIR --port 8080 &
 *   build/bench_serve [--port 8080] [--clients 1,8,32,128] [--requests N] [--max-tokens 32]
 *                     [--shapes bench/workload/ocrbench_shapes.tsv | --data OCRBench.json [--images DIR]]
 *                     [--json OUT.json]
 *
 * --shapes: synthetic images (light background, dark text-like strokes, PNG) with the sizes and
 * questions of the OCRBench shapes table (the real images are not redistributable); --data: real
 * OCRBench.json items with their images. Requests per level: --requests (default 4 x clients, at
 * least 32), taken in table order from a per-level offset. Every request is greedy (temperature 0)
 * and streamed with usage, so that TTFT and token counts come from the stream itself. */
#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <netdb.h>
#include <png.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* ---- workload ---- */

typedef struct {
    int width, height;        /* synthetic image (shapes table) */
    char *image_path;         /* or a real file (--data) */
    char *question;
} item;

static char *read_file(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)len + 1);
    *n = fread(b, 1, (size_t)len, f);
    b[*n] = 0;
    fclose(f);
    return b;
}

static int load_shapes(const char *path, item **out) {
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "bench_serve: %s: %s\n", path, strerror(errno));
        return -1;
    }
    char line[8192];
    int n = 0, cap = 0;
    item *it = NULL;
    if (!fgets(line, sizeof line, f)) n = 0;   /* header */
    while (fgets(line, sizeof line, f)) {
        /* index dataset type width height question_json answer_json */
        char *col[7] = {0};
        char *p = line;
        for (int c = 0; c < 7 && p; c++) {
            col[c] = p;
            p = strchr(p, '\t');
            if (p) *p++ = 0;
        }
        if (!col[5]) continue;
        cJSON *q = cJSON_Parse(col[5]);
        if (n == cap) it = realloc(it, (size_t)(cap = cap ? 2 * cap : 1024) * sizeof *it);
        it[n] = (item){atoi(col[3]), atoi(col[4]), NULL, strdup(cJSON_IsString(q) ? q->valuestring : "what is written in the image?")};
        cJSON_Delete(q);
        if (it[n].width > 0 && it[n].height > 0) n++;
    }
    fclose(f);
    *out = it;
    return n;
}

static int load_data(const char *path, const char *images, item **out) {
    size_t len;
    char *s = read_file(path, &len);
    cJSON *j = s ? cJSON_Parse(s) : NULL;
    free(s);
    if (!cJSON_IsArray(j)) {
        fprintf(stderr, "bench_serve: %s: not an OCRBench.json array\n", path);
        cJSON_Delete(j);
        return -1;
    }
    char dir[4096];
    if (images) snprintf(dir, sizeof dir, "%s", images);
    else {
        snprintf(dir, sizeof dir, "%s", path);
        char *slash = strrchr(dir, '/');
        if (slash) *slash = 0;
        else snprintf(dir, sizeof dir, ".");
    }
    int n = cJSON_GetArraySize(j), k = 0;
    item *it = calloc((size_t)n, sizeof *it);
    for (cJSON *e = j->child; e; e = e->next) {
        const cJSON *ip = cJSON_GetObjectItem(e, "image_path"), *q = cJSON_GetObjectItem(e, "question");
        if (!cJSON_IsString(ip) || !cJSON_IsString(q)) continue;
        size_t pl = strlen(dir) + strlen(ip->valuestring) + 2;
        it[k].image_path = malloc(pl);
        snprintf(it[k].image_path, pl, "%s/%s", dir, ip->valuestring);
        it[k++].question = strdup(q->valuestring);
    }
    cJSON_Delete(j);
    *out = it;
    return k;
}

/* ---- images ---- */

typedef struct {
    unsigned char *p;
    size_t n, cap;
} membuf;

static void png_write_mem(png_structp png, png_bytep data, png_size_t len) {
    membuf *b = png_get_io_ptr(png);
    if (b->n + len > b->cap) {
        b->cap = (b->n + len) * 2;
        b->p = realloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, data, len);
    b->n += len;
}
static void png_flush_mem(png_structp png) { (void)png; }

/* A light image with dark strokes in text-like rows (deterministic per seed), as PNG bytes. */
static unsigned char *synth_png(int w, int h, unsigned seed, size_t *n) {
    unsigned char *rgb = malloc((size_t)w * h * 3);
    for (size_t i = 0; i < (size_t)w * h * 3; i++) rgb[i] = (unsigned char)(235 + (i / 3 % 7));
    unsigned r = seed * 2654435761u + 1;
    int row_h = h < 24 ? h : 12 + (int)(r % 20);
    for (int y0 = 2; y0 + row_h <= h; y0 += row_h + row_h / 2) {
        for (int x = 2; x + 4 < w;) {
            r = r * 1103515245u + 12345u;
            int gw = 2 + (int)(r >> 16) % (row_h / 2 + 2);
            if ((r >> 8) % 5)
                for (int y = y0; y < y0 + row_h; y++)
                    for (int xx = x; xx < x + gw && xx < w; xx++)
                        if (((xx - x) < 2 || (y - y0) < 2 || (y - y0) > row_h - 3) || ((r >> 3) & 1)) {
                            unsigned char *px = rgb + ((size_t)y * w + xx) * 3;
                            px[0] = px[1] = px[2] = (unsigned char)(20 + (r >> 24) % 40);
                        }
            x += gw + 2 + (int)((r >> 20) % 6);
        }
    }
    membuf b = {0};
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        free(rgb);
        free(b.p);
        return NULL;
    }
    png_set_write_fn(png, &b, png_write_mem, png_flush_mem);
    png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_set_compression_level(png, 1);
    png_write_info(png, info);
    for (int y = 0; y < h; y++) png_write_row(png, rgb + (size_t)y * w * 3);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    free(rgb);
    *n = b.n;
    return b.p;
}

static char *base64(const unsigned char *d, size_t n) {
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *out = malloc((n + 2) / 3 * 4 + 1), *o = out;
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned)d[i] << 16 | (i + 1 < n ? (unsigned)d[i + 1] << 8 : 0) | (i + 2 < n ? d[i + 2] : 0);
        *o++ = tab[v >> 18 & 63];
        *o++ = tab[v >> 12 & 63];
        *o++ = i + 1 < n ? tab[v >> 6 & 63] : '=';
        *o++ = i + 2 < n ? tab[v & 63] : '=';
    }
    *o = 0;
    return out;
}

static char *request_body(const item *it, unsigned seed, int max_tokens) {
    size_t n = 0;
    unsigned char *img = it->image_path ? (unsigned char *)read_file(it->image_path, &n)
                                        : synth_png(it->width, it->height, seed, &n);
    if (!img) {
        fprintf(stderr, "bench_serve: %s: cannot read\n", it->image_path ? it->image_path : "synthetic image");
        return NULL;
    }
    const char *mime = "image/png";
    if (n > 3 && img[0] == 0xff && img[1] == 0xd8) mime = "image/jpeg";
    char *b64 = base64(img, n);
    free(img);
    size_t ul = strlen(b64) + 64;
    char *url = malloc(ul);
    snprintf(url, ul, "data:%s;base64,%s", mime, b64);
    free(b64);
    cJSON *o = cJSON_CreateObject();
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "role", "user");
    cJSON *c = cJSON_AddArrayToObject(m, "content");
    cJSON *pi = cJSON_CreateObject();
    cJSON_AddStringToObject(pi, "type", "image_url");
    cJSON_AddStringToObject(cJSON_AddObjectToObject(pi, "image_url"), "url", url);
    cJSON_AddItemToArray(c, pi);
    cJSON *pt = cJSON_CreateObject();
    cJSON_AddStringToObject(pt, "type", "text");
    cJSON_AddStringToObject(pt, "text", it->question);
    cJSON_AddItemToArray(c, pt);
    cJSON_AddItemToArray(cJSON_AddArrayToObject(o, "messages"), m);
    cJSON_AddNumberToObject(o, "max_tokens", max_tokens);
    cJSON_AddNumberToObject(o, "temperature", 0);
    cJSON_AddTrueToObject(o, "stream");
    cJSON_AddTrueToObject(cJSON_AddObjectToObject(o, "stream_options"), "include_usage");
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    free(url);
    return s;
}

/* Request bodies are built on all cores before a level starts (large PNGs take a while each). */
typedef struct {
    const item *items;
    int n_items, offset, n, max_tokens, failed;
    char **bodies;
    atomic_int next;
} body_job;

static void *body_worker(void *arg) {
    body_job *j = arg;
    for (int i; (i = atomic_fetch_add(&j->next, 1)) < j->n;) {
        int k = (j->offset + i) % j->n_items;
        if (!(j->bodies[i] = request_body(&j->items[k], (unsigned)k, j->max_tokens))) j->failed = 1;
    }
    return NULL;
}

static int build_bodies(const item *items, int n_items, int offset, int n, int max_tokens, char **bodies) {
    body_job j = {.items = items, .n_items = n_items, .offset = offset, .n = n, .max_tokens = max_tokens, .bodies = bodies};
    atomic_init(&j.next, 0);
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    int nt = cores < 1 ? 1 : cores > 32 ? 32 : (int)cores;
    pthread_t th[32];
    int started = 0;
    for (int t = 0; t < nt; t++) started += pthread_create(&th[started], NULL, body_worker, &j) == 0;
    if (!started) body_worker(&j);
    for (int t = 0; t < started; t++) pthread_join(th[t], NULL);
    return j.failed ? -1 : 0;
}

/* ---- HTTP ---- */

static const char *g_host = "127.0.0.1";
static int g_port = 8080;

static int connect_server(void) {
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *ai;
    char port[16];
    snprintf(port, sizeof port, "%d", g_port);
    if (getaddrinfo(g_host, port, &hints, &ai)) return -1;
    int fd = socket(ai->ai_family, SOCK_STREAM, 0);
    if (fd >= 0 && connect(fd, ai->ai_addr, ai->ai_addrlen)) {
        close(fd);
        fd = -1;
    }
    freeaddrinfo(ai);
    return fd;
}

static int send_all(int fd, const char *p, size_t n) {
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* One request: sends, reads the whole (chunked) stream; -1 when no complete answer. */
typedef struct {
    double latency, ttft;
    int status, ok, prompt_tokens, completion_tokens;
} outcome;

static void one_request(const char *method, const char *path, const char *body, outcome *o, char **reply) {
    memset(o, 0, sizeof *o);
    o->ttft = -1;
    if (reply) *reply = NULL;
    int fd = connect_server();
    if (fd < 0) return;
    size_t bl = body ? strlen(body) : 0;
    char head[512];
    int hl = snprintf(head, sizeof head,
                      "%s %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\nContent-Type: application/json\r\n"
                      "Content-Length: %zu\r\n\r\n",
                      method, path, g_host, bl);
    double t0 = now_s();
    if (send_all(fd, head, (size_t)hl) || (body && send_all(fd, body, bl))) {
        close(fd);
        return;
    }
    size_t cap = 1 << 16, len = 0, scanned = 0;
    char *buf = malloc(cap);
    static const char first[] = "\"delta\":{\"content\":\"";
    for (;;) {
        struct pollfd pf = {.fd = fd, .events = POLLIN};
        if (poll(&pf, 1, 600000) <= 0) break;
        if (len + 8192 > cap) buf = realloc(buf, cap *= 2);
        ssize_t got = recv(fd, buf + len, cap - len - 1, 0);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) break;
        len += (size_t)got;
        buf[len] = 0;
        if (o->ttft < 0) {
            char *at = strstr(buf + (scanned > 32 ? scanned - 32 : 0), first);
            if (at && at[sizeof first - 1] && at[sizeof first - 1] != '"') o->ttft = now_s() - t0;
            scanned = len;
        }
    }
    o->latency = now_s() - t0;
    close(fd);
    buf[len] = 0;
    sscanf(buf, "HTTP/1.%*d %d", &o->status);
    const char *u = strstr(buf, "\"usage\":{\"prompt_tokens\":");
    if (u) sscanf(u, "\"usage\":{\"prompt_tokens\":%d,\"completion_tokens\":%d", &o->prompt_tokens, &o->completion_tokens);
    o->ok = o->status == 200 && (!body || (strstr(buf, "data: [DONE]") && !strstr(buf, "data: {\"error\"")));
    if (reply) *reply = buf;
    else free(buf);
}

/* ---- one level ---- */

typedef struct {
    char **bodies;
    int n_bodies;
    atomic_int next;
    outcome *out;
} level;

static void *client_thread(void *p) {
    level *L = p;
    for (;;) {
        int i = atomic_fetch_add(&L->next, 1);
        if (i >= L->n_bodies) break;
        one_request("POST", "/v1/chat/completions", L->bodies[i], &L->out[i], NULL);
    }
    return NULL;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(const double *v, int n, double p) {
    if (n <= 0) return NAN;
    double r = p / 100.0 * (n - 1);
    int lo = (int)floor(r), hi = (int)ceil(r);
    return v[lo] + (v[hi] - v[lo]) * (r - lo);
}

static double metric(const char *page, const char *name) {
    size_t nl = strlen(name);
    for (const char *p = page; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
        if (!strncmp(p, name, nl) && p[nl] == ' ') return strtod(p + nl + 1, NULL);
    return NAN;
}

static char *get_metrics(void) {
    outcome o;
    char *r;
    one_request("GET", "/metrics", NULL, &o, &r);
    return r ? r : strdup("");
}

int main(int argc, char **argv) {
    const char *clients_arg = "1,8,32,128", *shapes = "bench/workload/ocrbench_shapes.tsv", *data = NULL,
               *images = NULL, *json_out = NULL;
    int requests = 0, max_tokens = 32;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--host") && v) g_host = v, i++;
        else if (!strcmp(a, "--port") && v) g_port = atoi(v), i++;
        else if (!strcmp(a, "--clients") && v) clients_arg = v, i++;
        else if (!strcmp(a, "--requests") && v) requests = atoi(v), i++;
        else if (!strcmp(a, "--max-tokens") && v) max_tokens = atoi(v), i++;
        else if (!strcmp(a, "--shapes") && v) shapes = v, i++;
        else if (!strcmp(a, "--data") && v) data = v, i++;
        else if (!strcmp(a, "--images") && v) images = v, i++;
        else if (!strcmp(a, "--json") && v) json_out = v, i++;
        else {
            fprintf(stderr,
                    "usage: bench_serve [--host H] [--port N] [--clients 1,8,32,128] [--requests N] [--max-tokens N]\n"
                    "                   [--shapes TSV | --data OCRBench.json [--images DIR]] [--json OUT.json]\n");
            return 2;
        }
    }
    item *items = NULL;
    int n_items = data ? load_data(data, images, &items) : load_shapes(shapes, &items);
    if (n_items <= 0) {
        fprintf(stderr, "bench_serve: no requests in %s\n", data ? data : shapes);
        return 1;
    }
    outcome ho;
    char *health;
    one_request("GET", "/health", NULL, &ho, &health);
    if (ho.status != 200) {
        fprintf(stderr, "bench_serve: http://%s:%d/health: %s\n", g_host, g_port,
                ho.status ? "not ready" : "no server answers");
        free(health);
        return 1;
    }
    free(health);
    char *m0 = get_metrics();
    printf("server http://%s:%d, %s: %d items, max_tokens %d, greedy, streamed\n\n", g_host, g_port,
           data ? data : shapes, n_items, max_tokens);
    printf("| clients | requests | ok | lost | req/s | gen tok/s | latency p50 / p90 / p99 (s) | TTFT p50 / p90 / p99 (s) |\n");
    printf("| --- | --- | --- | --- | --- | --- | --- | --- |\n");
    fflush(stdout);
    cJSON *jroot = cJSON_CreateObject(), *jlevels = cJSON_AddArrayToObject(jroot, "levels");
    int offset = 0, total_lost = 0;
    for (const char *p = clients_arg; *p;) {
        int nc = atoi(p);
        p = strchr(p, ',') ? strchr(p, ',') + 1 : p + strlen(p);
        if (nc < 1) continue;
        int nr = requests > 0 ? requests : (4 * nc < 32 ? 32 : 4 * nc);
        level L = {.n_bodies = nr};
        L.bodies = calloc((size_t)nr, sizeof *L.bodies);
        L.out = calloc((size_t)nr, sizeof *L.out);
        double tb = now_s();
        if (build_bodies(items, n_items, offset, nr, max_tokens, L.bodies)) return 1;
        offset = (offset + nr) % n_items;
        fprintf(stderr, "bench_serve: %d request bodies built in %.1f s\n", nr, now_s() - tb);
        pthread_t *th = calloc((size_t)nc, sizeof *th);
        double t0 = now_s();
        for (int i = 0; i < nc; i++) pthread_create(&th[i], NULL, client_thread, &L);
        for (int i = 0; i < nc; i++) pthread_join(th[i], NULL);
        double wall = now_s() - t0;
        double *lat = calloc((size_t)nr, sizeof *lat), *ttft = calloc((size_t)nr, sizeof *ttft);
        int ok = 0, nt = 0;
        long long gen = 0;
        for (int i = 0; i < nr; i++) {
            if (!L.out[i].ok) continue;
            lat[ok++] = L.out[i].latency;
            if (L.out[i].ttft >= 0) ttft[nt++] = L.out[i].ttft;
            gen += L.out[i].completion_tokens;
        }
        qsort(lat, (size_t)ok, sizeof *lat, cmp_double);
        qsort(ttft, (size_t)nt, sizeof *ttft, cmp_double);
        int lost = nr - ok;
        total_lost += lost;
        printf("| %d | %d | %d | %d | %.2f | %.1f | %.3f / %.3f / %.3f | %.3f / %.3f / %.3f |\n", nc, nr, ok, lost,
               ok / wall, gen / wall, pct(lat, ok, 50), pct(lat, ok, 90), pct(lat, ok, 99), pct(ttft, nt, 50),
               pct(ttft, nt, 90), pct(ttft, nt, 99));
        fflush(stdout);
        for (int i = 0; i < nr && lost; i++)
            if (!L.out[i].ok) fprintf(stderr, "  request %d: status %d\n", i, L.out[i].status);
        cJSON *jl = cJSON_CreateObject();
        cJSON_AddNumberToObject(jl, "clients", nc);
        cJSON_AddNumberToObject(jl, "requests", nr);
        cJSON_AddNumberToObject(jl, "ok", ok);
        cJSON_AddNumberToObject(jl, "lost", lost);
        cJSON_AddNumberToObject(jl, "wall_s", wall);
        cJSON_AddNumberToObject(jl, "requests_per_s", ok / wall);
        cJSON_AddNumberToObject(jl, "generated_tokens_per_s", gen / wall);
        const double ps[] = {50, 90, 99};
        const char *pn[] = {"p50", "p90", "p99"};
        cJSON *jlat = cJSON_AddObjectToObject(jl, "latency_s"), *jtt = cJSON_AddObjectToObject(jl, "ttft_s");
        for (int k = 0; k < 3; k++) {
            if (ok) cJSON_AddNumberToObject(jlat, pn[k], pct(lat, ok, ps[k]));
            if (nt) cJSON_AddNumberToObject(jtt, pn[k], pct(ttft, nt, ps[k]));
        }
        cJSON_AddItemToArray(jlevels, jl);
        for (int i = 0; i < nr; i++) free(L.bodies[i]);
        free(L.bodies);
        free(L.out);
        free(lat);
        free(ttft);
        free(th);
    }
    char *m1 = get_metrics();
    double ok0 = metric(m0, "qvl_chat_requests_total{outcome=\"ok\"}"),
           ok1 = metric(m1, "qvl_chat_requests_total{outcome=\"ok\"}");
    printf("\nserver: %.0f chat completions ok during the run, %.0f failed, %.0f cancelled in all; "
           "KV blocks %.0f used of %.0f; max batch %.0f\n",
           ok1 - ok0, metric(m1, "qvl_chat_requests_total{outcome=\"failed\"}"),
           metric(m1, "qvl_chat_requests_total{outcome=\"cancelled\"}"), metric(m1, "qvl_kv_blocks_used"),
           metric(m1, "qvl_kv_blocks_total"), metric(m1, "qvl_engine_max_batch"));
    double used = metric(m1, "qvl_gpu_memory_used_peak_mib"), plan = metric(m1, "qvl_gpu_memory_plan_mib");
    if (!isnan(used))
        printf("GPU memory: peak %.0f MiB used (cudaMemGetInfo), plan %.0f MiB: %s\n", used, plan,
               used <= plan * 1.02 + 64 ? "within the plan" : "ABOVE the plan");
    cJSON_AddNumberToObject(jroot, "server_ok", ok1 - ok0);
    if (!isnan(used)) {
        cJSON_AddNumberToObject(jroot, "gpu_used_peak_mib", used);
        cJSON_AddNumberToObject(jroot, "gpu_plan_mib", plan);
    }
    if (json_out) {
        char *s = cJSON_Print(jroot);
        FILE *f = fopen(json_out, "w");
        if (f) {
            fputs(s, f);
            fputc('\n', f);
            fclose(f);
        } else {
            fprintf(stderr, "bench_serve: %s: %s\n", json_out, strerror(errno));
        }
        free(s);
    }
    cJSON_Delete(jroot);
    free(m0);
    free(m1);
    for (int i = 0; i < n_items; i++) {
        free(items[i].image_path);
        free(items[i].question);
    }
    free(items);
    return total_lost ? 1 : 0;
}
