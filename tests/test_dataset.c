/* The OCRBench dataset loader: the committed 16-sample set in every form (tests/fixtures/ocrbench,
 * made by tools/make_ocrbench_sets.py), the real OCRBench.json, and bad inputs. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "eval/dataset.h"
#include "test.h"
#include "util/error.h"
#include "util/file.h"

#define FIX "tests/fixtures/ocrbench/"
#define REAL_JSON FIX "official/OCRBench.json"

static const char *const parquet_forms[] = {
    FIX "parquet/default_snappy.parquet", FIX "parquet/zstd.parquet", FIX "parquet/uncompressed.parquet",
    FIX "parquet/nodict.parquet", FIX "parquet/v2.parquet", FIX "parquet/v2_zstd_nodict.parquet",
    FIX "parquet/v2_uncompressed.parquet", FIX "parquet/format1.parquet", FIX "parquet/list_item.parquet",
    FIX "parquet/small_pages.parquet", FIX "parquet/small_pages_v2.parquet", FIX "parquet/dict_fallback.parquet",
    FIX "parquet/checksum_index.parquet", FIX "parquet/split",
};

static int same_sample(const qvl_sample *a, const qvl_sample *b) {
    if (a->index != b->index || strcmp(a->type, b->type) || strcmp(a->question, b->question) ||
        a->n_answers != b->n_answers)
        return 0;
    for (int i = 0; i < a->n_answers; i++)
        if (strcmp(a->answers[i], b->answers[i])) return 0;
    return 1;
}

/* The image bytes a sample stands for: its data, or its file's contents. */
static int same_image_bytes(const qvl_sample *json, const qvl_sample *other) {
    size_t n;
    char *file = qvl_read_file(json->image_path, &n);
    int ok = file && other->image_data && n == other->image_size && !memcmp(file, other->image_data, n);
    free(file);
    return ok;
}

TEST(dataset_fixture_json) {
    qvl_dataset ds;
    CHECK_INT(qvl_dataset_load(FIX "json/OCRBench.json", NULL, 1, &ds), 0);
    CHECK_INT(ds.format, QVL_DATA_JSON);
    CHECK_INT(ds.n_samples, 16);
    CHECK_INT(qvl_dataset_count_errors(&ds), 0);
    if (ds.n_samples != 16) { qvl_dataset_free(&ds); return; }
    const qvl_sample *s = ds.samples;
    CHECK_STR(s[0].dataset, "IIIT5K");
    CHECK_STR(s[0].image_path, FIX "json/IIIT5K/test/918_1.png");
    CHECK_STR(s[15].image_path, s[0].image_path);
    /* named .JPG in the JSON, stored as .jpg */
    CHECK_STR(s[7].image_path, FIX "json/textVQA/44.jpg");
    CHECK_INT(s[6].n_answers, 2);
    CHECK_STR(s[6].answers[1], "Chatswood, Epping");
    CHECK_STR(s[12].type, "Handwritten Mathematical Expression Recognition");
    CHECK_STR(s[12].answers[0], "y _ { 2 } = - 1\n");
    CHECK_STR(s[13].answers[0], "B a = C H = \\frac { 9 - 1 } { 2 } = 4\n");
    CHECK_STR(s[3].answers[0], "caf\xC3\xA9");
    CHECK_STR(s[11].answers[0], "O'Neil \"Jr\"");
    CHECK_STR(s[8].question, "What is the total revenue?\nAnswer with the amount.");
    CHECK(s[5].image_data == NULL);
    CHECK(qvl_dataset_find(&ds, 13) == &s[13]);
    CHECK(qvl_dataset_find(&ds, 16) == NULL);
    CHECK(qvl_dataset_find(&ds, -1) == NULL);
    qvl_dataset_free(&ds);
}

