/* The parquet reader: pyarrow-written fixtures in every setting, the thrift compact decoder, the
 * RLE/bit-packed hybrid decoder, and damaged files (which must fail with a message, never crash). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/parquet.h"
#include "io/parquet_internal.h"
#include "io/thrift.h"
#include "test.h"
#include "util/error.h"
#include "util/file.h"

#define PQ_DIR "tests/fixtures/ocrbench/parquet/"

static const char *const variants[] = {
    "default_snappy", "zstd", "uncompressed", "nodict", "v2", "v2_zstd_nodict", "v2_uncompressed",
    "format1", "list_item", "small_pages", "small_pages_v2", "dict_fallback", "checksum_index",
};
#define N_VARIANTS (int)(sizeof variants / sizeof *variants)

static int value_is(const qvl_parquet_column *c, int64_t i, const char *want) {
    size_t n = (size_t)(c->offsets[i + 1] - c->offsets[i]);
    return n == strlen(want) && !memcmp(c->data + c->offsets[i], want, n);
}

TEST(parquet_variants_schema_and_values) {
    for (int v = 0; v < N_VARIANTS; v++) {
        char path[256];
        snprintf(path, sizeof path, PQ_DIR "%s.parquet", variants[v]);
        qvl_parquet *pq = qvl_parquet_open(path);
        CHECK(pq != NULL);
        if (!pq) {
            fprintf(stderr, "  %s: %s\n", path, qvl_error());
            continue;
        }
        CHECK_INT(qvl_parquet_num_rows(pq), 16);
        CHECK_INT(qvl_parquet_num_columns(pq), 6);
        int list_item = !strcmp(variants[v], "list_item");
        CHECK_STR(qvl_parquet_column_path(pq, 3), list_item ? "answer.list.item" : "answer.list.element");
        CHECK_INT(qvl_parquet_find_column(pq, "image.bytes"), 4);
        CHECK_INT(qvl_parquet_find_column(pq, "image.path"), 5);
        CHECK_INT(qvl_parquet_find_column(pq, "nope"), -1);
        int groups = !strcmp(variants[v], "small_pages") ? 4 : !strcmp(variants[v], "small_pages_v2") ? 3 : 1;
        CHECK_INT(qvl_parquet_num_row_groups(pq), groups);

        qvl_parquet_column c;
        CHECK_INT(qvl_parquet_read_column(pq, 3, &c), 0);  /* answer: list<string>, 19 strings in 16 rows */
        CHECK_INT(c.max_def, 3);
        CHECK_INT(c.max_rep, 1);
        CHECK_INT(c.n_levels, 19);
        CHECK_INT(c.n_values, 19);
        CHECK(c.rep && c.def);
        if (c.n_values == 19 && c.rep) {
            CHECK(value_is(&c, 0, "CENTRE"));
            CHECK(value_is(&c, 6, "Chatswood Epping"));
            CHECK(value_is(&c, 7, "Chatswood, Epping"));
            CHECK_INT(c.rep[6], 0);
            CHECK_INT(c.rep[7], 1);  /* second answer of the same row */
            CHECK(value_is(&c, 16, "B a = C H = \\frac { 9 - 1 } { 2 } = 4\n"));
            CHECK(value_is(&c, 18, "C"));
            int rows = 0;
            for (int i = 0; i < 19; i++) rows += c.rep[i] == 0;
            CHECK_INT(rows, 16);
        }
        qvl_parquet_column_free(&c);

        CHECK_INT(qvl_parquet_read_column(pq, 1, &c), 0);  /* question: optional string */
        CHECK_INT(c.max_def, 1);
        CHECK_INT(c.max_rep, 0);
        CHECK(c.rep == NULL);
        CHECK_INT(c.n_values, 16);
        if (c.n_values == 16) {
            CHECK(value_is(&c, 7, "What does the \"EXIT\" sign\tsay below it?"));
            CHECK(value_is(&c, 8, "What is the total revenue?\nAnswer with the amount."));
        }
        qvl_parquet_column_free(&c);

        CHECK_INT(qvl_parquet_read_column(pq, 4, &c), 0);  /* image.bytes: PNG/JPEG files */
        CHECK_INT(c.max_def, 2);
        CHECK_INT(c.n_values, 16);
        if (c.n_values == 16) {
            CHECK(!memcmp(c.data + c.offsets[0], "\x89PNG", 4));
            CHECK(!memcmp(c.data + c.offsets[6], "\xFF\xD8\xFF", 3));  /* STVQA/31.jpg */
            CHECK_INT(c.offsets[16], 23108);
            CHECK_INT(c.offsets[1] - c.offsets[0], c.offsets[16] - c.offsets[15]);  /* rows 0, 15: one image */
        }
        qvl_parquet_column_free(&c);

        CHECK_INT(qvl_parquet_read_column(pq, 5, &c), 0);  /* image.path: all null */
        CHECK_INT(c.n_levels, 16);
        CHECK_INT(c.n_values, 0);
        CHECK_INT(c.def ? c.def[0] : -1, 1);  /* struct present, path null */
        qvl_parquet_column_free(&c);
        qvl_parquet_close(pq);
    }
}

