/* Progress display (see progress.h). */
#include "eval/progress.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

double qvl_now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

void qvl_progress_start(qvl_progress *p, FILE *out, int mode, long total, long done, long correct) {
    memset(p, 0, sizeof *p);
    p->out = out;
    if (mode < 0) mode = isatty(fileno(out)) ? QVL_PROGRESS_TTY : QVL_PROGRESS_PLAIN;
    p->mode = (qvl_progress_mode)mode;
    p->total = total;
    p->done = p->done_at_start = p->last_printed_done = done;
    p->correct = correct;
    p->t_start = p->t_last_print = qvl_now_s();
    if (p->mode != QVL_PROGRESS_OFF && done > 0)
        fprintf(out, "qvl eval: resuming: %ld of %ld samples already done\n", done, total);
}

static void format_duration(double s, char *buf, size_t n) {
    long t = (long)(s + 0.5);
    if (t >= 3600) snprintf(buf, n, "%ldh%02ldm", t / 3600, t / 60 % 60);
    else if (t >= 60) snprintf(buf, n, "%ldm%02lds", t / 60, t % 60);
    else snprintf(buf, n, "%lds", t);
}

void qvl_progress_format(const qvl_progress *p, double now, char *buf, size_t n) {
    double elapsed = now - p->t_start;
    long ran = p->done - p->done_at_start;
    double rate = elapsed > 0 && ran > 0 ? (double)ran / elapsed : 0;
    char eta[32] = "?";
    if (p->done >= p->total) snprintf(eta, sizeof eta, "0s");
    else if (rate > 0) format_duration((double)(p->total - p->done) / rate, eta, sizeof eta);
    snprintf(buf, n, "%ld/%ld %.1f%% | %.2f samples/s | ETA %s | acc %.2f%%", p->done, p->total,
             p->total ? 100.0 * (double)p->done / (double)p->total : 100.0, rate, eta,
             p->done ? 100.0 * (double)p->correct / (double)p->done : 0.0);
}

static void draw(qvl_progress *p, double now) {
    char text[160];
    qvl_progress_format(p, now, text, sizeof text);
    if (p->mode == QVL_PROGRESS_TTY) {
        enum { WIDTH = 30 };
        int fill = p->total ? (int)(WIDTH * p->done / p->total) : WIDTH;
        char bar[WIDTH + 1];
        for (int i = 0; i < WIDTH; i++) bar[i] = i < fill ? '#' : '.';
        bar[WIDTH] = 0;
        fprintf(p->out, "\r[%s] %s\033[K", bar, text);   /* \033[K: clear the rest of the line */
    } else {
        fprintf(p->out, "qvl eval: %s\n", text);
    }
    fflush(p->out);
    p->t_last_print = now;
    p->last_printed_done = p->done;
}

void qvl_progress_step(qvl_progress *p, int correct) {
    p->done++;
    p->correct += correct != 0;
    if (p->mode == QVL_PROGRESS_OFF) return;
    double now = qvl_now_s();
    if (p->mode == QVL_PROGRESS_TTY) {
        if (now - p->t_last_print >= 0.1 || p->done == p->total) draw(p, now);
        return;
    }
    long every = p->total / 20 > 0 ? p->total / 20 : 1;
    if (p->done - p->last_printed_done >= every || now - p->t_last_print >= 30 || p->done == p->total) draw(p, now);
}

void qvl_progress_finish(qvl_progress *p) {
    if (p->mode == QVL_PROGRESS_OFF) return;
    if (p->last_printed_done != p->done) draw(p, qvl_now_s());
    if (p->mode == QVL_PROGRESS_TTY) {
        fputc('\n', p->out);
        fflush(p->out);
    }
}
