/* Scale-out of `qvl eval` end to end on the bundled tiny OCR model and its held-out set:
 * `--shard i/N` + `qvl merge`, and `mpirun -np 2/3` (when this build has MPI and mpirun exists),
 * each giving the same predictions, scores and token counts as one process; merge refusals;
 * mismatched ranks refused; a rank killed mid-write (SIGXFSZ), then the same command finishing the rest. */
#include <cjson/cJSON.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>

#include "test.h"
#include "util/file.h"

#define DATA "tests/fixtures/tiny-ocr-heldout/OCRBench.json"
#define RUN "--model models/qvl-tiny-ocr --data " DATA " --device cpu --threads 1 --max-new-tokens 16"
/* As root in CI; more ranks than cores; no core binding (ranks of several tests may overlap). */
/* Leak checking is off in the ranks: Open MPI keeps allocations of plugins it unloads, which LeakSanitizer
 * reports (the same qvl code runs leak-checked in the --shard tests above). */
#define MPIRUN "ASAN_OPTIONS=detect_leaks=0 timeout 120 mpirun --allow-run-as-root --oversubscribe --bind-to none"

static const char *tmp(const char *name) {
    static char bufs[16][512];
    static int k;
    char *b = bufs[k++ % 16];
    snprintf(b, 512, "%s/shard-%s", test_tmpdir(), name);
    return b;
}

/* "index=status|prediction|correct|tokens" per line of a results log, sorted by index. */
static char *predictions(const char *path) {
    size_t len;
    char *text = qvl_read_file(path, &len);
    if (!text) return strdup("(no file)");
    char *lines[256] = {0};
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        cJSON *j = cJSON_Parse(line);
        const cJSON *idx = cJSON_GetObjectItem(j, "index");
        if (cJSON_IsNumber(idx) && idx->valueint >= 0 && idx->valueint < 256 && !lines[idx->valueint]) {
            char buf[512];
            snprintf(buf, sizeof buf, "%d=%s|%s|%d|%d/%d/%d\n", idx->valueint,
                     cJSON_GetStringValue(cJSON_GetObjectItem(j, "status")),
                     cJSON_GetStringValue(cJSON_GetObjectItem(j, "prediction")),
                     cJSON_GetObjectItem(j, "correct")->valueint, cJSON_GetObjectItem(j, "prompt_tokens")->valueint,
                     cJSON_GetObjectItem(j, "image_tokens")->valueint,
                     cJSON_GetObjectItem(j, "generated_tokens")->valueint);
            lines[idx->valueint] = strdup(buf);
        }
        cJSON_Delete(j);
    }
    free(text);
    char *out = calloc(1, 256 * 512);
    for (int i = 0; i < 256; i++) {
        if (lines[i]) strcat(out, lines[i]);
        free(lines[i]);
    }
    return out;
}

/* The summary's numbers one run and a merged run must share. */
static char *numbers(const char *path) {
    cJSON *j = test_read_json(path);
    if (!j) return strdup("(no summary)");
    cJSON *keep = cJSON_CreateObject();
    const char *keys[] = {"model", "total_samples", "scored", "skipped", "correct", "accuracy", "ocrbench_score",
                          "categories", "types", "tokens", "memory_plan_mib"};
    for (int i = 0; i < 11; i++) {
        const cJSON *v = cJSON_GetObjectItem(j, keys[i]);
        if (v) cJSON_AddItemToObject(keep, keys[i], cJSON_Duplicate(v, 1));
    }
    char *s = cJSON_PrintUnformatted(keep);
    cJSON_Delete(keep);
    cJSON_Delete(j);
    return s;
}

static char *first_line(const char *path) {
    char *t = qvl_read_file(path, NULL);
    if (!t) return strdup("(no file)");
    char *nl = strchr(t, '\n');
    if (nl) *nl = 0;
    return t;
}

/* The report from "Per category" up to "Memory": the scores, which must be identical. */
static char *score_part(const char *report) {
    const char *a = report ? strstr(report, "Per category") : NULL, *b = a ? strstr(a, "\nMemory") : NULL;
    return a && b ? strndup(a, (size_t)(b - a)) : strdup("(none)");
}

static void check_same(const char *log_a, const char *sum_a, const char *rep_a, const char *log_b,
                       const char *sum_b, const char *rep_b) {
    char *x = predictions(log_a), *y = predictions(log_b);
    CHECK_STR(y, x);
    CHECK(strlen(x) > 100);
    free(x);
    free(y);
    x = numbers(sum_a);
    y = numbers(sum_b);
    CHECK_STR(y, x);
    free(x);
    free(y);
    x = first_line(log_a);   /* the merged log's header is one run's: plain qvl eval resumes it */
    y = first_line(log_b);
    CHECK_STR(y, x);
    free(x);
    free(y);
    x = score_part(rep_a);
    y = score_part(rep_b);
    CHECK_STR(y, x);
    free(x);
    free(y);
}