TEST(parquet_null_levels) {
    qvl_parquet *pq = qvl_parquet_open("tests/fixtures/ocrbench/bad/nulls.parquet");
    CHECK(pq != NULL);
    if (!pq) return;
    qvl_parquet_column c;
    CHECK_INT(qvl_parquet_read_column(pq, 1, &c), 0);  /* question null in row 1 */
    CHECK_INT(c.n_levels, 4);
    CHECK_INT(c.n_values, 3);
    CHECK_INT(c.def[1], 0);
    qvl_parquet_column_free(&c);
    CHECK_INT(qvl_parquet_read_column(pq, 3, &c), 0);  /* answer [] in row 2: one slot, def 1 */
    CHECK_INT(c.n_levels, 4);
    CHECK_INT(c.n_values, 3);
    CHECK_INT(c.def[2], 1);
    CHECK_INT(c.rep[2], 0);
    qvl_parquet_column_free(&c);
    CHECK_INT(qvl_parquet_read_column(pq, 5, &c), 0);  /* image.path set in row 3 only */
    CHECK_INT(c.n_values, 1);
    CHECK(value_is(&c, 0, "lost.png"));
    qvl_parquet_column_free(&c);
    qvl_parquet_close(pq);
}

TEST(parquet_unsupported_codec_and_encoding) {
    qvl_parquet *pq = qvl_parquet_open("tests/fixtures/ocrbench/bad/gzip.parquet");
    CHECK(pq != NULL);
    qvl_parquet_column c;
    if (pq) {
        CHECK_INT(qvl_parquet_read_column(pq, 1, &c), -1);
        CHECK_CONTAINS(qvl_error(), "gzip.parquet: column 'question' (row group 0): unsupported compression GZIP");
        qvl_parquet_close(pq);
    }
    pq = qvl_parquet_open("tests/fixtures/ocrbench/bad/delta.parquet");
    CHECK(pq != NULL);
    if (pq) {
        CHECK_INT(qvl_parquet_read_column(pq, 1, &c), -1);
        CHECK_CONTAINS(qvl_error(), "delta.parquet: column 'question' (row group 0): unsupported encoding DELTA_BYTE_ARRAY");
        CHECK_INT(qvl_parquet_read_column(pq, 0, &c), 0);  /* the other columns still read */
        CHECK_INT(c.n_values, 3);
        qvl_parquet_column_free(&c);
        qvl_parquet_close(pq);
    }
}


