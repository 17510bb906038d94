/* safetensors reader: values, dtypes, sharding, and every kind of corrupt header. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/safetensors.h"
#include "sparse_ckpt.h"
#include "test.h"
#include "util/error.h"

static const char *tmp(const char *name) {
    static char buf[8][512];
    static int k;
    char *p = buf[k++ % 8];
    snprintf(p, 512, "%s/%s", test_tmpdir(), name);
    return p;
}

/* Writes u64 header length + header + data bytes (exact, not sparse). */
static int write_st(const char *path, const char *header, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    uint64_t h = strlen(header);
    uint8_t le[8];
    for (int i = 0; i < 8; i++) le[i] = (uint8_t)(h >> (8 * i));
    int ok = fwrite(le, 1, 8, f) == 8 && fwrite(header, 1, h, f) == h && (n == 0 || fwrite(data, 1, n, f) == n);
    return (fclose(f) == 0 && ok) ? 0 : -1;
}

/* Opens a file expected to fail; returns the error (static copy). */
static const char *open_err(const char *path) {
    qvl_error_clear();
    qvl_safetensors *st = qvl_st_open(path);
    if (st) {
        qvl_st_close(st);
        return "(opened)";
    }
    return qvl_error();
}

TEST(safetensors_values_of_every_dtype) {
    /* F32 [2] = {1.5, -2}; BF16 [2] = {1.0, -3.5}; F16 [3] = {1.0, 65504, 2^-24}; I32 [1] = -7;
     * I64 [1] = 1<<40; U8 [2] = {0, 255}; I8 [1] = -128; F8_E4M3 [4] = {0x38=1.0, 0xfe=-448, 0x01=2^-9, 0x7f=nan} */
    uint8_t data[64] = {0};
    size_t k = 0;
    float f32[2] = {1.5f, -2.0f};
    memcpy(data + k, f32, 8), k += 8;
    uint16_t bf[2] = {0x3f80, 0xc060};
    memcpy(data + k, bf, 4), k += 4;
    uint16_t h[3] = {0x3c00, 0x7bff, 0x0001};
    memcpy(data + k, h, 6), k += 6;
    int32_t i32 = -7;
    memcpy(data + k, &i32, 4), k += 4;
    int64_t i64 = (int64_t)1 << 40;
    memcpy(data + k, &i64, 8), k += 8;
    data[k++] = 0, data[k++] = 255;
    data[k++] = 0x80;
    data[k++] = 0x38, data[k++] = 0xfe, data[k++] = 0x01, data[k++] = 0x7f;
    CHECK_INT(k, 37);
    const char *hdr =
        "{\"__metadata__\":{\"format\":\"pt\"},"
        "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
        "\"b\":{\"dtype\":\"BF16\",\"shape\":[1,2],\"data_offsets\":[8,12]},"
        "\"c\":{\"dtype\":\"F16\",\"shape\":[3],\"data_offsets\":[12,18]},"
        "\"d\":{\"dtype\":\"I32\",\"shape\":[],\"data_offsets\":[18,22]},"
        "\"e\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[22,30]},"
        "\"f\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[30,32]},"
        "\"g\":{\"dtype\":\"I8\",\"shape\":[1],\"data_offsets\":[32,33]},"
        "\"h\":{\"dtype\":\"F8_E4M3\",\"shape\":[2,2],\"data_offsets\":[33,37]},"
        "\"empty\":{\"dtype\":\"F32\",\"shape\":[0,4],\"data_offsets\":[37,37]}}  ";
    const char *path = tmp("dtypes.safetensors");
    CHECK_INT(write_st(path, hdr, data, 37), 0);
    qvl_safetensors *st = qvl_st_open(path);
    CHECK(st != NULL);
    if (!st) return;
    CHECK_INT(qvl_st_count(st), 9);
    CHECK_STR(qvl_st_get(st, 0)->name, "a");
    CHECK_STR(qvl_st_get(st, 0)->file, path);
    const qvl_tensor *t = qvl_st_find(st, "a");
    CHECK_NEAR(qvl_tensor_get_f32(t, 0), 1.5, 0);
    CHECK_NEAR(qvl_tensor_get_f32(t, 1), -2.0, 0);
    float buf[4];
    t = qvl_st_find(st, "b");
    CHECK_INT(t->ndim, 2);
    CHECK_INT(t->dtype, QVL_BF16);
    CHECK_INT(qvl_tensor_to_f32(t, buf), 0);
    CHECK_NEAR(buf[0], 1.0, 0);
    CHECK_NEAR(buf[1], -3.5, 0);
    t = qvl_st_find(st, "c"); /* unaligned F16 at offset 12+8+hdr: read via memcpy */
    CHECK_INT(qvl_tensor_to_f32(t, buf), 0);
    CHECK_NEAR(buf[0], 1.0, 0);
    CHECK_NEAR(buf[1], 65504.0, 0);
    CHECK_NEAR(buf[2], 5.9604644775390625e-08, 0);
    t = qvl_st_find(st, "d");
    CHECK_INT(t->ndim, 0);
    CHECK_INT(qvl_tensor_numel(t), 1);
    CHECK_NEAR(qvl_tensor_get_f32(t, 0), -7, 0);
    CHECK_NEAR(qvl_tensor_get_f32(qvl_st_find(st, "e"), 0), 1099511627776.0, 0);
    CHECK_NEAR(qvl_tensor_get_f32(qvl_st_find(st, "f"), 1), 255, 0);
    CHECK_NEAR(qvl_tensor_get_f32(qvl_st_find(st, "g"), 0), -128, 0);
    t = qvl_st_find(st, "h");
    CHECK_INT(qvl_tensor_to_f32(t, buf), 0);
    CHECK_NEAR(buf[0], 1.0, 0);
    CHECK_NEAR(buf[1], -448.0, 0);
    CHECK_NEAR(buf[2], 1.0 / 512, 0);
    CHECK(isnan(buf[3]));
    t = qvl_st_find(st, "empty");
    CHECK_INT(qvl_tensor_numel(t), 0);
    CHECK_INT(t->nbytes, 0);
    CHECK(qvl_st_find(st, "__metadata__") == NULL);
    CHECK(qvl_st_find(st, "zz") == NULL);
    CHECK_INT(qvl_st_data_bytes(st), 37);
    qvl_st_close(st);
}

