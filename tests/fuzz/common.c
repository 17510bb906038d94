/* Helpers of the libFuzzer harnesses (fuzz.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fuzz.h"

volatile unsigned fuzz_sink;

static char scratch[256];
static char written[8][512];
static int n_written;

static void cleanup(void) {
    for (int i = 0; i < n_written; i++) unlink(written[i]);
    if (scratch[0]) rmdir(scratch);
}

const char *fuzz_dir(void) {
    if (!scratch[0]) {
        /* Memory-backed when there is one: a disk-backed /tmp makes file parsers 10x slower to fuzz. */
        const char *tmp = getenv("QVL_FUZZ_TMP");
        if (!tmp || !tmp[0]) tmp = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : getenv("TMPDIR");
        snprintf(scratch, sizeof scratch, "%s/qvl-fuzz-XXXXXX", tmp && tmp[0] ? tmp : "/tmp");
        if (!mkdtemp(scratch)) {
            perror(scratch);
            abort();
        }
        atexit(cleanup);
    }
    return scratch;
}

const char *fuzz_write(const char *name, const uint8_t *data, size_t size) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", fuzz_dir(), name);
    int slot = -1;
    for (int i = 0; i < n_written; i++)
        if (!strcmp(written[i], path)) slot = i;
    if (slot < 0) {
        if (n_written == 8) abort();
        slot = n_written++;
        snprintf(written[slot], sizeof written[slot], "%s", path);
    }
    FILE *f = fopen(path, "wb");
    if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f)) {
        perror(path);
        abort();
    }
    return written[slot];
}

char *fuzz_cstr(const uint8_t *data, size_t size) {
    char *s = malloc(size + 1);
    if (!s) abort();
    if (size) memcpy(s, data, size);
    s[size] = 0;
    return s;
}

const char *fuzz_repo_path(const char *rel) {
    static char path[1024];
    const char *root = getenv("QVL_ROOT");
    snprintf(path, sizeof path, "%s/%s", root && root[0] ? root : ".", rel);
    return path;
}

void fuzz_fail(const char *what) {
    fprintf(stderr, "qvl fuzz: invariant broken: %s\n", what);
    abort();
}
