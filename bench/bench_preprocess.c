/* Image preprocessing throughput: decode + qvl_image_preprocess for a set of image files, on
 * one thread or several (images spread across worker threads; each image may also split its
 * resize/patchify rows over --inner-threads). Files are read into memory first, so disk I/O is not
 * timed. Prints one JSON line. See bench/README.md for the reference half and the numbers.
 *
 * usage: bench_preprocess [--threads N] [--inner-threads M] [--repeat R] FILE_OR_DIR... */
#define _GNU_SOURCE
#include <dirent.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "image/image.h"
#include "util/error.h"
#include "util/file.h"

typedef struct {
    char *name;
    uint8_t *data;
    size_t n;
} input_file;

static input_file *files;
static int n_files, cap_files, inner_threads = 1, repeat = 1;
static atomic_int next_job;
static atomic_long total_patches;
static atomic_int failures;

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static void add_file(const char *path) {
    size_t n;
    char *d = qvl_read_file(path, &n);
    if (!d) {
        fprintf(stderr, "bench: %s\n", qvl_error());
        return;
    }
    if (n_files == cap_files) {
        cap_files = cap_files ? 2 * cap_files : 256;
        files = realloc(files, sizeof *files * cap_files);
    }
    files[n_files++] = (input_file){strdup(path), (uint8_t *)d, n};
}

static int by_name(const void *a, const void *b) {
    return strcmp(((const input_file *)a)->name, ((const input_file *)b)->name);
}

static void add_path(const char *path) {
    if (!qvl_is_dir(path)) {
        add_file(path);
        return;
    }
    DIR *dir = opendir(path);
    struct dirent *e;
    int first = n_files;
    while (dir && (e = readdir(dir))) {
        if (e->d_name[0] == '.') continue;
        char *p = qvl_path_join(path, e->d_name);
        add_file(p);
        free(p);
    }
    if (dir) closedir(dir);
    qsort(files + first, n_files - first, sizeof *files, by_name);
}

static void *worker(void *arg) {
    double *busy = arg;
    qvl_image_params p = qvl_image_params_default();
    p.threads = inner_threads;
    for (;;) {
        int j = atomic_fetch_add(&next_job, 1);
        if (j >= n_files * repeat) break;
        const input_file *f = &files[j % n_files];
        double t0 = now();
        qvl_image img;
        qvl_pixel_values pv;
        if (qvl_image_decode(f->data, f->n, f->name, &img)) {
            atomic_fetch_add(&failures, 1);
            continue;
        }
        double t1 = now();
        if (qvl_image_preprocess(&img, &p, &pv) == 0) {
            atomic_fetch_add(&total_patches, pv.num_patches);
            qvl_pixel_values_free(&pv);
        } else {
            atomic_fetch_add(&failures, 1);
        }
        qvl_image_free(&img);
        busy[0] += t1 - t0;
        busy[1] += now() - t1;
    }
    return NULL;
}

int main(int argc, char **argv) {
    int threads = 1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--inner-threads") && i + 1 < argc) inner_threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--repeat") && i + 1 < argc) repeat = atoi(argv[++i]);
        else add_path(argv[i]);
    }
    if (n_files == 0 || threads < 1 || repeat < 1) {
        fprintf(stderr, "usage: bench_preprocess [--threads N] [--inner-threads M] [--repeat R] FILE_OR_DIR...\n");
        return 2;
    }
    pthread_t *tid = calloc(threads, sizeof *tid);
    double(*busy)[2] = calloc(threads, sizeof *busy);
    double t0 = now();
    for (int i = 1; i < threads; i++) pthread_create(&tid[i], NULL, worker, busy[i]);
    worker(busy[0]);
    for (int i = 1; i < threads; i++) pthread_join(tid[i], NULL);
    double wall = now() - t0, dec = 0, pre = 0;
    for (int i = 0; i < threads; i++) dec += busy[i][0], pre += busy[i][1];
    int n = n_files * repeat;
    printf("{\"images\": %d, \"threads\": %d, \"inner_threads\": %d, \"wall_s\": %.4f, \"ms_per_image\": %.4f, "
           "\"decode_ms_per_image\": %.4f, \"preprocess_ms_per_image\": %.4f, \"patches\": %ld, \"failures\": %d}\n",
           n, threads, inner_threads, wall, 1000 * wall / n, 1000 * dec / n, 1000 * pre / n,
           (long)total_patches, (int)failures);
    for (int i = 0; i < n_files; i++) free(files[i].name), free(files[i].data);
    free(files);
    free(tid);
    free(busy);
    return failures ? 1 : 0;
}