TEST(parquet_bad_magic_and_truncation) {
    size_t n;
    char *good = qvl_read_file(PQ_DIR "default_snappy.parquet", &n);
    CHECK(good != NULL);
    if (!good) return;
    char *bad = malloc(n);
    memcpy(bad, good, n);
    memcpy(bad, "PAR2", 4);
    char *p = test_tmp_file("badmagic.parquet", bad, n);
    CHECK(qvl_parquet_open(p) == NULL);
    CHECK_CONTAINS(qvl_error(), "badmagic.parquet: not a parquet file (no PAR1 magic)");
    free(p);

    /* cut the file anywhere in the footer: always a clear error */
    int cuts[] = {0, 3, 8, 12, (int)n / 2, (int)n - 200, (int)n - 9, (int)n - 4, (int)n - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof *cuts; i++) {
        p = test_tmp_file("cut.parquet", good, (size_t)cuts[i]);
        qvl_parquet *pq = qvl_parquet_open(p);
        CHECK(pq == NULL);
        CHECK_CONTAINS(qvl_error(), "cut.parquet: ");
        qvl_parquet_close(pq);
        free(p);
    }
    /* a footer length larger than the file */
    memcpy(bad, good, n);
    bad[n - 5] = 0x7F;
    p = test_tmp_file("longfooter.parquet", bad, n);
    CHECK(qvl_parquet_open(p) == NULL);
    CHECK_CONTAINS(qvl_error(), "corrupt parquet footer (length");
    free(p);
    /* a footer length pointing into the data: thrift garbage, reported as a corrupt footer */
    memcpy(bad, good, n);
    bad[n - 8] = (char)((unsigned char)bad[n - 8] + 100);
    p = test_tmp_file("shiftfooter.parquet", bad, n);
    qvl_parquet *pq = qvl_parquet_open(p);
    CHECK(pq == NULL);
    CHECK_CONTAINS(qvl_error(), "shiftfooter.parquet: ");
    qvl_parquet_close(pq);
    free(p);
    /* an encrypted-footer file */
    memcpy(bad, good, n);
    memcpy(bad + n - 4, "PARE", 4);
    p = test_tmp_file("enc.parquet", bad, n);
    CHECK(qvl_parquet_open(p) == NULL);
    CHECK_CONTAINS(qvl_error(), "encrypted parquet files are not supported");
    free(p);
    free(bad);
    free(good);
}

/* Random byte damage anywhere (footer or pages): every outcome is a clean success or a message. */
TEST(parquet_fuzz_damage) {
    const char *files[] = {PQ_DIR "default_snappy.parquet", PQ_DIR "v2_zstd_nodict.parquet", PQ_DIR "small_pages.parquet"};
    uint64_t rng = 0x9E3779B97F4A7C15ull;
    int opened = 0, failed = 0;
    for (int f = 0; f < 3; f++) {
        size_t n;
        char *good = qvl_read_file(files[f], &n);
        CHECK(good != NULL);
        if (!good) continue;
        char *bad = malloc(n);
        for (int iter = 0; iter < 60; iter++) {
            memcpy(bad, good, n);
            for (int k = 0; k < 1 + iter % 4; k++) {
                rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
                /* half the hits land in the footer, where the structure is */
                size_t at = iter % 2 ? n - 8 - 1 - (size_t)(rng % 1500 % (n - 12)) : 4 + (size_t)(rng % (n - 12));
                bad[at] = (char)(rng >> 32);
            }
            char *p = test_tmp_file("fuzz.parquet", bad, n);
            qvl_parquet *pq = qvl_parquet_open(p);
            free(p);
            if (!pq) {
                CHECK(qvl_error()[0] != 0);
                failed++;
                continue;
            }
            opened++;
            for (int c = 0; c < qvl_parquet_num_columns(pq); c++) {
                qvl_parquet_column col;
                qvl_error_clear();
                if (qvl_parquet_read_column(pq, c, &col) == 0) {
                    CHECK(col.n_values <= col.n_levels);
                    qvl_parquet_column_free(&col);
                } else {
                    CHECK(qvl_error()[0] != 0);
                }
            }
            qvl_parquet_close(pq);
        }
        free(bad);
        free(good);
    }
    CHECK(opened > 0);
    CHECK(failed > 0);
}

