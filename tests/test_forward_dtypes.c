/* Weights stored as F32 or F16 instead of BF16 load to the same float32 model: the tiny untied
 * checkpoint is rewritten in each dtype (a small safetensors writer below) and must give the
 * same logits (bit-identical for F32, which holds every BF16 value exactly). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/npy.h"
#include "io/safetensors.h"
#include "model/model.h"
#include "test.h"
#include "util/error.h"
#include "util/file.h"

#define FIX "tests/fixtures/tiny"

/* float -> IEEE half, round to nearest even (normal, subnormal and overflow to inf). */
static uint16_t f32_to_f16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000, mant = x & 0x7fffff;
    int exp = (int)((x >> 23) & 0xff) - 127 + 15;
    if (exp >= 31) return (uint16_t)(sign | 0x7c00);
    if (exp <= 0) {
        if (exp < -10) return (uint16_t)sign;
        mant |= 0x800000;
        int shift = 14 - exp;
        uint32_t h = mant >> shift, rem = mant & ((1u << shift) - 1), halfway = 1u << (shift - 1);
        if (rem > halfway || (rem == halfway && (h & 1))) h++;
        return (uint16_t)(sign | h);
    }
    uint32_t h = ((uint32_t)exp << 10) | (mant >> 13), rem = mant & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (h & 1))) h++; /* a carry into the exponent is correct */
    return (uint16_t)(sign | h);
}

/* Writes every tensor of src as dtype (QVL_F32 or QVL_F16) into path. */
static int write_converted(const qvl_safetensors *src, qvl_dtype dtype, const char *path) {
    size_t esz = dtype == QVL_F32 ? 4 : 2, hcap = 1 << 16, hlen = 0, off = 0;
    char *hdr = malloc(hcap);
    hlen += snprintf(hdr + hlen, hcap - hlen, "{\"__metadata__\":{\"format\":\"pt\"}");
    for (int i = 0; i < qvl_st_count(src); i++) {
        const qvl_tensor *t = qvl_st_get(src, i);
        size_t bytes = (size_t)qvl_tensor_numel(t) * esz;
        hlen += snprintf(hdr + hlen, hcap - hlen, ",\"%s\":{\"dtype\":\"%s\",\"shape\":[", t->name,
                         dtype == QVL_F32 ? "F32" : "F16");
        for (int d = 0; d < t->ndim; d++) hlen += snprintf(hdr + hlen, hcap - hlen, "%s%lld", d ? "," : "", (long long)t->shape[d]);
        hlen += snprintf(hdr + hlen, hcap - hlen, "],\"data_offsets\":[%zu,%zu]}", off, off + bytes);
        off += bytes;
    }
    hlen += snprintf(hdr + hlen, hcap - hlen, "}");
    while (hlen % 8) hdr[hlen++] = ' ';
    FILE *f = fopen(path, "wb");
    if (!f) {
        free(hdr);
        return -1;
    }
    uint64_t n = hlen;
    fwrite(&n, 8, 1, f);
    fwrite(hdr, 1, hlen, f);
    free(hdr);
    for (int i = 0; i < qvl_st_count(src); i++) {
        const qvl_tensor *t = qvl_st_get(src, i);
        size_t cnt = (size_t)qvl_tensor_numel(t);
        float *v = malloc(cnt * sizeof(float));
        qvl_tensor_to_f32(t, v);
        if (dtype == QVL_F32)
            fwrite(v, 4, cnt, f);
        else
            for (size_t k = 0; k < cnt; k++) {
                uint16_t h = f32_to_f16(v[k]);
                fwrite(&h, 2, 1, f);
            }
        free(v);
    }
    return fclose(f);
}

static void copy_file(const char *from, const char *to) {
    size_t len;
    char *d = qvl_read_file(from, &len);
    CHECK(d != NULL);
    if (d) CHECK_INT(qvl_write_file_atomic(to, d, len), 0);
    free(d);
}

/* Logits of the img_wide prompt (with its image) for the model in dir. */
static int logits_of(const char *dir, float *logits) {
    qvl_model *m = qvl_model_open(dir, 2);
    if (!m) {
        test_fail(__FILE__, __LINE__, "open %s: %s", dir, qvl_error());
        return -1;
    }
    qvl_npy ids_a, px;
    CHECK_INT(qvl_npy_read(FIX "/ref/img_wide/input_ids.npy", &ids_a), 0);
    CHECK_INT(qvl_npy_read(FIX "/ref/img_wide/pixel_values.npy", &px), 0);
    int n = (int)ids_a.shape[0];
    int32_t *ids = malloc(n * sizeof *ids);
    for (int i = 0; i < n; i++) ids[i] = (int32_t)((int64_t *)ids_a.data)[i];
    qvl_pixel_values pv = {px.data, 48, 1536, 1, 6, 8, 96, 128, 12};
    qvl_vision_out img;
    CHECK_INT(qvl_model_encode_image(m, &pv, &img), 0);
    qvl_seq *s = qvl_seq_new(m, 64);
    int rc = qvl_seq_prefill(m, s, ids, n, &img, 1, logits);
    CHECK_INT(rc, 0);
    qvl_seq_free(s);
    qvl_vision_out_free(&img);
    free(ids);
    qvl_npy_free(&ids_a);
    qvl_npy_free(&px);
    qvl_model_close(m);
    return rc;
}

TEST(forward_weights_f32_and_f16_load_like_bf16) {
    enum { V = 151936 };
    float *ref = malloc(V * sizeof(float)), *got = malloc(V * sizeof(float));
    CHECK_INT(logits_of(FIX "/untied", ref), 0);
    qvl_safetensors *st = qvl_st_open(FIX "/untied/model.safetensors");
    CHECK(st != NULL);
    qvl_dtype dtypes[2] = {QVL_F32, QVL_F16};
    for (int k = 0; st && k < 2; k++) {
        char dir[512], p[600];
        snprintf(dir, sizeof dir, "%s/untied_%s", test_tmpdir(), qvl_dtype_name(dtypes[k]));
        mkdir(dir, 0755);
        const char *files[] = {"config.json", "preprocessor_config.json", "generation_config.json"};
        for (int i = 0; i < 3; i++) {
            char from[256];
            snprintf(from, sizeof from, FIX "/untied/%s", files[i]);
            snprintf(p, sizeof p, "%s/%s", dir, files[i]);
            copy_file(from, p);
        }
        snprintf(p, sizeof p, "%s/model.safetensors", dir);
        CHECK_INT(write_converted(st, dtypes[k], p), 0);
        if (logits_of(dir, got) != 0) continue;
        double md = 0, mr = 0;
        for (int i = 0; i < V; i++) {
            md = fmax(md, fabs(got[i] - ref[i]));
            mr = fmax(mr, fabs(ref[i]));
        }
        if (dtypes[k] == QVL_F32)
            CHECK(md == 0);
        else
            CHECK(md / mr < 1e-4);
    }
    qvl_st_close(st);
    free(ref);
    free(got);
}
