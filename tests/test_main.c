/* Test runner: runs the registered tests in name order and prints the summary line. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
static char tmp_root[256];

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
    if (!tmp_root[0]) {
        snprintf(tmp_root, sizeof tmp_root, "/tmp/qvl-tests-XXXXXX");
        if (!mkdtemp(tmp_root)) {
            perror("mkdtemp");
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

int main(int argc, char **argv) {
    const char *filter = argc > 1 ? argv[1] : NULL;
    qsort(tests, (size_t)n_tests, sizeof tests[0], by_name);
    int passed = 0, failed = 0;
    for (int i = 0; i < n_tests; i++) {
        if (filter && !strstr(tests[i].name, filter)) continue;
        current_failed = 0;
        tests[i].fn();
        if (current_failed) {
            printf("FAIL %s (%d checks failed)\n", tests[i].name, current_failed);
            failed++;
        } else {
            printf("ok   %s\n", tests[i].name);
            passed++;
        }
        fflush(stdout);
    }
    if (tmp_root[0]) {
        char cmd[300];
        snprintf(cmd, sizeof cmd, "rm -rf %s", tmp_root);
        if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmp_root);
    }
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