TEST(dataset_all_forms_agree) {
    qvl_dataset ref;
    CHECK_INT(qvl_dataset_load(FIX "json/OCRBench.json", NULL, 1, &ref), 0);
    if (ref.n_samples != 16) { qvl_dataset_free(&ref); return; }
    qvl_dataset ds;
    CHECK_INT(qvl_dataset_load(FIX "OCRBench.tsv", NULL, 1, &ds), 0);
    CHECK_INT(ds.format, QVL_DATA_TSV);
    CHECK_INT(ds.n_samples, 16);
    CHECK_INT(qvl_dataset_count_errors(&ds), 0);
    for (long i = 0; i < ds.n_samples && i < 16; i++) {
        if (!same_sample(&ref.samples[i], &ds.samples[i])) test_fail(__FILE__, __LINE__, "tsv sample %ld differs", i);
        if (!same_image_bytes(&ref.samples[i], &ds.samples[i])) test_fail(__FILE__, __LINE__, "tsv image %ld differs", i);
        CHECK_STR(ds.samples[i].dataset, "");
    }
    qvl_dataset_free(&ds);
    for (size_t f = 0; f < sizeof parquet_forms / sizeof *parquet_forms; f++) {
        if (qvl_dataset_load(parquet_forms[f], NULL, 1, &ds)) {
            test_fail(__FILE__, __LINE__, "%s: %s", parquet_forms[f], qvl_error());
            continue;
        }
        CHECK_INT(ds.format, QVL_DATA_PARQUET);
        CHECK_INT(ds.n_samples, 16);
        CHECK_INT(qvl_dataset_count_errors(&ds), 0);
        for (long i = 0; i < ds.n_samples && i < 16; i++) {
            if (!same_sample(&ref.samples[i], &ds.samples[i]) || strcmp(ref.samples[i].dataset, ds.samples[i].dataset))
                test_fail(__FILE__, __LINE__, "%s: sample %ld differs", parquet_forms[f], i);
            if (!same_image_bytes(&ref.samples[i], &ds.samples[i]))
                test_fail(__FILE__, __LINE__, "%s: image %ld differs", parquet_forms[f], i);
        }
        qvl_dataset_free(&ds);
    }
    qvl_dataset_free(&ref);
}

TEST(dataset_scoring_mode_keeps_no_images) {
    const char *forms[] = {FIX "json/OCRBench.json", FIX "OCRBench.tsv", FIX "parquet/default_snappy.parquet"};
    for (int f = 0; f < 3; f++) {
        qvl_dataset ds;
        CHECK_INT(qvl_dataset_load(forms[f], NULL, 0, &ds), 0);
        CHECK_INT(ds.n_samples, 16);
        for (long i = 0; i < ds.n_samples; i++) CHECK(ds.samples[i].image_data == NULL && !ds.samples[i].error);
        qvl_dataset_free(&ds);
    }
}

TEST(dataset_detect_formats) {
    qvl_data_format f;
    CHECK_INT(qvl_dataset_detect(FIX "json/OCRBench.json", &f), 0);
    CHECK_INT(f, QVL_DATA_JSON);
    CHECK_INT(qvl_dataset_detect(FIX "OCRBench.tsv", &f), 0);
    CHECK_INT(f, QVL_DATA_TSV);
    CHECK_INT(qvl_dataset_detect(FIX "parquet/zstd.parquet", &f), 0);
    CHECK_INT(f, QVL_DATA_PARQUET);
    CHECK_INT(qvl_dataset_detect(FIX "parquet/split", &f), 0);
    CHECK_INT(f, QVL_DATA_PARQUET);
    CHECK_STR(qvl_data_format_name(QVL_DATA_TSV), "tsv");
    CHECK_INT(qvl_dataset_detect(FIX "README.md", &f), -1);
    CHECK_CONTAINS(qvl_error(), "README.md: unrecognized data format");
    qvl_dataset ds;
    CHECK_INT(qvl_dataset_load(FIX "nope.json", NULL, 0, &ds), -1);
    CHECK_CONTAINS(qvl_error(), "nope.json: cannot open");
    CHECK_INT(qvl_dataset_load(FIX "json/IIIT5K", NULL, 0, &ds), -1);
    CHECK_CONTAINS(qvl_error(), "json/IIIT5K: no .parquet files in this folder");
}

