/* Prometheus text exposition (version 0.0.4) of the server's and the engine's counters. */
#include "serve/metrics.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const int counted_status[SERVE_N_STATUS] = {200, 400, 404, 405, 413, 429, 500, 503};

void serve_metrics_init(serve_metrics *m) {
    memset(m, 0, sizeof *m);
    pthread_mutex_init(&m->mu, NULL);
}

void serve_metrics_destroy(serve_metrics *m) { pthread_mutex_destroy(&m->mu); }

void serve_metrics_http(serve_metrics *m, int status) {
    int k = SERVE_N_STATUS;
    for (int i = 0; i < SERVE_N_STATUS; i++)
        if (counted_status[i] == status) k = i;
    pthread_mutex_lock(&m->mu);
    m->http_by_status[k]++;
    pthread_mutex_unlock(&m->mu);
}

void serve_metrics_chat(serve_metrics *m, int outcome, int stopped_by_string, int prompt_tokens,
                        int completion_tokens, double ttft_s, double latency_s) {
    pthread_mutex_lock(&m->mu);
    if (outcome == 0) m->chat_ok++;
    else if (outcome == 1) m->chat_failed++;
    else m->chat_cancelled++;
    m->chat_stopped_by_string += stopped_by_string != 0;
    m->prompt_tokens += prompt_tokens;
    m->completion_tokens += completion_tokens;
    if (ttft_s >= 0) m->ttft_sum += ttft_s, m->ttft_count++;
    if (outcome == 0) m->latency_sum += latency_s, m->latency_count++;
    pthread_mutex_unlock(&m->mu);
}

void serve_metrics_in_flight(serve_metrics *m, int delta) {
    pthread_mutex_lock(&m->mu);
    m->http_in_flight += delta;
    pthread_mutex_unlock(&m->mu);
}

typedef struct {
    char *p;
    size_t len, cap;
    int oom;
} text_buf;

static void put(text_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(text_buf *b, const char *fmt, ...) {
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = b->oom ? 0 : vsnprintf(b->p ? b->p + b->len : NULL, b->p ? b->cap - b->len : 0, fmt, ap);
        va_end(ap);
        if (b->oom || n < 0) return;
        if (b->p && b->len + (size_t)n < b->cap) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = (b->cap ? b->cap * 2 : 4096) + (size_t)n;
        char *q = realloc(b->p, cap);
        if (!q) {
            b->oom = 1;
            return;
        }
        b->p = q;
        b->cap = cap;
    }
}