TEST(safetensors_scalar_conversions) {
    CHECK_NEAR(qvl_bf16_to_f32(0x4049), 3.140625, 0);
    CHECK_NEAR(qvl_f16_to_f32(0xc000), -2.0, 0);
    CHECK_NEAR(qvl_f16_to_f32(0x0400), 6.103515625e-05, 0); /* smallest normal */
    CHECK_NEAR(qvl_f16_to_f32(0x03ff), 6.097555160522461e-05, 0);
    CHECK(isinf(qvl_f16_to_f32(0x7c00)));
    CHECK(isnan(qvl_f16_to_f32(0x7e00)));
    CHECK_NEAR(qvl_f8e4m3_to_f32(0x7e), 448.0, 0);
    CHECK_NEAR(qvl_f8e4m3_to_f32(0x08), 1.0 / 64, 0); /* smallest normal 2^-6 */
    CHECK_NEAR(qvl_f8e4m3_to_f32(0x07), 7.0 / 512, 0);
    CHECK_NEAR(qvl_f8e4m3_to_f32(0xc4), -3.0, 0);
    qvl_dtype d;
    CHECK_INT(qvl_dtype_parse("F8_E4M3", &d), 0);
    CHECK_INT(d, QVL_F8_E4M3);
    CHECK_INT(qvl_dtype_parse("F64", &d), -1);
    CHECK_STR(qvl_dtype_name(QVL_BF16), "BF16");
    CHECK_INT(qvl_dtype_size(QVL_I64), 8);
}