TEST(dataset_real_ocrbench_json) {
    qvl_dataset ds;
    CHECK_INT(qvl_dataset_load(REAL_JSON, NULL, 0, &ds), 0);
    CHECK_INT(ds.n_samples, 1000);
    CHECK_INT(qvl_dataset_count_errors(&ds), 0);
    if (ds.n_samples != 1000) { qvl_dataset_free(&ds); return; }
    static const char *const types[10] = {
        "Regular Text Recognition", "Irregular Text Recognition", "Artistic Text Recognition",
        "Handwriting Recognition", "Digit String Recognition", "Non-Semantic Text Recognition",
        "Scene Text-centric VQA", "Doc-oriented VQA", "Key Information Extraction",
        "Handwritten Mathematical Expression Recognition"};
    static const int counts[10] = {50, 50, 50, 50, 50, 50, 200, 200, 200, 100};
    static const int first[10] = {0, 50, 100, 150, 200, 250, 300, 500, 700, 900};
    int got[10] = {0}, in_order = 1, max_answers = 0;
    for (long i = 0; i < ds.n_samples; i++) {
        const qvl_sample *s = &ds.samples[i];
        CHECK_INT(s->index, i);
        int t = 0;
        while (t < 10 && strcmp(s->type, types[t])) t++;
        CHECK(t < 10);
        if (t == 10) continue;
        got[t]++;
        in_order &= i >= first[t] && i < first[t] + counts[t];
        if (s->n_answers > max_answers) max_answers = s->n_answers;
    }
    for (int t = 0; t < 10; t++) CHECK_INT(got[t], counts[t]);
    CHECK(in_order);
    CHECK_INT(max_answers, 4);
    /* answers exactly as in the file: 149 lists, 851 bare strings; ids repeat (857 distinct) */
    size_t n;
    char *text = qvl_read_file(REAL_JSON, &n);
    cJSON *root = text ? cJSON_Parse(text) : NULL;
    CHECK(root != NULL);
    int lists = 0, same = 1, distinct = 0;
    static unsigned char seen[1 << 20];
    memset(seen, 0, sizeof seen);
    for (int i = 0; root && i < 1000 && i < ds.n_samples; i++) {
        cJSON *item = cJSON_GetArrayItem(root, i), *a = cJSON_GetObjectItem(item, "answers");
        int id = cJSON_GetObjectItem(item, "id")->valueint;
        if (id >= 0 && id < (1 << 20) && !seen[id]) seen[id] = 1, distinct++;
        if (cJSON_IsArray(a)) {
            lists++;
            same &= cJSON_GetArraySize(a) == ds.samples[i].n_answers;
            for (int k = 0; k < cJSON_GetArraySize(a) && same; k++)
                same &= !strcmp(cJSON_GetArrayItem(a, k)->valuestring, ds.samples[i].answers[k]);
        } else {
            same &= ds.samples[i].n_answers == 1 && !strcmp(a->valuestring, ds.samples[i].answers[0]);
        }
        same &= !strcmp(cJSON_GetObjectItem(item, "question")->valuestring, ds.samples[i].question);
        same &= !strcmp(cJSON_GetObjectItem(item, "dataset_name")->valuestring, ds.samples[i].dataset);
    }
    CHECK_INT(lists, 149);
    CHECK_INT(distinct, 857);
    CHECK(same);
    CHECK(qvl_dataset_find(&ds, 999) == &ds.samples[999]);
    CHECK_STR(ds.samples[900].dataset, "HME100k");
    cJSON_Delete(root);
    free(text);
    qvl_dataset_free(&ds);
}

TEST(dataset_real_json_missing_images_are_per_sample) {
    /* the image archive is not next to the committed annotation file: every sample says so, none is lost */
    qvl_dataset ds;
    CHECK_INT(qvl_dataset_load(REAL_JSON, NULL, 1, &ds), 0);
    CHECK_INT(ds.n_samples, 1000);
    CHECK_INT(qvl_dataset_count_errors(&ds), 1000);
    if (ds.n_samples == 1000) {
        CHECK_CONTAINS(ds.samples[0].error, "image not found: IIIT5K/test/918_1.png");
        CHECK_INT(ds.samples[0].n_answers, 1);  /* still scorable as wrong, with its type */
        CHECK_STR(ds.samples[999].type, "Handwritten Mathematical Expression Recognition");
    }
    qvl_dataset_free(&ds);
}

static char *tmp_file(const char *name, const char *text) { return test_tmp_file(name, text, strlen(text)); }

