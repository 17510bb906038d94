/* Server counters for GET /metrics (Prometheus text format) beside the engine's own statistics. */
#ifndef QVL_SERVE_METRICS_H
#define QVL_SERVE_METRICS_H
#include <pthread.h>

#include "qvl.h"

enum { SERVE_N_STATUS = 8 };   /* HTTP statuses counted one by one (the others under "other") */

typedef struct {
    pthread_mutex_t mu;
    long long http_by_status[SERVE_N_STATUS + 1];
    long long chat_ok, chat_failed, chat_cancelled, chat_stopped_by_string;
    long long prompt_tokens, completion_tokens;
    double ttft_sum, latency_sum;
    long long ttft_count, latency_count;
    int http_in_flight;
} serve_metrics;

void serve_metrics_init(serve_metrics *m);
void serve_metrics_destroy(serve_metrics *m);
void serve_metrics_http(serve_metrics *m, int status);
/* One finished chat request: outcome 0 ok, 1 failed, 2 cancelled (client gone or shutdown). */
void serve_metrics_chat(serve_metrics *m, int outcome, int stopped_by_string, int prompt_tokens,
                        int completion_tokens, double ttft_s, double latency_s);
void serve_metrics_in_flight(serve_metrics *m, int delta);

/* The whole /metrics page (malloc'd): these counters, and the engine's when e is not NULL. */
char *serve_metrics_text(serve_metrics *m, qvl_engine *e, const char *model);

#endif