/* One process on the first `limit` samples (cached per limit for the tests of this file). */
static const char *one_run(int limit, char **report) {
    static char *reports[2];
    static int limits[2];
    int slot = limit == limits[0] || !limits[0] ? 0 : 1;
    char name[64];
    snprintf(name, sizeof name, "one-%d.jsonl", limit);
    const char *log = tmp(name);
    static char paths[2][512];
    if (limits[slot] != limit) {
        limits[slot] = limit;
        CHECK_INT(test_qvl(&reports[slot], NULL, "eval " RUN " --limit %d --out %s", limit, log), 0);
        snprintf(paths[slot], sizeof paths[slot], "%s", log);
    }
    *report = reports[slot];
    return paths[slot];
}

static char *summary_of(const char *log) {
    char *s = strdup(log);
    s[strlen(s) - 1] = 0;   /* .jsonl -> .json */
    return s;
}

TEST(eval_shard_and_merge_match_one_run) {
    char *rep1;
    const char *one = one_run(24, &rep1);
    char *one_sum = summary_of(one);
    for (int i = 0; i < 3; i++) {
        char *err = NULL;
        CHECK_INT(test_qvl(NULL, &err, "eval " RUN " --limit 24 --shard %d/3 --out %s/shard-m.shard-%d-of-3.jsonl",
                           i, test_tmpdir(), i), 0);
        char want[64];
        snprintf(want, sizeof want, "qvl eval: shard %d of 3: ", i);
        CHECK_CONTAINS(err, want);
        free(err);
    }
    char *out = NULL, *err = NULL;
    CHECK_INT(test_qvl(&out, &err, "merge --data " DATA " %s %s %s", tmp("m.shard-2-of-3.jsonl"),
                       tmp("m.shard-0-of-3.jsonl"), tmp("m.shard-1-of-3.jsonl")), 0);
    CHECK_CONTAINS(err, "qvl: 3 shards merged: results in ");
    CHECK_CONTAINS(out, "Total Samples: 24\n");
    CHECK_CONTAINS(out, "  shards: 3\n");
    CHECK_CONTAINS(out, "Per shard (3 shards;");
    CHECK_CONTAINS(out, "  total        24 ");
    check_same(one, one_sum, rep1, tmp("m.jsonl"), tmp("m.json"), out);
    cJSON *sum = test_read_json(tmp("m.json"));
    CHECK_INT(cJSON_GetArraySize(cJSON_GetObjectItem(sum, "per_shard")), 3);
    CHECK_INT(cJSON_GetObjectItem(cJSON_GetObjectItem(sum, "settings"), "shards")->valueint, 3);
    cJSON_Delete(sum);
    free(out);
    free(err);
    /* The merged log is one run's log: plain qvl eval resumes it with nothing left to do. */
    CHECK_INT(test_qvl(&out, NULL, "eval " RUN " --limit 24 --out %s --summary %s", tmp("m.jsonl"),
                       tmp("m-again.json")), 0);
    CHECK_CONTAINS(out, "Resumed: 24 samples");
    free(out);
    free(one_sum);
}