TEST(safetensors_header_length_checks) {
    const char *p = tmp("empty.safetensors");
    CHECK_INT(write_text(p, ""), 0);
    CHECK_CONTAINS(open_err(p), "empty.safetensors: truncated: 0 bytes");
    p = tmp("short.safetensors");
    CHECK_INT(write_text(p, "abc"), 0);
    CHECK_CONTAINS(open_err(p), "short.safetensors: truncated: 3 bytes");
    /* 1 TB header length in a small file: refused before any allocation */
    p = tmp("tb.safetensors");
    CHECK_INT(sparse_write_raw(p, "{}", 1099511627776LL, 0), 0);
    CHECK_CONTAINS(open_err(p), "tb.safetensors: header length 1099511627776 exceeds the file size (10 bytes");
    /* a 200 MB sparse file claiming a 150 MB header: over the limit, not parsed */
    p = tmp("big.safetensors");
    CHECK_INT(sparse_write_raw(p, "{", 150LL << 20, 200u << 20), 0);
    CHECK_CONTAINS(open_err(p), "header length 157286400 is over the 104857600 byte limit");
    /* truncated: header length larger than what is there */
    p = tmp("trunc.safetensors");
    CHECK_INT(sparse_write_raw(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 400, 0), 0);
    CHECK_CONTAINS(open_err(p), "trunc.safetensors: header length 400 exceeds the file size");
}

TEST(safetensors_bad_json_and_entries) {
    struct {
        const char *header;
        const char *want;
    } cases[] = {
        {"{\"a\":{\"dtype\":\"F32\",", "header is not valid JSON"},
        {"[1,2,3]", "header is not a JSON object"},
        {"{\"a\":1}", "tensor a: header entry is not an object"},
        {"{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", "tensor a: missing dtype"},
        {"{\"w.x\":{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[0,8]}}", "tensor w.x: unsupported dtype F64"},
        {"{\"a\":{\"dtype\":\"BOOL\",\"shape\":[1],\"data_offsets\":[0,1]}}", "tensor a: unsupported dtype BOOL"},
        {"{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", "tensor a: missing shape"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", "tensor a: shape[0] is not a non-negative integer"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}", "tensor a: shape[0] is not a non-negative integer"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", "tensor a: 9 dimensions"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,16],\"data_offsets\":[0,4]}}", "tensor a: shape is too large"},
        /* numel 0, but the int64 product of the first two dimensions overflows on the way */
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[9007199254740992,1024,0],\"data_offsets\":[0,0]}}", "tensor a: shape is too large"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", "tensor a: data_offsets must be two"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,0]}}", "tensor a: data_offsets [4, 0] are reversed"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", "tensor a: data_offsets [0, 16] run past the end of the data (8 bytes"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", "tensor a: shape and dtype F32 need 12 bytes but data_offsets hold 8"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[2,6]}}",
         "tensor b overlaps tensor a (data_offsets [2, 6] and [0, 4])"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
         "tensor a appears twice in the header"},
        {"{\"__metadata__\":[1],\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", "__metadata__ is not an object"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}} xyz", "header has trailing bytes"},
        {"{\"a\\nb\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", "a tensor name contains control characters"},
        {"  {\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,8]}}",
         "tensor b: shape and dtype F32 need 8 bytes but data_offsets hold 4"}, /* leading spaces are fine */
    };
    uint8_t data[8] = {0};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char name[64];
        snprintf(name, sizeof name, "bad%zu.safetensors", i);
        const char *p = tmp(name);
        CHECK_INT(write_st(p, cases[i].header, data, 8), 0);
        const char *e = open_err(p);
        CHECK_CONTAINS(e, name);
        CHECK_CONTAINS(e, cases[i].want);
        CHECK(strchr(e, '\n') == NULL);
    }
}

