/* The eval progress display: the status text, plain-mode line cadence, TTY redraw. */
#include <stdio.h>
#include <stdlib.h>

#include "eval/progress.h"
#include "test.h"

TEST(eval_progress_format) {
    qvl_progress p;
    qvl_progress_start(&p, stderr, QVL_PROGRESS_OFF, 16, 4, 3);
    p.done = 12;            /* 8 ran in this invocation in 4 s: 2 samples/s, 4 left: ETA 2 s */
    p.correct = 10;
    char buf[160];
    qvl_progress_format(&p, p.t_start + 4.0, buf, sizeof buf);
    CHECK_STR(buf, "12/16 75.0% | 2.00 samples/s | ETA 2s | acc 83.33%");
    p.total = 10000;
    qvl_progress_format(&p, p.t_start + 4.0, buf, sizeof buf);
    CHECK_STR(buf, "12/10000 0.1% | 2.00 samples/s | ETA 1h23m | acc 83.33%");
    p.done = p.done_at_start;
    p.correct = 3;
    qvl_progress_format(&p, p.t_start + 1.0, buf, sizeof buf);
    CHECK_STR(buf, "4/10000 0.0% | 0.00 samples/s | ETA ? | acc 75.00%");
}

static char *run_steps(int mode, long total, long steps) {
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    qvl_progress p;
    qvl_progress_start(&p, f, mode, total, 0, 0);
    for (long i = 0; i < steps; i++) qvl_progress_step(&p, i % 2);
    qvl_progress_finish(&p);
    fclose(f);
    return text;
}

TEST(eval_progress_plain_lines) {
    char *text = run_steps(QVL_PROGRESS_PLAIN, 100, 100);
    int lines = 0;
    for (char *s = text; *s; s++) lines += *s == '\n';
    CHECK_INT(lines, 20);   /* every 5% */
    CHECK(!strchr(text, '\r') && !strchr(text, '\033'));
    CHECK_CONTAINS(text, "qvl eval: 5/100 5.0% | ");
    CHECK_CONTAINS(text, "qvl eval: 100/100 100.0% | ");
    CHECK_CONTAINS(text, "| ETA 0s | acc 50.00%\n");
    free(text);
    text = run_steps(QVL_PROGRESS_PLAIN, 3, 3);
    lines = 0;
    for (char *s = text; *s; s++) lines += *s == '\n';
    CHECK_INT(lines, 3);
    free(text);
}

TEST(eval_progress_tty_redraws) {
    char *text = run_steps(QVL_PROGRESS_TTY, 4, 4);
    CHECK(text[0] == '\r');
    CHECK_CONTAINS(text, "[##############################] 4/4 100.0%");
    CHECK_CONTAINS(text, "\033[K\n");
    CHECK_INT(text[strlen(text) - 1], '\n');
    free(text);
    text = run_steps(QVL_PROGRESS_OFF, 4, 4);
    CHECK_STR(text, "");
    free(text);
}
