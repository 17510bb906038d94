/* Shared by the libFuzzer harnesses (tests/fuzz/fuzz_*.c, `make fuzz`, docs/testing.md). Each
 * harness feeds its input to one parser of the library, directly (not through the CLI). Parsers
 * that read files get the input written to a scratch file first (fuzz_write). */
#ifndef QVL_TESTS_FUZZ_H
#define QVL_TESTS_FUZZ_H
#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Writes data to NAME in this process's scratch folder (made on first use, removed at exit) and
 * returns the path (static storage, valid until the next fuzz_write of the same name). */
const char *fuzz_write(const char *name, const uint8_t *data, size_t size);
/* The scratch folder itself. */
const char *fuzz_dir(void);
/* A malloc'd NUL-terminated copy of data (the caller frees it). */
char *fuzz_cstr(const uint8_t *data, size_t size);
/* A path under the repository (QVL_ROOT when set, else the current folder: `make fuzz` runs from
 * the root). Static storage, one at a time. */
const char *fuzz_repo_path(const char *rel);
/* Reports an invariant broken by an input that the parser accepted, then aborts (a finding). */
void fuzz_fail(const char *what) __attribute__((noreturn));
/* Values read only to touch memory go here, so the compiler keeps the reads. */
extern volatile unsigned fuzz_sink;
#endif