TEST(parquet_hybrid_decoder) {
    int32_t out[16];
    /* the parquet spec's bit-packed example: width 3, values 0..7 */
    const uint8_t packed[] = {0x03, 0x88, 0xC6, 0xFA};
    CHECK(qvl_parquet_decode_hybrid(packed, sizeof packed, 3, 8, out) == NULL);
    for (int i = 0; i < 8; i++) CHECK_INT(out[i], i);
    /* an RLE run of five 2s (width 2), then one bit-packed group cut short after its first byte (1,3,0,0) */
    const uint8_t mixed[] = {0x0A, 0x02, 0x03, 0x0D};
    CHECK(qvl_parquet_decode_hybrid(mixed, sizeof mixed, 2, 9, out) == NULL);
    int want[] = {2, 2, 2, 2, 2, 1, 3, 0, 0};
    for (int i = 0; i < 9; i++) CHECK_INT(out[i], want[i]);
    /* a multi-byte run value (width 9) and a long run header (300 = 0xAC 0x02 << 1) */
    const uint8_t wide[] = {0xD8, 0x04, 0x2C, 0x01};
    int32_t big[300];
    CHECK(qvl_parquet_decode_hybrid(wide, sizeof wide, 9, 300, big) == NULL);
    CHECK_INT(big[0], 300);
    CHECK_INT(big[299], 300);
    /* truncated data and too few values are errors, not reads past the end */
    CHECK(qvl_parquet_decode_hybrid(packed, 2, 3, 8, out) != NULL);
    CHECK(qvl_parquet_decode_hybrid(mixed, 2, 2, 9, out) != NULL);
    const uint8_t overflow[] = {0x02, 0x07};  /* run value 7 does not fit width 2 */
    CHECK(qvl_parquet_decode_hybrid(overflow, sizeof overflow, 2, 1, out) != NULL);
    /* width 0: all zeros from a run header alone */
    const uint8_t zero[] = {0x08};
    CHECK(qvl_parquet_decode_hybrid(zero, sizeof zero, 0, 4, out) == NULL);
    CHECK_INT(out[3], 0);
}

TEST(parquet_thrift_compact) {
    /* struct { 1: i32 -3, 2: string "ab", 20 (long form): i64 300, 21: list<i32> of 16, 22: struct { 1: true }, 23: double } */
    uint8_t buf[128];
    size_t k = 0;
    buf[k++] = 0x15; buf[k++] = 0x05;                 /* field 1 i32, zigzag(-3) = 5 */
    buf[k++] = 0x18; buf[k++] = 2; buf[k++] = 'a'; buf[k++] = 'b';
    buf[k++] = 0x06; buf[k++] = 40; buf[k++] = 0xD8; buf[k++] = 0x04;  /* field 20 i64 (long form), 600 = zigzag(300) */
    buf[k++] = 0x19; buf[k++] = 0xF5; buf[k++] = 16;  /* field 21 list<i32> size 16 (long form) */
    for (int i = 0; i < 16; i++) buf[k++] = (uint8_t)(2 * i);
    buf[k++] = 0x1C; buf[k++] = 0x11; buf[k++] = 0x00;  /* field 22 struct { 1: true } */
    buf[k++] = 0x17; for (int i = 0; i < 8; i++) buf[k++] = 0;  /* field 23 double */
    buf[k++] = 0x00;
    qvl_thrift t = {buf, buf + k, NULL, 0};
    int16_t last = 0, id;
    int ft, seen = 0;
    while (qvl_thrift_field(&t, &last, &id, &ft)) {
        if (id == 1) { CHECK_INT(qvl_thrift_int(&t, ft), -3); seen++; }
        else if (id == 2) {
            size_t n;
            const uint8_t *s = qvl_thrift_binary(&t, &n);
            CHECK(n == 2 && s && !memcmp(s, "ab", 2));
            seen++;
        } else if (id == 20) { CHECK_INT(qvl_thrift_int(&t, ft), 300); seen++; }
        else if (id == 21) {
            int et;
            int64_t n;
            CHECK(qvl_thrift_list(&t, &et, &n));
            CHECK_INT(et, QVL_THRIFT_I32);
            CHECK_INT(n, 16);
            int64_t sum = 0;
            for (int i = 0; i < n; i++) sum += qvl_thrift_int(&t, et);
            CHECK_INT(sum, 120);
            seen++;
        } else { qvl_thrift_skip(&t, ft); seen++; }
    }
    CHECK(t.error == NULL);
    CHECK_INT(seen, 6);
    CHECK(t.p == buf + k);
    /* every truncation is an error, never a read past the end */
    for (size_t cut = 0; cut < k; cut++) {
        qvl_thrift u = {buf, buf + cut, NULL, 0};
        qvl_thrift_skip(&u, QVL_THRIFT_STRUCT);
        CHECK(u.error != NULL);
    }
    /* deep nesting is refused */
    uint8_t deep[200];
    memset(deep, 0x1C, sizeof deep);  /* field 1: struct, nested forever */
    qvl_thrift d = {deep, deep + sizeof deep, NULL, 0};
    qvl_thrift_skip(&d, QVL_THRIFT_STRUCT);
    CHECK(d.error != NULL);
}