TEST(dataset_json_images_dir_and_missing_image) {
    /* the annotation alone in a temporary folder: images come from images_dir */
    size_t n;
    char *text = qvl_read_file(FIX "json/OCRBench.json", &n);
    CHECK(text != NULL);
    if (!text) return;
    char *p = tmp_file("moved.json", text);
    qvl_dataset ds;
    CHECK_INT(qvl_dataset_load(p, FIX "json", 1, &ds), 0);
    CHECK_INT(ds.n_samples, 16);
    CHECK_INT(qvl_dataset_count_errors(&ds), 0);
    qvl_dataset_free(&ds);
    /* without images_dir they are missing: one error per sample, load still succeeds */
    CHECK_INT(qvl_dataset_load(p, NULL, 1, &ds), 0);
    CHECK_INT(qvl_dataset_count_errors(&ds), 16);
    if (ds.n_samples == 16) CHECK_CONTAINS(ds.samples[4].error, "image not found: ORAND/test/5.png");
    qvl_dataset_free(&ds);
    /* scoring mode does not look at images */
    CHECK_INT(qvl_dataset_load(p, NULL, 0, &ds), 0);
    CHECK_INT(qvl_dataset_count_errors(&ds), 0);
    qvl_dataset_free(&ds);
    /* images in OCRBench_Images/ beside the annotation are found too */
    char *sub = qvl_path_join(test_tmpdir(), "OCRBench_Images");
    char *abs = realpath(FIX "json", NULL);
    CHECK(abs && symlink(abs, sub) == 0);
    CHECK_INT(qvl_dataset_load(p, NULL, 1, &ds), 0);
    CHECK_INT(qvl_dataset_count_errors(&ds), 0);
    qvl_dataset_free(&ds);
    unlink(sub);
    free(abs);
    free(sub);
    free(p);
    free(text);
}

TEST(dataset_json_bad_input) {
    qvl_dataset ds;
    char *p = tmp_file("obj.json", "{\"question\": \"x\"}");
    CHECK_INT(qvl_dataset_load(p, NULL, 0, &ds), -1);  /* an object is not an array: not even detected */
    CHECK_CONTAINS(qvl_error(), "obj.json: unrecognized data format");
    free(p);
    p = tmp_file("empty.json", "[]");
    CHECK_INT(qvl_dataset_load(p, NULL, 0, &ds), -1);
    CHECK_CONTAINS(qvl_error(), "empty.json: not an OCRBench annotation file (expected a non-empty JSON array)");
    free(p);
    p = tmp_file("broken.json", "[{\"question\": \"x\",");
    CHECK_INT(qvl_dataset_load(p, NULL, 0, &ds), -1);
    CHECK_CONTAINS(qvl_error(), "broken.json: invalid JSON");
    free(p);
    p = tmp_file("numbers.json", "[1, 2, 3]");
    CHECK_INT(qvl_dataset_load(p, NULL, 0, &ds), -1);
    CHECK_CONTAINS(qvl_error(), "numbers.json: not an OCRBench annotation file (item 0: item is not a JSON object)");
    free(p);
    /* one bad item among good ones: that sample's error, the rest load */
    p = tmp_file("mixed.json",
                 "[{\"dataset_name\":\"a\",\"id\":1,\"image_path\":\"x.png\",\"question\":\"q\",\"answers\":[\"A\",\"B\"],\"type\":\"Doc-oriented VQA\"},"
                 " {\"dataset_name\":\"a\",\"id\":1,\"image_path\":\"x.png\",\"question\":\"q\",\"type\":\"Doc-oriented VQA\"},"
                 " {\"dataset_name\":\"a\",\"id\":1,\"image_path\":\"x.png\",\"question\":\"q\",\"answers\":[\"A\", 3],\"type\":\"Doc-oriented VQA\"},"
                 " {\"dataset_name\":\"a\",\"id\":1,\"image_path\":\"x.png\",\"answers\":\"A\",\"type\":\"Doc-oriented VQA\"}]");
    CHECK_INT(qvl_dataset_load(p, NULL, 0, &ds), 0);
    CHECK_INT(ds.n_samples, 4);
    CHECK_INT(qvl_dataset_count_errors(&ds), 3);
    if (ds.n_samples == 4) {
        CHECK(ds.samples[0].error == NULL);
        CHECK_INT(ds.samples[0].n_answers, 2);
        CHECK_CONTAINS(ds.samples[1].error, "key 'answers' must be a string or a non-empty list of strings");
        CHECK_INT(ds.samples[1].n_answers, 0);
        CHECK_CONTAINS(ds.samples[2].error, "key 'answers'");
        CHECK_CONTAINS(ds.samples[3].error, "missing or non-string key 'question'");
        CHECK_STR(ds.samples[3].question, "");
        CHECK_INT(ds.samples[3].index, 3);
    }
    qvl_dataset_free(&ds);
    free(p);
}

