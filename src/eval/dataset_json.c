/* The original OCRBench.json: an array of {dataset_name, id, image_path, question, answers, type};
 * a sample's key is its array position; images live in a folder beside the file (or images_dir). */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "eval/dataset_internal.h"
#include "util/error.h"
#include "util/file.h"

static int is_file(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

/* dir/rel if it exists, else a file in the same folder whose name differs only in the case of
 * the extension (the annotation says .JPEG where the archive has .jpeg, and the reverse). */
static char *find_image(const char *dir, const char *rel) {
    char *full = qvl_path_join(dir, rel);
    if (!full || is_file(full)) return full;
    char *slash = strrchr(full, '/');
    char *name = slash ? slash + 1 : full;
    char *dot = strrchr(name, '.');
    if (!dot || dot == name) {
        free(full);
        return NULL;
    }
    char *folder = slash ? strndup(full, (size_t)(slash - full)) : strdup(".");
    DIR *d = folder ? opendir(folder) : NULL;
    char *found = NULL;
    size_t stem = (size_t)(dot - name);
    struct dirent *e;
    while (d && !found && (e = readdir(d))) {
        if (strlen(e->d_name) == strlen(name) && !strncmp(e->d_name, name, stem) &&
            !strcasecmp(e->d_name + stem, dot)) {
            found = qvl_path_join(folder, e->d_name);
            if (found && !is_file(found)) {
                free(found);
                found = NULL;
            }
        }
    }
    if (d) closedir(d);
    free(folder);
    free(full);
    return found;
}

static char *resolve_image(const char *base, const char *rel) {
    char *p = find_image(base, rel);
    if (p) return p;
    /* the archive unpacks to OCRBench_Images/ next to the annotation file */
    char *sub = qvl_path_join(base, "OCRBench_Images");
    if (sub) p = find_image(sub, rel);
    free(sub);
    return p;
}

static const char *string_field(const cJSON *item, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(item, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* Fills one sample from one array item; problems become the sample's error. -1 only on OOM. */
static int load_item(const cJSON *item, const char *base, int with_images, qvl_sample *s) {
    if (!cJSON_IsObject(item)) {
        qvl_sample_set_error(s, "item is not a JSON object");
        return 0;
    }
    const char *ds = string_field(item, "dataset_name"), *q = string_field(item, "question");
    const char *type = string_field(item, "type"), *img = string_field(item, "image_path");
    if ((ds && qvl_set_string(&s->dataset, ds, strlen(ds))) || (q && qvl_set_string(&s->question, q, strlen(q))) ||
        (type && qvl_set_string(&s->type, type, strlen(type))))
        return -1;
    if (!q) qvl_sample_set_error(s, "missing or non-string key 'question'");
    if (!type) qvl_sample_set_error(s, "missing or non-string key 'type'");
    const cJSON *ans = cJSON_GetObjectItemCaseSensitive(item, "answers");
    int n = cJSON_IsString(ans) ? 1 : cJSON_IsArray(ans) ? cJSON_GetArraySize(ans) : 0;
    int bad = !ans || n == 0;
    if (cJSON_IsArray(ans)) {
        const cJSON *a;
        cJSON_ArrayForEach(a, ans) bad |= !cJSON_IsString(a);
    }
    if (bad) qvl_sample_set_error(s, "key 'answers' must be a string or a non-empty list of strings");
    else {
        if (!(s->answers = calloc((size_t)n, sizeof *s->answers))) return -1;
        for (int i = 0; i < n; i++) {
            const char *a = cJSON_IsString(ans) ? ans->valuestring : cJSON_GetArrayItem(ans, i)->valuestring;
            if (!(s->answers[i] = strdup(a))) return -1;
            s->n_answers++;
        }
    }
    if (!img) {
        if (with_images) qvl_sample_set_error(s, "missing or non-string key 'image_path'");
        return 0;
    }
    if (!with_images) {
        s->image_path = qvl_path_join(base, img);
        return s->image_path ? 0 : -1;
    }
    s->image_path = resolve_image(base, img);
    if (!s->image_path) qvl_sample_set_error(s, "image not found: %s (looked in %s)", img, base);
    return 0;
}

int qvl_dataset_load_json(const char *path, const char *images_dir, int with_images, qvl_dataset *ds) {
    size_t len;
    char *text = qvl_read_file(path, &len);
    if (!text) return -1;
    const char *end = NULL;
    size_t bom = len >= 3 && !memcmp(text, "\xEF\xBB\xBF", 3) ? 3 : 0;
    cJSON *root = cJSON_ParseWithLengthOpts(text + bom, len - bom, &end, 0);
    if (!root) {
        long off = end ? (long)(end - text) : -1;
        free(text);
        return qvl_errorf("%s: invalid JSON near byte %ld", path, off);
    }
    free(text);
    if (!cJSON_IsArray(root) || cJSON_GetArraySize(root) == 0) {
        cJSON_Delete(root);
        return qvl_errorf("%s: not an OCRBench annotation file (expected a non-empty JSON array)", path);
    }
    char *base = NULL;
    if (images_dir) base = strdup(images_dir);
    else {
        char *copy = strdup(path);
        if (copy) base = strdup(dirname(copy));
        free(copy);
    }
    int rc = base ? 0 : qvl_errorf("%s: out of memory", path);
    long index = 0;
    const cJSON *item;
    cJSON_ArrayForEach(item, root) {
        if (rc) break;
        qvl_sample *s = qvl_dataset_add(ds);
        if (!s) { rc = -1; break; }
        s->index = index++;
        if (load_item(item, base, with_images, s)) rc = qvl_errorf("%s: out of memory", path);
    }
    /* if no item has the OCRBench keys, the file is something else: say so instead of 1000 errors */
    if (!rc) {
        long usable = 0;
        for (long i = 0; i < ds->n_samples; i++) usable += ds->samples[i].n_answers > 0 && ds->samples[i].type[0];
        if (!usable) rc = qvl_errorf("%s: not an OCRBench annotation file (item 0: %s)", path,
                                     ds->samples[0].error ? ds->samples[0].error : "no usable items");
    }
    free(base);
    cJSON_Delete(root);
    return rc;
}
