/* A fixed set of pthreads over one FIFO of items (workers.h). */
#include "engine/workers.h"

#include <pthread.h>
#include <stdlib.h>

#include "util/error.h"

typedef struct item_node {
    void *item;
    struct item_node *next;
} item_node;

struct qvl_workers {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    item_node *head, *tail;
    int stop;
    qvl_work_fn fn;
    void *ctx;
    pthread_t *threads;
    int n;
};

static void *worker_main(void *arg) {
    qvl_workers *w = arg;
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (!w->head && !w->stop) pthread_cond_wait(&w->cv, &w->mu);
        if (w->stop) break;
        item_node *n = w->head;
        w->head = n->next;
        if (!w->head) w->tail = NULL;
        pthread_mutex_unlock(&w->mu);
        w->fn(w->ctx, n->item);
        free(n);
        pthread_mutex_lock(&w->mu);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

qvl_workers *qvl_workers_new(int n, qvl_work_fn fn, void *ctx) {
    qvl_workers *w = calloc(1, sizeof *w);
    if (!w || n < 1 || !(w->threads = calloc((size_t)n, sizeof *w->threads))) {
        free(w);
        qvl_errorf("workers: out of memory");
        return NULL;
    }
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    w->fn = fn;
    w->ctx = ctx;
    for (int i = 0; i < n; i++) {
        if (pthread_create(&w->threads[i], NULL, worker_main, w)) break;
        w->n++;
    }
    if (!w->n) {
        qvl_workers_free(w);
        qvl_errorf("workers: cannot start a thread");
        return NULL;
    }
    return w;
}

int qvl_workers_push(qvl_workers *w, void *item) {
    item_node *n = malloc(sizeof *n);
    if (!n) return -1;
    n->item = item;
    n->next = NULL;
    pthread_mutex_lock(&w->mu);
    if (w->tail) w->tail->next = n;
    else w->head = n;
    w->tail = n;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    return 0;
}

void qvl_workers_free(qvl_workers *w) {
    if (!w) return;
    pthread_mutex_lock(&w->mu);
    w->stop = 1;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    for (int i = 0; i < w->n; i++) pthread_join(w->threads[i], NULL);
    for (item_node *n = w->head, *next; n; n = next) {
        next = n->next;
        free(n);
    }
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
    free(w->threads);
    free(w);
}