static void metric(text_buf *b, const char *name, const char *type, const char *help) {
    put(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

char *serve_metrics_text(serve_metrics *m, qvl_engine *e, const char *model) {
    text_buf b = {0};
    serve_metrics s;
    pthread_mutex_lock(&m->mu);
    s = *m;
    pthread_mutex_unlock(&m->mu);
    metric(&b, "qvl_http_requests_total", "counter", "HTTP requests answered, by status code");
    for (int i = 0; i <= SERVE_N_STATUS; i++) {
        if (i < SERVE_N_STATUS) put(&b, "qvl_http_requests_total{code=\"%d\"} %lld\n", counted_status[i], s.http_by_status[i]);
        else put(&b, "qvl_http_requests_total{code=\"other\"} %lld\n", s.http_by_status[i]);
    }
    metric(&b, "qvl_http_requests_in_flight", "gauge", "HTTP requests being answered now");
    put(&b, "qvl_http_requests_in_flight %d\n", s.http_in_flight);
    metric(&b, "qvl_chat_requests_total", "counter", "chat completions finished, by outcome");
    put(&b, "qvl_chat_requests_total{outcome=\"ok\"} %lld\n", s.chat_ok);
    put(&b, "qvl_chat_requests_total{outcome=\"failed\"} %lld\n", s.chat_failed);
    put(&b, "qvl_chat_requests_total{outcome=\"cancelled\"} %lld\n", s.chat_cancelled);
    metric(&b, "qvl_chat_stop_string_total", "counter", "chat completions ended by a stop string");
    put(&b, "qvl_chat_stop_string_total %lld\n", s.chat_stopped_by_string);
    metric(&b, "qvl_prompt_tokens_total", "counter", "prompt tokens of finished chat completions (image tokens included)");
    put(&b, "qvl_prompt_tokens_total %lld\n", s.prompt_tokens);
    metric(&b, "qvl_completion_tokens_total", "counter", "generated tokens of finished chat completions");
    put(&b, "qvl_completion_tokens_total %lld\n", s.completion_tokens);
    metric(&b, "qvl_time_to_first_token_seconds", "summary", "request arrival to its first generated text");
    put(&b, "qvl_time_to_first_token_seconds_sum %.6f\nqvl_time_to_first_token_seconds_count %lld\n", s.ttft_sum,
        s.ttft_count);
    metric(&b, "qvl_request_latency_seconds", "summary", "request arrival to its last token, successful requests");
    put(&b, "qvl_request_latency_seconds_sum %.6f\nqvl_request_latency_seconds_count %lld\n", s.latency_sum,
        s.latency_count);
    if (e) {
        qvl_engine_stats st;
        qvl_engine_stats_get(e, &st);
        metric(&b, "qvl_engine_requests_waiting", "gauge", "requests queued in the engine, not yet running");
        put(&b, "qvl_engine_requests_waiting %d\n", st.waiting);
        metric(&b, "qvl_engine_requests_running", "gauge", "sequences in the running batch");
        put(&b, "qvl_engine_requests_running %d\n", st.running);
        metric(&b, "qvl_engine_max_batch", "gauge", "sequences in flight at most");
        put(&b, "qvl_engine_max_batch %d\n", st.max_batch);
        metric(&b, "qvl_kv_blocks_used", "gauge", "KV-cache blocks in use");
        put(&b, "qvl_kv_blocks_used %d\n", st.kv_blocks_used);
        metric(&b, "qvl_kv_blocks_total", "gauge", "KV-cache blocks in the pool");
        put(&b, "qvl_kv_blocks_total %d\n", st.kv_blocks_total);
        metric(&b, "qvl_kv_block_tokens", "gauge", "tokens per KV-cache block");
        put(&b, "qvl_kv_block_tokens %d\n", st.kv_block_tokens);
        metric(&b, "qvl_engine_requests_finished_total", "counter", "requests the engine finished");
        put(&b, "qvl_engine_requests_finished_total %lld\n", st.requests_finished);
        metric(&b, "qvl_engine_requests_failed_total", "counter", "requests the engine ended with an error");
        put(&b, "qvl_engine_requests_failed_total %lld\n", st.requests_failed);
        metric(&b, "qvl_engine_prompt_tokens_total", "counter", "prompt tokens the engine processed");
        put(&b, "qvl_engine_prompt_tokens_total %lld\n", st.prompt_tokens);
        metric(&b, "qvl_engine_generated_tokens_total", "counter", "tokens the engine generated");
        put(&b, "qvl_engine_generated_tokens_total %lld\n", st.generated_tokens);
        qvl_memory_info mi;
        if (qvl_engine_memory(e, &mi) == 0) {
            metric(&b, "qvl_memory_peak_mib", "gauge", "peak memory of this process, MiB (see the measure label)");
            put(&b, "qvl_memory_peak_mib{measure=\"%s\"} %.1f\n", mi.peak_measure ? mi.peak_measure : "", mi.peak_mib);
            if (mi.has_plan) {
                metric(&b, "qvl_gpu_memory_used_peak_mib", "gauge", "cudaMemGetInfo total - free, highest sampled, MiB");
                put(&b, "qvl_gpu_memory_used_peak_mib %.1f\n", mi.cuda_used_peak_mib);
                metric(&b, "qvl_gpu_memory_plan_mib", "gauge", "the memory plan made at open, MiB");
                put(&b, "qvl_gpu_memory_plan_mib %.1f\n", mi.plan_total);
                metric(&b, "qvl_gpu_arena_mib", "gauge", "the device arena reserved at open, MiB");
                put(&b, "qvl_gpu_arena_mib %.1f\n", mi.arena_mib);
            }
        }
    }
    metric(&b, "qvl_model_info", "gauge", "the model served (always 1)");
    put(&b, "qvl_model_info{model=\"");
    for (const char *c = model; *c; c++) put(&b, "%s%c", *c == '"' || *c == '\\' ? "\\" : "", *c == '\n' ? ' ' : *c);
    put(&b, "\"} 1\n");
    if (b.oom) {
        free(b.p);
        return NULL;
    }
    return b.p;
}
