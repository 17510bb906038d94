#include "sparse_ckpt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "model/config.h"
#include "util/file.h"

int write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t n = strlen(text);
    int ok = fwrite(text, 1, n, f) == n;
    return (fclose(f) == 0 && ok) ? 0 : -1;
}

int sparse_write_raw(const char *path, const char *header, int64_t hlen, uint64_t data_bytes) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t n = strlen(header);
    uint64_t h = hlen < 0 ? (uint64_t)n : (uint64_t)hlen;
    uint8_t le[8];
    for (int i = 0; i < 8; i++) le[i] = (uint8_t)(h >> (8 * i));
    int ok = fwrite(le, 1, 8, f) == 8 && fwrite(header, 1, n, f) == n;
    ok = fflush(f) == 0 && ok;
    if (ok && data_bytes) ok = ftruncate(fileno(f), (off_t)(8 + n + data_bytes)) == 0;
    return (fclose(f) == 0 && ok) ? 0 : -1;
}

int sparse_write_specs(const char *path, const qvl_tensor_spec *specs, int n, const char *dtype) {
    return sparse_write_specs_mixed(path, specs, NULL, dtype, n);
}

int sparse_write_specs_mixed(const char *path, const qvl_tensor_spec *specs, const char *const *dtypes,
                             const char *default_dtype, int n) {
    size_t cap = 256 + (size_t)n * 200, k = 0;
    char *h = malloc(cap);
    if (!h) return -1;
    uint64_t off = 0;
    k += (size_t)snprintf(h + k, cap - k, "{\"__metadata__\":{\"format\":\"pt\"}");
    for (int i = 0; i < n; i++) {
        const char *dtype = dtypes && dtypes[i] ? dtypes[i] : default_dtype;
        qvl_dtype dt;
        uint64_t bytes = qvl_dtype_parse(dtype, &dt) == 0 ? qvl_dtype_size(dt) : 2;
        k += (size_t)snprintf(h + k, cap - k, ",\"%s\":{\"dtype\":\"%s\",\"shape\":[", specs[i].name, dtype);
        for (int d = 0; d < specs[i].ndim; d++) {
            k += (size_t)snprintf(h + k, cap - k, "%s%lld", d ? "," : "", (long long)specs[i].shape[d]);
            bytes *= (uint64_t)specs[i].shape[d];
        }
        k += (size_t)snprintf(h + k, cap - k, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off,
                              (unsigned long long)(off + bytes));
        off += bytes;
    }
    k += (size_t)snprintf(h + k, cap - k, "}");
    while (k % 8) h[k++] = ' '; /* the reference writer pads to 8 bytes */
    h[k] = 0;
    int rc = sparse_write_raw(path, h, -1, off);
    free(h);
    return rc;
}

static int copy_file(const char *src_dir, const char *dst_dir, const char *name) {
    char *s = qvl_path_join(src_dir, name), *d = qvl_path_join(dst_dir, name);
    size_t n = 0;
    char *text = qvl_read_file(s, &n);
    int rc = text ? write_text(d, text) : 0; /* absent source file: leave it absent */
    free(text);
    free(s);
    free(d);
    return rc;
}

int sparse_model_dir(const char *dir, const char *src, int n_shards, spec_mutator mutate) {
    mkdir(dir, 0755);
    if (copy_file(src, dir, "config.json") || copy_file(src, dir, "preprocessor_config.json") ||
        copy_file(src, dir, "generation_config.json"))
        return -1;
    qvl_config *cfg = malloc(sizeof *cfg);
    if (!cfg || qvl_config_load(src, cfg) != 0) {
        free(cfg);
        return -1;
    }
    int n = 0;
    qvl_tensor_spec *specs = qvl_expected_tensors(cfg, &n);
    free(cfg);
    if (!specs) return -1;
    if (mutate) n = mutate(specs, n);
    int rc = 0;
    char path[1024];
    if (n_shards <= 1) {
        snprintf(path, sizeof path, "%s/model.safetensors", dir);
        rc = sparse_write_specs(path, specs, n, "BF16");
    } else {
        size_t cap = 4096 + (size_t)n * 160, k = 0;
        char *idx = malloc(cap);
        k += (size_t)snprintf(idx + k, cap - k, "{\"metadata\":{\"total_size\":0},\"weight_map\":{");
        int per = (n + n_shards - 1) / n_shards;
        for (int s = 0; s < n_shards && rc == 0; s++) {
            int a = s * per, b = a + per < n ? a + per : n;
            if (a > b) a = b;
            char shard[64];
            snprintf(shard, sizeof shard, "model-%05d-of-%05d.safetensors", s + 1, n_shards);
            snprintf(path, sizeof path, "%s/%s", dir, shard);
            rc = sparse_write_specs(path, specs + a, b - a, "BF16");
            for (int i = a; i < b; i++)
                k += (size_t)snprintf(idx + k, cap - k, "%s\"%s\":\"%s\"", i ? "," : "", specs[i].name, shard);
        }
        k += (size_t)snprintf(idx + k, cap - k, "}}\n");
        snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
        if (rc == 0) rc = write_text(path, idx);
        free(idx);
    }
    free(specs);
    return rc;
}
