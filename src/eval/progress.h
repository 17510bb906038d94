/* A progress display on stderr for `qvl eval`: on a terminal one bar redrawn in place, otherwise
 * (a log file, CI) a plain line every 5% or 30 s. Shows done/total, samples/s, ETA and the
 * running accuracy. The caller may force a mode (the CLI: QVL_PROGRESS=tty|plain|off). */
#ifndef QVL_EVAL_PROGRESS_H
#define QVL_EVAL_PROGRESS_H
#include <stddef.h>
#include <stdio.h>

typedef enum { QVL_PROGRESS_OFF, QVL_PROGRESS_PLAIN, QVL_PROGRESS_TTY } qvl_progress_mode;

typedef struct {
    FILE *out;
    qvl_progress_mode mode;
    long total;             /* samples in the run */
    long done, correct;     /* finished so far (resumed ones included) */
    long done_at_start;     /* resumed samples: the rate counts only this invocation's */
    double t_start, t_last_print;
    long last_printed_done;
} qvl_progress;

/* mode < 0: detect (TTY if out is a terminal, else PLAIN). */
void qvl_progress_start(qvl_progress *p, FILE *out, int mode, long total, long done, long correct);
/* One sample finished. */
void qvl_progress_step(qvl_progress *p, int correct);
/* Final line (a newline after the bar on a terminal). */
void qvl_progress_finish(qvl_progress *p);
/* The status text at time `now` (seconds, same clock as t_start), e.g.
 * "12/16 75.0% | 2.50 samples/s | ETA 2s | acc 83.33%". */
void qvl_progress_format(const qvl_progress *p, double now, char *buf, size_t n);
/* Monotonic seconds. */
double qvl_now_s(void);

#endif