TEST(safetensors_truncated_real_shaped_file) {
    /* A real-shaped file cut short: the last tensor's offsets run past the end. */
    qvl_tensor_spec s[2] = {{"model.language_model.embed_tokens.weight", 2, {151936, 2048}, QVL_GROUP_TEXT},
                            {"model.language_model.norm.weight", 1, {2048}, QVL_GROUP_TEXT}};
    const char *p = tmp("cut.safetensors");
    CHECK_INT(sparse_write_specs(p, s, 2, "BF16"), 0);
    qvl_safetensors *st = qvl_st_open(p);
    CHECK(st != NULL);
    qvl_st_close(st);
    FILE *f = fopen(p, "r+b");
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    CHECK_INT(ftruncate(fileno(f), n - 1), 0);
    fclose(f);
    CHECK_CONTAINS(open_err(p), "cut.safetensors: tensor model.language_model.norm.weight: data_offsets [622329856, 622333952] run past the end");
}

/* A two-shard set in folder NAME: a,b in shard 1, c in shard 2 (F32 [2] each). */
static const char *make_shards(const char *name, const char *index) {
    const char *dir = tmp(name);
    char p[600];
    snprintf(p, sizeof p, "mkdir -p %s", dir);
    CHECK_INT(system(p), 0);
    float v[4] = {1, 2, 3, 4};
    snprintf(p, sizeof p, "%s/s1.safetensors", dir);
    CHECK_INT(write_st(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                          "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}", v, 16), 0);
    snprintf(p, sizeof p, "%s/s2.safetensors", dir);
    CHECK_INT(write_st(p, "{\"c\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", v + 2, 8), 0);
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
    CHECK_INT(write_text(p, index), 0);
    return dir;
}