TEST(dataset_parquet_bad_input) {
    qvl_dataset ds;
    CHECK_INT(qvl_dataset_load(FIX "bad/not_ocrbench.parquet", NULL, 0, &ds), -1);
    CHECK_CONTAINS(qvl_error(), "bad/not_ocrbench.parquet: not an OCRBench parquet: missing column 'question_type'");
    CHECK_INT(qvl_dataset_load(FIX "bad/gzip.parquet", NULL, 0, &ds), -1);
    CHECK_CONTAINS(qvl_error(), "bad/gzip.parquet: column 'dataset' (row group 0): unsupported compression GZIP");
    CHECK_INT(qvl_dataset_load(FIX "bad/delta.parquet", NULL, 0, &ds), -1);
    CHECK_CONTAINS(qvl_error(), "unsupported encoding DELTA_BYTE_ARRAY");
    /* nulls: per-sample errors, with their row numbers */
    CHECK_INT(qvl_dataset_load(FIX "bad/nulls.parquet", NULL, 1, &ds), 0);
    CHECK_INT(ds.n_samples, 4);
    CHECK_INT(qvl_dataset_count_errors(&ds), 3);
    if (ds.n_samples == 4) {
        CHECK(ds.samples[0].error == NULL);
        CHECK_INT(ds.samples[1].index, 1);
        CHECK_CONTAINS(ds.samples[1].error, "question is null");
        CHECK_INT(ds.samples[1].n_answers, 1);
        CHECK_CONTAINS(ds.samples[2].error, "no answers");
        CHECK_INT(ds.samples[2].n_answers, 0);
        CHECK_CONTAINS(ds.samples[3].error, "image has no bytes");
        CHECK(ds.samples[3].image_data == NULL);
    }
    qvl_dataset_free(&ds);
    CHECK_INT(qvl_dataset_load(FIX "bad/nulls.parquet", NULL, 0, &ds), 0);
    CHECK_INT(qvl_dataset_count_errors(&ds), 2);  /* the image is not looked at when scoring */
    qvl_dataset_free(&ds);
    /* a folder mixing OCRBench and other parquet files fails on the other file, by name */
    CHECK_INT(qvl_dataset_load(FIX "bad", NULL, 0, &ds), -1);
    CHECK_CONTAINS(qvl_error(), "bad/delta.parquet");
    /* a truncated parquet: clear error naming the file */
    size_t n;
    char *good = qvl_read_file(FIX "parquet/zstd.parquet", &n);
    CHECK(good != NULL);
    if (good) {
        char *p = qvl_path_join(test_tmpdir(), "trunc.parquet");
        FILE *f = fopen(p, "wb");
        fwrite(good, 1, n - 100, f);
        fclose(f);
        CHECK_INT(qvl_dataset_load(p, NULL, 0, &ds), -1);
        CHECK_CONTAINS(qvl_error(), "trunc.parquet: truncated parquet file");
        free(p);
        free(good);
    }
}

TEST(dataset_parquet_folder_rows_in_order) {
    qvl_dataset ds;
    CHECK_INT(qvl_dataset_load(FIX "parquet/split", NULL, 0, &ds), 0);
    CHECK_INT(ds.n_samples, 16);
    for (long i = 0; i < ds.n_samples; i++) CHECK_INT(ds.samples[i].index, i);
    if (ds.n_samples == 16) {
        CHECK_STR(ds.samples[8].dataset, "docVQA");  /* first row of the second file */
        CHECK_STR(ds.samples[7].dataset, "textVQA");
    }
    qvl_dataset_free(&ds);
}

TEST(dataset_parquet_many_rows) {
    /* 640 rows: the 16 samples 40 times, each row with its own 6-byte image "img<row>" */
    qvl_dataset ref, ds;
    CHECK_INT(qvl_dataset_load(FIX "json/OCRBench.json", NULL, 0, &ref), 0);
    CHECK_INT(qvl_dataset_load(FIX "parquet/many_rows.parquet", NULL, 1, &ds), 0);
    CHECK_INT(ds.n_samples, 640);
    CHECK_INT(qvl_dataset_count_errors(&ds), 0);
    int bad = 0;
    for (long i = 0; i < ds.n_samples && ref.n_samples == 16; i++) {
        const qvl_sample *s = &ds.samples[i], *r = &ref.samples[i % 16];
        char img[32];
        snprintf(img, sizeof img, "img%03ld", i);
        bad += s->index != i || strcmp(s->question, r->question) || strcmp(s->type, r->type) ||
               s->n_answers != r->n_answers || strcmp(s->answers[s->n_answers - 1], r->answers[r->n_answers - 1]) ||
               s->image_size != 6 || memcmp(s->image_data, img, 6);
    }
    CHECK_INT(bad, 0);
    qvl_dataset_free(&ds);
    qvl_dataset_free(&ref);
}
