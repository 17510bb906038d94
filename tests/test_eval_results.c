/* The results JSONL (resume log): record round trip, resume keeping finished samples, a
 * truncated last line from a crash, a settings mismatch, --overwrite, foreign files. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "eval/results.h"
#include "test.h"
#include "util/error.h"
#include "util/file.h"

static const char *fresh_path(const char *name) {
    static char buf[512];
    snprintf(buf, sizeof buf, "%s/results-%s.jsonl", test_tmpdir(), name);
    remove(buf);
    return buf;
}

static cJSON *settings(int max_new_tokens) {
    cJSON *s = cJSON_CreateObject();
    cJSON_AddStringToObject(s, "model", "models/tiny");
    cJSON_AddNumberToObject(s, "max_new_tokens", max_new_tokens);
    return s;
}

static qvl_eval_record fake(long index, int correct) {
    static char *ans[] = {"CENTRE", "Centre\n"};
    qvl_eval_record r = {0};
    r.index = index;
    r.type = "Regular Text Recognition";
    r.dataset = "IIIT5K";
    r.question = "what is written in the image?";
    r.answers = ans;
    r.n_answers = 2;
    r.prediction = correct ? "CENTRE" : "nope \"quoted\"\n";
    r.correct = correct;
    r.prompt_tokens = 40 + (int)index;
    r.image_tokens = 16;
    r.generated_tokens = 3;
    r.latency_s = 0.25;
    r.ttft_s = 0.125;
    r.wall_s = 0.5;
    r.peak_memory_mib = 123.456;
    return r;
}

TEST(eval_results_record_round_trip) {
    qvl_eval_record r = fake(7, 0);
    r.skipped = 1;
    r.reason = "image: cannot decode";
    cJSON *j = qvl_eval_record_to_json(&r);
    char *s = cJSON_PrintUnformatted(j);
    CHECK_STR(s, "{\"index\":7,\"type\":\"Regular Text Recognition\",\"dataset\":\"IIIT5K\","
                 "\"question\":\"what is written in the image?\",\"answers\":[\"CENTRE\",\"Centre\\n\"],"
                 "\"prediction\":\"nope \\\"quoted\\\"\\n\",\"correct\":0,\"status\":\"skipped\","
                 "\"reason\":\"image: cannot decode\",\"prompt_tokens\":47,\"image_tokens\":16,"
                 "\"generated_tokens\":3,\"latency_s\":0.25,\"ttft_s\":0.125,\"wall_s\":0.5,"
                 "\"peak_memory_mib\":123.46}");
    qvl_eval_record back;
    CHECK_INT(qvl_eval_record_from_json(j, "x", &back), 0);
    CHECK_INT(back.index, 7);
    CHECK_INT(back.skipped, 1);
    CHECK_STR(back.reason, "image: cannot decode");
    CHECK_STR(back.answers[1], "Centre\n");
    CHECK_INT(back.prompt_tokens, 47);
    CHECK_NEAR(back.ttft_s, 0.125, 1e-12);
    CHECK_NEAR(back.wall_s, 0.5, 1e-12);
    CHECK_NEAR(back.peak_memory_mib, 123.46, 1e-9);
    qvl_eval_record_free(&back);
    cJSON_free(s);
    cJSON_Delete(j);
    cJSON *bad = cJSON_Parse("{\"index\":1.5,\"prediction\":\"x\"}");
    CHECK_INT(qvl_eval_record_from_json(bad, "f.jsonl:3", &back), -1);
    CHECK_CONTAINS(qvl_error(), "f.jsonl:3: not a result record");
    cJSON_Delete(bad);
}

TEST(eval_results_resume_keeps_finished) {
    const char *p = fresh_path("resume");
    cJSON *s = settings(128);
    qvl_results r;
    CHECK_INT(qvl_results_open(&r, p, s, 0), 0);
    CHECK_INT(r.n_resumed, 0);
    for (long i = 0; i < 3; i++) {
        qvl_eval_record rec = fake(i, i != 1);
        CHECK_INT(qvl_results_append(&r, &rec), 0);
    }
    qvl_results_close(&r);
    size_t len;
    char *text = qvl_read_file(p, &len);
    const char *header = "{\"qvl_run\":{\"model\":\"models/tiny\",\"max_new_tokens\":128}}\n";
    CHECK(text && !strncmp(text, header, strlen(header)));
    free(text);

    CHECK_INT(qvl_results_open(&r, p, s, 0), 0);
    CHECK_INT(r.n_resumed, 3);
    CHECK_INT(r.dropped_partial, 0);
    CHECK(qvl_results_find(&r, 1) && qvl_results_find(&r, 1)->correct == 0);
    CHECK(qvl_results_find(&r, 2) && qvl_results_find(&r, 2)->correct == 1);
    CHECK(qvl_results_find(&r, 3) == NULL);
    qvl_eval_record rec = fake(3, 1);
    CHECK_INT(qvl_results_append(&r, &rec), 0);
    qvl_results_close(&r);

    CHECK_INT(qvl_results_open(&r, p, s, 0), 0);
    CHECK_INT(r.n_resumed, 4);
    qvl_results_close(&r);
    cJSON_Delete(s);
}

TEST(eval_results_truncated_last_line_is_cut) {
    const char *p = fresh_path("trunc");
    cJSON *s = settings(128);
    qvl_results r;
    CHECK_INT(qvl_results_open(&r, p, s, 0), 0);
    qvl_eval_record a = fake(0, 1), b = fake(1, 1);
    CHECK_INT(qvl_results_append(&r, &a), 0);
    CHECK_INT(qvl_results_append(&r, &b), 0);
    qvl_results_close(&r);
    /* Simulate a crash in the middle of writing line 3: cut the file 20 bytes before its end. */
    struct stat st;
    stat(p, &st);
    CHECK_INT(truncate(p, st.st_size - 20), 0);
    CHECK_INT(qvl_results_open(&r, p, s, 0), 0);
    CHECK_INT(r.dropped_partial, 1);
    CHECK_INT(r.n_resumed, 1);
    CHECK(qvl_results_find(&r, 1) == NULL);
    CHECK_INT(qvl_results_append(&r, &b), 0);   /* the rerun sample lands on a clean line */
    qvl_results_close(&r);
    CHECK_INT(qvl_results_open(&r, p, s, 0), 0);
    CHECK_INT(r.dropped_partial, 0);
    CHECK_INT(r.n_resumed, 2);
    qvl_results_close(&r);
    size_t len;
    char *text = qvl_read_file(p, &len);
    int lines = 0;
    for (size_t i = 0; i < len; i++) lines += text[i] == '\n';
    CHECK_INT(lines, 3);
    CHECK_INT(text[len - 1], '\n');
    free(text);
    cJSON_Delete(s);
}

