/* `make -j` on a fresh machine: no compile starts before the dependency step (scripts/install-deps.sh)
 * has finished. A stand-in dependency step that takes a second and a compiler wrapper that notes any
 * compile starting before it finished build a few objects in a temporary BUILD folder. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "test.h"
#include "util/file.h"

static void write_script(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
    chmod(path, 0755);
}

TEST(build_compiles_wait_for_the_dependency_step) {
    const char *dir = test_tmpdir();
    char deps[600], cc[600], build[600], log[600], cmd[8000];
    snprintf(deps, sizeof deps, "%s/install-deps.sh", dir);
    snprintf(cc, sizeof cc, "%s/cc.sh", dir);
    snprintf(build, sizeof build, "%s/build", dir);
    snprintf(log, sizeof log, "%s/order.log", dir);
    char text[2000];
    snprintf(text, sizeof text, "sleep 1\necho deps-done >> %s\ntouch %s/deps-done\n", log, dir);
    write_script(deps, text);
    snprintf(text, sizeof text,
             "#!/bin/sh\n[ -f %s/deps-done ] && echo compile >> %s || echo compile-before-deps >> %s\n"
             "exec cc \"$@\"\n", dir, log, log);
    write_script(cc, text);
    snprintf(cmd, sizeof cmd,
             "env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -s -j8 NO_CUDA=1 SAN= BUILD=%s CC=%s INSTALL_DEPS=%s %s/src/util/error.o %s/src/util/file.o "
             "%s/src/util/base64.o %s/src/tokenizer/utf8.o >%s/make.txt 2>&1",
             build, cc, deps, build, build, build, build, dir);
    CHECK_INT(system(cmd), 0);
    size_t n;
    char *order = qvl_read_file(log, &n);
    CHECK_STR(order, "deps-done\ncompile\ncompile\ncompile\ncompile\n");
    free(order);
    snprintf(cmd, sizeof cmd, "%s/src/util/error.o", build);
    CHECK(access(cmd, R_OK) == 0);
}
