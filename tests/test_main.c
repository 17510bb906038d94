/* Test runner: runs the registered tests in name order, each in its own child process, and prints
 * the summary line "N passed, N failed". */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "test.h"
#include "util/file.h"

enum { MAX_TESTS = 4096 };
struct test_entry { const char *name; test_fn fn; };
static struct test_entry tests[MAX_TESTS];
static int n_tests;
static int current_failed;
static char tmp_root[512];
static int tmp_lazy; /* tmp_root is named but not made yet */

void test_register(const char *name, test_fn fn) {
    if (n_tests < MAX_TESTS) {
        tests[n_tests].name = name;
        tests[n_tests].fn = fn;
        n_tests++;
    }
}

void test_fail(const char *file, int line, const char *fmt, ...) {
    if (current_failed < 5) {
        fprintf(stdout, "    %s:%d: ", file, line);
        va_list ap;
        va_start(ap, fmt);
        vfprintf(stdout, fmt, ap);
        va_end(ap);
        fputc('\n', stdout);
    }
    current_failed++;
}

static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    size_t got = fread(b, 1, (size_t)n, f);
    b[got] = 0;
    fclose(f);
    return b;
}

int test_qvl(char **out, char **err, const char *args_fmt, ...) {
    const char *bin = getenv("QVL_BIN");
    if (!bin) bin = "build/qvl";
    char args[8192];
    va_list ap;
    va_start(ap, args_fmt);
    vsnprintf(args, sizeof args, args_fmt, ap);
    va_end(ap);
    char o[512], e[512];
    snprintf(o, sizeof o, "%s/stdout.txt", test_tmpdir());
    snprintf(e, sizeof e, "%s/stderr.txt", test_tmpdir());
    const char *in = strstr(args, "<") ? "" : "</dev/null";
    size_t n = strlen(bin) + strlen(args) + 1200;
    char *cmd = malloc(n);
    snprintf(cmd, n, "%s %s %s >%s 2>%s", bin, args, in, o, e);
    int st = system(cmd);
    free(cmd);
    int rc = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
    if (out) *out = slurp(o);
    if (err) *err = slurp(e);
    return rc;
}

const char *test_tmpdir(void) {
    if (tmp_lazy) {
        tmp_lazy = 0;
        if (mkdir(tmp_root, 0700) != 0 && errno != EEXIST) {
            perror(tmp_root);
            exit(2);
        }
    }
    return tmp_root;
}

char *test_tmp_file(const char *name, const void *data, size_t n) {
    size_t len = strlen(test_tmpdir()) + strlen(name) + 2;
    char *p = malloc(len);
    snprintf(p, len, "%s/%s", test_tmpdir(), name);
    FILE *f = fopen(p, "wb");
    if (f) {
        if (n && fwrite(data, 1, n, f) != n) fprintf(stderr, "short write to %s\n", p);
        fclose(f);
    }
    return p;
}

static int by_name(const void *a, const void *b) {
    return strcmp(((const struct test_entry *)a)->name, ((const struct test_entry *)b)->name);
}

/* Removes a folder tree (the temporary folders of the tests). */
static void remove_tree(const char *dir) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
}

/* The running test's process group: a test that times out takes the programs it started with it,
 * and an interrupted suite takes its running test with it. */
static volatile pid_t child_group;

static void on_alarm(int sig) {
    (void)sig;
    signal(SIGALRM, SIG_DFL);
    kill(0, SIGALRM);
}

static void on_interrupt(int sig) {
    if (child_group > 0) kill(-child_group, SIGKILL);
    signal(sig, SIG_DFL);
    raise(sig);
}

/* Runs one test in a child process, so that a test that crashes (signal, abort, sanitizer
 * report, hang) is reported as failed with its name and the suite goes on. The child sends its
 * count of failed checks through a pipe; an exit without that count is a crash. Returns 1 if
 * the test passed. */