TEST(eval_results_header_cut_short_starts_afresh) {
    const char *p = fresh_path("hdr");
    CHECK_INT(qvl_write_file_atomic(p, "{\"qvl_run\":{\"mo", 15), 0);
    cJSON *s = settings(128);
    qvl_results r;
    CHECK_INT(qvl_results_open(&r, p, s, 0), 0);
    CHECK_INT(r.n_resumed, 0);
    qvl_results_close(&r);
    cJSON_Delete(s);
}

TEST(eval_results_settings_mismatch_refused) {
    const char *p = fresh_path("mismatch");
    cJSON *s128 = settings(128), *s64 = settings(64);
    qvl_results r;
    CHECK_INT(qvl_results_open(&r, p, s128, 0), 0);
    qvl_eval_record a = fake(0, 1);
    CHECK_INT(qvl_results_append(&r, &a), 0);
    qvl_results_close(&r);
    CHECK_INT(qvl_results_open(&r, p, s64, 0), -1);
    CHECK_CONTAINS(qvl_error(), "setting 'max_new_tokens' differs: file has 128, this run has 64");
    CHECK_CONTAINS(qvl_error(), "--overwrite");
    qvl_results_close(&r);
    /* A setting only one side has is named too. */
    cJSON *extra = settings(128);
    cJSON_AddStringToObject(extra, "device", "cpu");
    CHECK_INT(qvl_results_open(&r, p, extra, 0), -1);
    CHECK_CONTAINS(qvl_error(), "setting 'device' differs: file has (none), this run has \"cpu\"");
    qvl_results_close(&r);
    /* --overwrite starts afresh. */
    CHECK_INT(qvl_results_open(&r, p, s64, 1), 0);
    CHECK_INT(r.n_resumed, 0);
    qvl_results_close(&r);
    CHECK_INT(qvl_results_open(&r, p, s64, 0), 0);
    CHECK_INT(r.n_resumed, 0);
    qvl_results_close(&r);
    cJSON_Delete(s128);
    cJSON_Delete(s64);
    cJSON_Delete(extra);
}

