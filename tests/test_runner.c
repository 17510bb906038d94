/* The test runner itself: a test that crashes, aborts or hangs is reported as failed with its
 * name and the suite goes on. The probe tests below exist only when QVL_TEST_PROBES=1 (this test
 * runs the test binary again with it set), so the normal suite never sees them. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test.h"
#include "util/file.h"

static void probe_pass(void) { CHECK_INT(1 + 1, 2); }
static void probe_checks(void) {
    CHECK_INT(1 + 1, 3);
    CHECK(0);
}
static void probe_segv(void) { raise(SIGSEGV); }
static void probe_abort(void) { abort(); }
static void probe_hang(void) { sleep(30); }
/* _exit: no atexit work (LeakSanitizer's exit scan took over a second on a loaded 2-core machine) */
static void probe_exit(void) { _exit(3); }
static void probe_hang_child(void) { CHECK_INT(system("sleep 30"), 0); }

__attribute__((constructor)) static void register_probes(void) {
    const char *on = getenv("QVL_TEST_PROBES");
    if (!on || strcmp(on, "1")) return;
    test_register("runner_probe_a_pass", probe_pass);
    test_register("runner_probe_b_checks", probe_checks);
    test_register("runner_probe_c_segv", probe_segv);
    test_register("runner_probe_d_abort", probe_abort);
    test_register("runner_probe_e_hang", probe_hang);
    test_register("runner_probe_f_exit", probe_exit);
    test_register("runner_probe_g_hang_child", probe_hang_child);
}

TEST(runner_reports_crashes_and_goes_on) {
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    CHECK(n > 0);
    if (n <= 0) return;
    exe[n] = 0;
    char out_path[600], cmd[5000];
    snprintf(out_path, sizeof out_path, "%s/probes.txt", test_tmpdir());
    snprintf(cmd, sizeof cmd, "QVL_TEST_PROBES=1 QVL_TEST_TIMEOUT=3 '%s' runner_probe_ >'%s' 2>/dev/null", exe,
             out_path);
    int st = system(cmd);
    CHECK(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 1);
    size_t len;
    char *out = qvl_read_file(out_path, &len);
    CHECK_CONTAINS(out, "ok   runner_probe_a_pass\n");
    CHECK_CONTAINS(out, "FAIL runner_probe_b_checks (2 checks failed)\n");
    CHECK_CONTAINS(out, "FAIL runner_probe_c_segv (crashed");
    CHECK_CONTAINS(out, "FAIL runner_probe_d_abort (crashed: Aborted)\n");
    CHECK_CONTAINS(out, "FAIL runner_probe_e_hang (timed out after 3 s)\n");
    CHECK_CONTAINS(out, "FAIL runner_probe_f_exit (crashed: exit status 3 before the test finished)\n");
    CHECK_CONTAINS(out, "FAIL runner_probe_g_hang_child (timed out after 3 s)\n");
    /* the closing line counts every probe, in name order after the last one */
    const char *last = out ? strstr(out, "runner_probe_g_hang_child") : NULL;
    CHECK(last && strstr(last, "\n1 passed, 6 failed\n"));
    free(out);
}