static int run_forked(const struct test_entry *t, const char *root, int timeout_s) {
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) {
        perror("pipe");
        exit(2);
    }
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        exit(2);
    }
    if (pid == 0) {
        close(fds[0]);
        setpgid(0, 0);
        signal(SIGALRM, on_alarm);
        /* each test gets its own temporary folder under the suite's root */
        snprintf(tmp_root, sizeof tmp_root, "%s/%s", root, t->name);
        tmp_lazy = 1;
        alarm((unsigned)timeout_s);
        current_failed = 0;
        t->fn();
        alarm(0);
        fflush(stdout);
        ssize_t w = write(fds[1], &current_failed, sizeof current_failed);
        close(fds[1]);
        exit(w == (ssize_t)sizeof current_failed && current_failed == 0 ? 0 : 1);
    }
    setpgid(pid, pid); /* also here: no race with the child's own call */
    child_group = pid;
    close(fds[1]);
    int reported = -1, got = 0;
    ssize_t r;
    while ((r = read(fds[0], (char *)&reported + got, sizeof reported - (size_t)got)) > 0) got += (int)r;
    close(fds[0]);
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {}
    child_group = 0;
    fflush(stdout);
    if (WIFSIGNALED(st) && WTERMSIG(st) == SIGALRM)
        printf("FAIL %s (timed out after %d s)\n", t->name, timeout_s);
    else if (WIFSIGNALED(st))
        printf("FAIL %s (crashed: %s)\n", t->name, strsignal(WTERMSIG(st)));
    else if (got != (int)sizeof reported)
        printf("FAIL %s (crashed: exit status %d before the test finished)\n", t->name, WEXITSTATUS(st));
    else if (reported)
        printf("FAIL %s (%d checks failed)\n", t->name, reported);
    else if (WEXITSTATUS(st) != 0)
        printf("FAIL %s (exit status %d after the test: sanitizer or leak report above)\n", t->name,
               WEXITSTATUS(st));
    else {
        printf("ok   %s\n", t->name);
        return 1;
    }
    return 0;
}

/* In-process run (QVL_TEST_FORK=0, for a debugger): a crash ends the suite. */
static int run_inline(const struct test_entry *t) {
    current_failed = 0;
    t->fn();
    if (current_failed) {
        printf("FAIL %s (%d checks failed)\n", t->name, current_failed);
        return 0;
    }
    printf("ok   %s\n", t->name);
    return 1;
}

/* build/qvl-tests [SUBSTRING]: runs the tests whose name contains SUBSTRING (all without it).
 * QVL_TEST_TIMEOUT (seconds, default 600) bounds one test; QVL_TEST_FORK=0 runs them in this
 * process instead of one child each. */
int main(int argc, char **argv) {
    const char *filter = argc > 1 ? argv[1] : NULL;
    const char *fork_env = getenv("QVL_TEST_FORK"), *timeout_env = getenv("QVL_TEST_TIMEOUT");
    int forked = !(fork_env && !strcmp(fork_env, "0"));
    int timeout_s = timeout_env ? atoi(timeout_env) : 600;
    if (timeout_s <= 0) timeout_s = 600;
    qsort(tests, (size_t)n_tests, sizeof tests[0], by_name);
    char root[256];
    snprintf(root, sizeof root, "/tmp/qvl-tests-XXXXXX");
    if (!mkdtemp(root)) {
        perror("mkdtemp");
        return 2;
    }
    signal(SIGINT, on_interrupt);
    signal(SIGTERM, on_interrupt);
    if (!forked) snprintf(tmp_root, sizeof tmp_root, "%s/suite", root), tmp_lazy = 1;
    int passed = 0, failed = 0;
    for (int i = 0; i < n_tests; i++) {
        if (filter && !strstr(tests[i].name, filter)) continue;
        int ok = forked ? run_forked(&tests[i], root, timeout_s) : run_inline(&tests[i]);
        if (ok) passed++;
        else failed++;
        fflush(stdout);
    }
    remove_tree(root);
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}

cJSON *test_read_json(const char *path) {
    size_t len;
    char *text = qvl_read_file(path, &len);
    cJSON *j = text ? cJSON_Parse(text) : NULL;
    free(text);
    return j;
}