TEST(eval_results_foreign_or_corrupt_files_refused) {
    const char *p = fresh_path("foreign");
    cJSON *s = settings(128);
    qvl_results r;
    CHECK_INT(qvl_write_file_atomic(p, "index,prediction\n", 17), 0);
    CHECK_INT(qvl_results_open(&r, p, s, 0), -1);
    CHECK_CONTAINS(qvl_error(), "not a qvl eval results file");
    qvl_results_close(&r);
    size_t n;
    char *text = qvl_read_file(p, &n);
    CHECK_STR(text, "index,prediction\n");   /* untouched */
    free(text);
    const char *mid = "{\"qvl_run\":{\"model\":\"models/tiny\",\"max_new_tokens\":128}}\n{broken\n"
                      "{\"index\":1,\"answers\":[\"a\"],\"prediction\":\"a\",\"correct\":1,\"status\":\"ok\"}\n";
    CHECK_INT(qvl_write_file_atomic(p, mid, strlen(mid)), 0);
    CHECK_INT(qvl_results_open(&r, p, s, 0), -1);
    CHECK_CONTAINS(qvl_error(), ":2: not valid JSON");
    qvl_results_close(&r);
    cJSON_Delete(s);
}

/* Numbers outside what a record's fields hold are refused, not cast (a double beyond long or int is
 * undefined behaviour to convert; found by tests/fuzz/results). */
TEST(eval_results_out_of_range_numbers_refused) {
    const char *p = fresh_path("range");
    cJSON *s = settings(128);
    static const char *const bad[][2] = {
        {"{\"index\":1e300,\"answers\":[\"a\"],\"prediction\":\"a\",\"correct\":1,\"status\":\"ok\"}", "not a result record"},
        {"{\"index\":-1e19,\"answers\":[\"a\"],\"prediction\":\"a\",\"correct\":1,\"status\":\"ok\"}", "not a result record"},
        {"{\"index\":2,\"answers\":[\"a\"],\"prediction\":\"a\",\"correct\":1,\"status\":\"ok\",\"prompt_tokens\":7.7e18}",
         "token counts must be in [0, 2147483647]"},
        {"{\"index\":2,\"answers\":[\"a\"],\"prediction\":\"a\",\"correct\":1,\"status\":\"ok\",\"generated_tokens\":-3}",
         "token counts"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char text[512];
        snprintf(text, sizeof text, "{\"qvl_run\":{\"model\":\"models/tiny\",\"max_new_tokens\":128}}\n%s\n", bad[i][0]);
        CHECK_INT(qvl_write_file_atomic(p, text, strlen(text)), 0);
        qvl_results r;
        CHECK_INT(qvl_results_open(&r, p, s, 0), -1);
        CHECK_CONTAINS(qvl_error(), bad[i][1]);
        CHECK_CONTAINS(qvl_error(), ":2:");
        qvl_results_close(&r);
    }
    cJSON_Delete(s);
}
