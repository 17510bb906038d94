/* A minimal test harness: TEST(name) registers a test; CHECK* record failures and continue.
 * All tests/ *.c files link into one binary (build/qvl-tests) that runs from the repository root and
 * ends with "N passed, N failed". `build/qvl-tests SUBSTRING` runs the tests whose name matches.
 * Each test runs in its own child process (tests/test_main.c): a crash, abort, sanitizer report or
 * timeout (QVL_TEST_TIMEOUT seconds, default 600) fails that test and the suite goes on; tests
 * therefore share no state. Tests read only files in the repository (tests/fixtures/, models/). */
#ifndef QVL_TEST_H
#define QVL_TEST_H
#include <math.h>
#include <stdint.h>
#include <string.h>

typedef void (*test_fn)(void);
void test_register(const char *name, test_fn fn);
void test_fail(const char *file, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#define TEST(name)                                                          \
    static void name(void);                                                 \
    __attribute__((constructor)) static void register_##name(void) {        \
        test_register(#name, name);                                         \
    }                                                                       \
    static void name(void)

#define CHECK(cond)                                                             \
    do {                                                                        \
        if (!(cond)) test_fail(__FILE__, __LINE__, "CHECK(%s)", #cond);         \
    } while (0)
#define CHECK_INT(a, b)                                                                  \
    do {                                                                                 \
        long long va_ = (long long)(a), vb_ = (long long)(b);                            \
        if (va_ != vb_) test_fail(__FILE__, __LINE__, "%s == %lld, want %lld", #a, va_, vb_); \
    } while (0)
#define CHECK_NEAR(a, b, tol)                                                                    \
    do {                                                                                         \
        double va_ = (double)(a), vb_ = (double)(b);                                             \
        if (!(fabs(va_ - vb_) <= (tol)))                                                         \
            test_fail(__FILE__, __LINE__, "%s == %.9g, want %.9g (tol %g)", #a, va_, vb_, (double)(tol)); \
    } while (0)
#define CHECK_STR(a, b)                                                                          \
    do {                                                                                         \
        const char *va_ = (a), *vb_ = (b);                                                       \
        if (!va_ || !vb_ || strcmp(va_, vb_) != 0)                                               \
            test_fail(__FILE__, __LINE__, "%s == \"%s\", want \"%s\"", #a, va_ ? va_ : "(null)", vb_ ? vb_ : "(null)"); \
    } while (0)
/* Fails the test unless haystack contains needle. */
#define CHECK_CONTAINS(hay, needle)                                                              \
    do {                                                                                         \
        const char *h_ = (hay), *n_ = (needle);                                                  \
        if (!h_ || !strstr(h_, n_))                                                              \
            test_fail(__FILE__, __LINE__, "%s does not contain \"%s\" (it is \"%s\")", #hay, n_, h_ ? h_ : "(null)"); \
    } while (0)

/* Runs `qvl ARGS` (the binary under test, from $QVL_BIN) through the shell with stdin from
 * /dev/null unless ARGS redirects it; returns the exit code, stdout in *out and stderr in *err
 * (malloc'd, may be NULL if not wanted). */
int test_qvl(char **out, char **err, const char *args_fmt, ...) __attribute__((format(printf, 3, 4)));
/* A fresh temporary directory for this test (removed when the suite ends). */
const char *test_tmpdir(void);
/* Writes n bytes of data to test_tmpdir()/name; returns the malloc'd path (caller frees). */
char *test_tmp_file(const char *name, const void *data, size_t n);
/* The JSON document in the file at path, parsed (cJSON_Delete it), or NULL if unreadable or invalid. */
struct cJSON *test_read_json(const char *path);

#endif