TEST(eval_shard_merge_refusals) {
    const char *base = tmp("r");
    for (int i = 0; i < 2; i++)
        CHECK_INT(test_qvl(NULL, NULL, "eval " RUN " --limit 8 --shard %d/2 --out %s.shard-%d-of-2.jsonl", i, base, i), 0);
    char *err = NULL;
    /* a shard missing, or given twice */
    CHECK_INT(test_qvl(NULL, &err, "merge --data " DATA " %s.shard-0-of-2.jsonl", base), 1);
    CHECK_CONTAINS(err, "qvl: merge: shard 1 of 2 is missing (give every shard's results file)");
    free(err);
    CHECK_INT(test_qvl(NULL, &err, "merge --data " DATA " %s.shard-0-of-2.jsonl %s.shard-0-of-2.jsonl", base, base), 1);
    CHECK_CONTAINS(err, "shard-0-of-2.jsonl: given twice");
    free(err);
    /* samples missing: shard 1 lost its last two results */
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "head -n -2 %s.shard-1-of-2.jsonl > %s.cut.shard-1-of-2.jsonl && "
             "cp %s.shard-0-of-2.jsonl %s.cut.shard-0-of-2.jsonl", base, base, base, base);
    CHECK_INT(system(cmd), 0);
    CHECK_INT(test_qvl(NULL, &err, "merge --data " DATA " %s.cut.shard-0-of-2.jsonl %s.cut.shard-1-of-2.jsonl", base,
                       base), 1);
    CHECK_CONTAINS(err, "qvl: merge: 2 of 8 samples are in no shard's results: index ");
    free(err);
    /* a sample in two shards */
    snprintf(cmd, sizeof cmd, "cp %s.shard-1-of-2.jsonl %s.dup.shard-1-of-2.jsonl && "
             "sed -n 2p %s.shard-0-of-2.jsonl >> %s.dup.shard-1-of-2.jsonl", base, base, base, base);
    CHECK_INT(system(cmd), 0);
    CHECK_INT(test_qvl(NULL, &err, "merge --data " DATA " --out %s.x.jsonl %s.shard-0-of-2.jsonl %s.dup.shard-1-of-2.jsonl",
                       base, base, base), 1);
    CHECK_CONTAINS(err, "qvl: merge: sample ");
    CHECK_CONTAINS(err, " is in both ");
    free(err);
    /* mismatched settings: shard 1 made with another --max-new-tokens */
    CHECK_INT(test_qvl(NULL, NULL, "eval " RUN " --limit 8 --shard 1/2 --max-new-tokens 9 --out %s.mm.jsonl", base), 0);
    CHECK_INT(test_qvl(NULL, &err, "merge --data " DATA " --out %s.x.jsonl %s.shard-0-of-2.jsonl %s.mm.jsonl", base,
                       base, base), 1);
    CHECK_CONTAINS(err, "setting 'max_new_tokens' differs: ");
    CHECK_CONTAINS(err, "shard-0-of-2.jsonl has 16, ");
    free(err);
    /* other selection, other data, not a shard */
    CHECK_INT(test_qvl(NULL, NULL, "eval " RUN " --limit 9 --shard 1/2 --out %s.l9.jsonl", base), 0);
    CHECK_INT(test_qvl(NULL, &err, "merge --data " DATA " --out %s.x.jsonl %s.shard-0-of-2.jsonl %s.l9.jsonl", base,
                       base, base), 1);
    CHECK_CONTAINS(err, "setting 'shard.selected' differs: ");
    free(err);
    CHECK_INT(test_qvl(NULL, &err, "merge --data tests/fixtures/ocrbench/OCRBench.tsv %s.shard-0-of-2.jsonl "
                       "%s.shard-1-of-2.jsonl", base, base), 1);
    CHECK_CONTAINS(err, "tests/fixtures/ocrbench/OCRBench.tsv: has 16 samples, the shards ran on data with 240");
    free(err);
    CHECK_INT(test_qvl(NULL, NULL, "eval " RUN " --limit 2 --out %s.plain.jsonl", base), 0);
    CHECK_INT(test_qvl(NULL, &err, "merge --data " DATA " --out %s.x.jsonl %s.plain.jsonl", base, base), 1);
    CHECK_CONTAINS(err, "plain.jsonl: not a shard's results (no 'shard' setting");
    free(err);
    /* nothing written by a refused merge; usage errors */
    CHECK(qvl_read_file(tmp("r.x.jsonl"), NULL) == NULL);
    CHECK_INT(test_qvl(NULL, &err, "eval " RUN " --shard 2/2"), 2);
    CHECK_CONTAINS(err, "--shard: '2/2': i must be in 0..1 (0-based)");
    free(err);
    CHECK_INT(test_qvl(NULL, &err, "merge %s.shard-0-of-2.jsonl", base), 2);
    CHECK_CONTAINS(err, "qvl: merge: --data is required");
    free(err);
}

/* 1 when this build has MPI and mpirun is installed (else the MPI tests say so and pass). */
static int have_mpi(void) {
    char *out = NULL;
    test_qvl(&out, NULL, "--version");
    int yes = out && strstr(out, "mpi: yes") && system("command -v mpirun >/dev/null 2>&1") == 0;
    if (!yes) printf("    (skipped: %s)\n", out && strstr(out, "mpi: yes") ? "no mpirun" : "qvl built without MPI");
    free(out);
    return yes;
}

static const char *bin(void) { return getenv("QVL_BIN") ? getenv("QVL_BIN") : "build/qvl"; }

/* Runs `MPIRUN -np n qvl eval RUN EXTRA` with stdout/stderr into the given files; the exit code. */
static int mpirun_eval(int n, const char *extra, const char *out_file, const char *err_file) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "%s -np %d %s eval " RUN " %s >%s 2>%s </dev/null", MPIRUN, n, bin(), extra, out_file,
             err_file);
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