TEST(safetensors_sharded) {
    const char *dir = make_shards("shards-ok", "{\"metadata\":{\"total_size\":24},\"weight_map\":"
                                               "{\"a\":\"s1.safetensors\",\"b\":\"s1.safetensors\",\"c\":\"s2.safetensors\"}}");
    qvl_safetensors *st = qvl_st_open(dir);
    CHECK(st != NULL);
    if (st) {
        CHECK_INT(qvl_st_count(st), 3);
        CHECK_INT(qvl_st_file_count(st), 2);
        CHECK_CONTAINS(qvl_st_path(st), "shards-ok/model.safetensors.index.json");
        const qvl_tensor *c = qvl_st_find(st, "c");
        CHECK_CONTAINS(c->file, "shards-ok/s2.safetensors");
        CHECK_NEAR(qvl_tensor_get_f32(c, 1), 4.0, 0);
        CHECK_NEAR(qvl_tensor_get_f32(qvl_st_find(st, "b"), 0), 3.0, 0);
        qvl_st_close(st);
    }
    /* the index file itself can be opened too */
    char p[600];
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
    st = qvl_st_open(p);
    CHECK(st != NULL);
    qvl_st_close(st);

    dir = make_shards("shards-missing-shard", "{\"weight_map\":{\"a\":\"s1.safetensors\",\"c\":\"s3.safetensors\"}}");
    CHECK_CONTAINS(open_err(dir), "model.safetensors.index.json: shard ");
    CHECK_CONTAINS(open_err(dir), "s3.safetensors (holding tensor c) is missing");
    dir = make_shards("shards-missing-tensor", "{\"weight_map\":{\"a\":\"s1.safetensors\",\"d\":\"s2.safetensors\"}}");
    CHECK_CONTAINS(open_err(dir), "s2.safetensors: tensor d listed in ");
    CHECK_CONTAINS(open_err(dir), "is missing from this shard");
    dir = make_shards("shards-wrong-shard", "{\"weight_map\":{\"a\":\"s2.safetensors\",\"c\":\"s2.safetensors\"}}");
    CHECK_CONTAINS(open_err(dir), "s2.safetensors: tensor a listed in");
    dir = make_shards("shards-not-json", "{\"weight_map\":");
    CHECK_CONTAINS(open_err(dir), "model.safetensors.index.json: not valid JSON");
    dir = make_shards("shards-no-map", "{\"metadata\":{}}");
    CHECK_CONTAINS(open_err(dir), "model.safetensors.index.json: missing weight_map object");
    dir = make_shards("shards-escape", "{\"weight_map\":{\"a\":\"../x.safetensors\"}}");
    CHECK_CONTAINS(open_err(dir), "shard name '../x.safetensors' must be a plain file name");
    dir = make_shards("shards-number", "{\"weight_map\":{\"a\":3}}");
    CHECK_CONTAINS(open_err(dir), "weight_map entry a is not a file name");
    /* the same tensor in two shards */
    dir = make_shards("shards-dup", "{\"weight_map\":{\"a\":\"s1.safetensors\",\"c\":\"s2.safetensors\"}}");
    snprintf(p, sizeof p, "%s/s2.safetensors", dir);
    float v[2] = {0, 0};
    CHECK_INT(write_st(p, "{\"c\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                          "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", v, 8), 0);
    CHECK_CONTAINS(open_err(dir), "tensor a is also in");
}

TEST(safetensors_missing_files) {
    CHECK_CONTAINS(open_err(tmp("nope.safetensors")), "nope.safetensors: No such file or directory");
    CHECK_CONTAINS(open_err(tmp("nope.index.json")), "nope.index.json: No such file or directory");
    const char *dir = tmp("emptydir");
    char cmd[600];
    snprintf(cmd, sizeof cmd, "mkdir -p %s", dir);
    CHECK_INT(system(cmd), 0);
    CHECK_CONTAINS(open_err(dir), "emptydir: no model.safetensors or model.safetensors.index.json in this folder");
    /* a folder with a single model.safetensors */
    char p[600];
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    float v = 2.5f;
    CHECK_INT(write_st(p, "{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", &v, 4), 0);
    qvl_safetensors *st = qvl_st_open(dir);
    CHECK(st != NULL);
    if (st) {
        CHECK_STR(qvl_st_path(st), p);
        CHECK_NEAR(qvl_tensor_get_f32(qvl_st_find(st, "x"), 0), 2.5, 0);
        qvl_st_close(st);
    }
}

/* Random corruption of a valid header never crashes (ASan/UBSan run this in CI). */
TEST(safetensors_fuzz_header_bytes) {
    const char *hdr = "{\"__metadata__\":{\"format\":\"pt\"},\"a\":{\"dtype\":\"BF16\",\"shape\":[2,3],\"data_offsets\":[0,12]},"
                      "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[12,16]}}";
    size_t n = strlen(hdr);
    uint8_t data[16] = {0};
    const char *p = tmp("fuzz.safetensors");
    uint32_t seed = 12345;
    int opened = 0;
    char *h = malloc(n + 1);
    for (int it = 0; it < 400; it++) {
        memcpy(h, hdr, n + 1);
        for (int k = 0; k < 1 + it % 4; k++) {
            seed = seed * 1103515245u + 12345u;
            size_t pos = (seed >> 8) % n;
            seed = seed * 1103515245u + 12345u;
            const char alphabet[] = "{}[]\":,0123456789-eE.aF \\";
            h[pos] = alphabet[(seed >> 8) % (sizeof alphabet - 1)];
        }
        CHECK_INT(write_st(p, h, data, 16), 0);
        qvl_safetensors *st = qvl_st_open(p);
        if (st) {
            opened++;
            for (int i = 0; i < qvl_st_count(st); i++) {
                const qvl_tensor *t = qvl_st_get(st, i);
                CHECK((const uint8_t *)t->data + t->nbytes <= (const uint8_t *)t->data + 16);
                float out[16];
                if (qvl_tensor_numel(t) <= 16) CHECK_INT(qvl_tensor_to_f32(t, out), 0);
            }
            qvl_st_close(st);
        } else {
            CHECK(qvl_error()[0] != 0);
        }
    }
    free(h);
    CHECK(opened > 0);
}