TEST(eval_mpi_np2_np3_match_one_run) {
    if (!have_mpi()) return;
    char *rep1;
    const char *one = one_run(24, &rep1);
    char *one_sum = summary_of(one);
    for (int np = 2; np <= 3; np++) {
        char extra[1024], name[64];
        snprintf(name, sizeof name, "np%d.jsonl", np);
        snprintf(extra, sizeof extra, "--limit 24 --out %s", tmp(name));
        CHECK_INT(mpirun_eval(np, extra, tmp("np.out"), tmp("np.err")), 0);
        char *out = qvl_read_file(tmp("np.out"), NULL), *err = qvl_read_file(tmp("np.err"), NULL);
        if (!out || !strstr(out, "Total Samples")) printf("    np %d stderr: %s\n", np, err ? err : "");
        char want[128];
        snprintf(want, sizeof want, "Per rank (%d ranks;", np);
        CHECK_CONTAINS(out, want);
        snprintf(want, sizeof want, "  ranks: %d\n", np);
        CHECK_CONTAINS(out, want);
        snprintf(want, sizeof want, "qvl: %d ranks merged: results in ", np);
        CHECK_CONTAINS(err, want);
        CHECK_CONTAINS(err, "qvl eval: rank 1 of ");
        CHECK_CONTAINS(out, "  balance: the slowest rank ran ");   /* load balance: slowest / mean */
        CHECK_CONTAINS(out, "plan MiB");
        /* one report: the block appears once */
        CHECK(out && !strstr(strstr(out, "EVALUATION REPORT") + 1, "EVALUATION REPORT"));
        char *sum = summary_of(tmp(name));
        check_same(one, one_sum, rep1, tmp(name), sum, out);
        free(sum);
        free(out);
        free(err);
    }
    free(one_sum);
}

TEST(eval_mpi_ranks_with_different_settings_are_refused) {
    if (!have_mpi()) return;
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "%s -np 1 %s eval " RUN " --limit 4 --out %s : -np 1 %s eval " RUN
             " --limit 4 --out %s --max-new-tokens 17 >/dev/null 2>%s </dev/null", MPIRUN, bin(), tmp("mm.jsonl"),
             bin(), tmp("mm.jsonl"), tmp("mm.err"));
    int st = system(cmd);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) != 0 && WEXITSTATUS(st) != 124);
    char *err = qvl_read_file(tmp("mm.err"), NULL);
    CHECK_CONTAINS(err, "qvl: rank 1: setting 'max_new_tokens' differs: rank 0 has 16, rank 1 has 17");
    free(err);
    CHECK(qvl_read_file(tmp("mm.jsonl"), NULL) == NULL);
    CHECK(qvl_read_file(tmp("mm.shard-1-of-2.jsonl"), NULL) == NULL);   /* refused before any result */
}

TEST(eval_mpi_killed_rank_then_resume) {
    if (!have_mpi()) return;
    char *rep1;
    const char *one = one_run(24, &rep1);
    char *one_sum = summary_of(one);
    /* Rank 1 runs under a file-size limit (ulimit -f 6: 3072 bytes), so the kernel kills it with SIGXFSZ
     * in the middle of writing its 8th result line: a crash at a known point whatever the machine's load.
     * The ranks talk over TCP here: the shared-memory transport sizes a file at start-up, which the limit
     * would stop before any sample. */
    char cmd[4096];
    snprintf(cmd, sizeof cmd,
             "%s -np 2 --mca btl self,tcp sh -c 'if [ \"$OMPI_COMM_WORLD_RANK\" = 1 ]; then ulimit -f 6; fi; "
             "exec \"$0\" \"$@\"' %s eval " RUN " --limit 24 --out %s >/dev/null 2>%s </dev/null; echo $? > %s",
             MPIRUN, bin(), tmp("k.jsonl"), tmp("k.err"), tmp("k.rc"));
    CHECK_INT(system(cmd), 0);
    char *rc = qvl_read_file(tmp("k.rc"), NULL);
    CHECK(rc && atoi(rc) != 0);   /* the job failed */
    free(rc);
    CHECK(qvl_read_file(tmp("k.jsonl"), NULL) == NULL);   /* no merged results from a broken run */
    char *part = predictions(tmp("k.shard-1-of-2.jsonl"));
    CHECK(strlen(part) > 0);   /* the complete lines before the cut one */
    free(part);
    char *shard = qvl_read_file(tmp("k.shard-1-of-2.jsonl"), NULL);
    CHECK(shard && shard[strlen(shard) - 1] != '\n');   /* it died inside a line */
    free(shard);
    /* The same command again finishes the missing samples and gives the same results. */
    char extra[1024];
    snprintf(extra, sizeof extra, "--limit 24 --out %s", tmp("k.jsonl"));
    CHECK_INT(mpirun_eval(2, extra, tmp("k2.out"), tmp("k2.err")), 0);
    char *out = qvl_read_file(tmp("k2.out"), NULL), *err = qvl_read_file(tmp("k2.err"), NULL);
    CHECK_CONTAINS(err, "resuming: ");
    CHECK_CONTAINS(out, "Resumed: ");
    check_same(one, one_sum, rep1, tmp("k.jsonl"), tmp("k.json"), out);
    free(out);
    free(err);
    free(one_sum);
}
