/* Loading tokenizer.json: checks that it is the byte-level BPE kind this tokenizer implements
 * (anything else is refused with a reason), then builds the id, merge and added-token tables. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tokenizer/bytelevel.h"
#include "tokenizer/pretok.h"
#include "tokenizer/tokenizer_internal.h"
#include "util/error.h"
#include "util/file.h"
#include "util/parallel.h"

static const char *str_field(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* A missing/null field, false, or an empty string count as "off". */
static int field_is_off(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return !v || cJSON_IsNull(v) || cJSON_IsFalse(v) || (cJSON_IsString(v) && !v->valuestring[0]);
}

static int check_normalizer(const cJSON *n, const char *path) {
    if (!n || cJSON_IsNull(n)) return 0;
    const char *t = str_field(n, "type");
    if (t && !strcmp(t, "NFC")) return 0;
    if (t && !strcmp(t, "Sequence")) {
        const cJSON *it;
        cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(n, "normalizers")) {
            const char *tt = str_field(it, "type");
            if (!tt || strcmp(tt, "NFC")) return qvl_errorf("%s: unsupported normalizer '%s' (only NFC)", path, tt ? tt : "?");
        }
        return 0;
    }
    return qvl_errorf("%s: unsupported normalizer '%s' (only NFC)", path, t ? t : "?");
}

/* Accepts [Split(regex, Isolated), ByteLevel(use_regex=false)]; returns the regex. */
static const char *check_pre_tokenizer(const cJSON *p, const char *path) {
    const char *t = p ? str_field(p, "type") : NULL;
    const cJSON *seq = t && !strcmp(t, "Sequence") ? cJSON_GetObjectItemCaseSensitive(p, "pretokenizers") : NULL;
    const cJSON *split = seq ? cJSON_GetArrayItem(seq, 0) : NULL, *bl = seq ? cJSON_GetArrayItem(seq, 1) : NULL;
    const char *st = split ? str_field(split, "type") : NULL, *bt = bl ? str_field(bl, "type") : NULL;
    if (!seq || cJSON_GetArraySize(seq) != 2 || !st || strcmp(st, "Split") || !bt || strcmp(bt, "ByteLevel")) {
        qvl_errorf("%s: unsupported pre_tokenizer (expected Sequence[Split, ByteLevel] as in Qwen2/Qwen3)", path);
        return NULL;
    }
    const char *re = str_field(cJSON_GetObjectItemCaseSensitive(split, "pattern"), "Regex");
    const char *beh = str_field(split, "behavior");
    if (!re || !beh || strcmp(beh, "Isolated") || !field_is_off(split, "invert")) {
        qvl_errorf("%s: unsupported Split pre_tokenizer (expected a Regex pattern, behavior Isolated)", path);
        return NULL;
    }
    if (!field_is_off(bl, "add_prefix_space") || !field_is_off(bl, "use_regex")) {
        qvl_errorf("%s: unsupported ByteLevel pre_tokenizer (add_prefix_space/use_regex must be false)", path);
        return NULL;
    }
    return re;
}

static int check_model(const cJSON *m, const char *path) {
    const char *t = m ? str_field(m, "type") : NULL;
    if (!t) return qvl_errorf("%s: no model type", path);
    if (strcmp(t, "BPE")) return qvl_errorf("%s: unsupported tokenizer model type '%s' (only byte-level BPE)", path, t);
    const char *off[] = {"dropout", "continuing_subword_prefix", "end_of_word_suffix", "byte_fallback", "ignore_merges"};
    for (size_t i = 0; i < sizeof off / sizeof off[0]; i++)
        if (!field_is_off(m, off[i])) return qvl_errorf("%s: unsupported BPE option '%s'", path, off[i]);
    if (!cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(m, "vocab")))
        return qvl_errorf("%s: model.vocab is not an object", path);
    if (!cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(m, "merges")))
        return qvl_errorf("%s: model.merges is not an array", path);
    return 0;
}

static int valid_id(const cJSON *v) {
    return cJSON_IsNumber(v) && v->valuedouble >= 0 && v->valuedouble < 16777216 &&
           v->valuedouble == (double)(int32_t)v->valuedouble;
}

void qvl_tokenizer_free(qvl_tokenizer *tok) {
    if (!tok) return;
    tok_free_split(tok);
    if (tok->owned_block) {
        free(tok->owned_block);
    } else {
        free(tok->tok_off);
        free(tok->tok_len);
        free(tok->tok_flags);
        free(tok->arena);
        free(tok->vocab.slots);
        free(tok->merges.keys);
        free(tok->merges.rank);
        free(tok->merges.merged);
        free(tok->added);
    }
    free(tok);
}

/* Adds token id's bytes to the arena (the arena was sized for the whole file). */
static int set_token(qvl_tokenizer *tok, int32_t id, const char *spelled, size_t n, uint8_t flags, int unmap) {
    if (tok->tok_flags[id] & TOK_PRESENT && !(flags & TOK_ADDED)) return 0; /* duplicate vocab id: keep first */
    tok->tok_off[id] = (uint32_t)tok->arena_len;
    size_t len = unmap ? bytelevel_unmap(spelled, n, tok->arena + tok->arena_len) : n;
    if (!unmap) memcpy(tok->arena + tok->arena_len, spelled, n);
    tok->tok_len[id] = (uint32_t)len;
    tok->arena_len += len;
    tok->tok_flags[id] = (uint8_t)(TOK_PRESENT | flags);
    return 0;
}

/* The id of a ByteLevel-spelled token string, or -1. */
static int32_t spelled_id(const qvl_tokenizer *tok, const char *s, char *scratch) {
    size_t n = bytelevel_unmap(s, strlen(s), scratch);
    return tok_str_map_get(&tok->vocab, tok, scratch, n);
}

/* The two parts of a merge, as ["a", "b"] or the older "a b"; pair is scratch for the latter.
 * 0, or 1 if the entry has neither form. */
static int merge_parts(const cJSON *m, char pair[1024], const char **a, const char **b) {
    if (cJSON_IsString(m)) {
        const char *sp = strchr(m->valuestring, ' ');
        size_t len = strlen(m->valuestring);
        if (!sp || len >= 1024 || strchr(sp + 1, ' ')) return 1;
        memcpy(pair, m->valuestring, len + 1);
        pair[sp - m->valuestring] = 0;
        *a = pair, *b = pair + (sp - m->valuestring) + 1;
        return 0;
    }
    const cJSON *x = cJSON_GetArrayItem(m, 0), *y = x ? x->next : NULL;
    if (!cJSON_IsArray(m) || !cJSON_IsString(x) || !cJSON_IsString(y) || y->next) return 1;
    *a = x->valuestring, *b = y->valuestring;
    return 0;
}

enum { MERGE_OK, MERGE_BAD_FORM, MERGE_TOO_LONG, MERGE_UNKNOWN_TOKEN };

/* Ids of a merge's left part, right part and result: out[0..2]. Read-only on tok. */
static int resolve_merge(const qvl_tokenizer *tok, const cJSON *m, int32_t out[3]) {
    char pair[1024], a_buf[1024], b_buf[1024], ab[2048];
    const char *a, *b;
    if (merge_parts(m, pair, &a, &b)) return MERGE_BAD_FORM;
    size_t la = strlen(a), lb = strlen(b);
    if (la >= sizeof a_buf || lb >= sizeof b_buf) return MERGE_TOO_LONG;
    int32_t ia = spelled_id(tok, a, a_buf), ib = spelled_id(tok, b, b_buf), im = -1;
    if (ia < 0 || ib < 0) return MERGE_UNKNOWN_TOKEN;
    size_t na = tok->tok_len[ia], nb = tok->tok_len[ib];
    if (na + nb <= sizeof ab) { /* the merged token's bytes are the two parts' bytes */
        memcpy(ab, tok->arena + tok->tok_off[ia], na);
        memcpy(ab + na, tok->arena + tok->tok_off[ib], nb);
        im = tok_str_map_get(&tok->vocab, tok, ab, na + nb);
    }
    if (im < 0) { /* spelled with characters outside the ByteLevel map */
        memcpy(ab, a, la);
        memcpy(ab + la, b, lb + 1);
        im = spelled_id(tok, ab, a_buf);
    }
    if (im < 0) return MERGE_UNKNOWN_TOKEN;
    out[0] = ia, out[1] = ib, out[2] = im;
    return MERGE_OK;
}

typedef struct {
    const qvl_tokenizer *tok;
    const cJSON **items;
    int32_t *ids;
    uint8_t *status;
} merge_job;

static void resolve_merges(void *arg, int begin, int end) {
    merge_job *j = arg;
    for (int i = begin; i < end; i++)
        j->status[i] = (uint8_t)resolve_merge(j->tok, j->items[i], j->ids + 3 * (size_t)i);
}

/* The merge lookups (hash-map probes, mostly cache misses) run on a few threads; the table is
 * filled in rank order afterwards. */
static int load_merges(qvl_tokenizer *tok, const cJSON *merges, const char *path) {
    size_t n = (size_t)cJSON_GetArraySize(merges), k = 0;
    if (tok_merge_map_init(&tok->merges, n)) return qvl_errorf("%s: out of memory", path);
    const cJSON **items = malloc((n + 1) * sizeof *items);
    int32_t *ids = malloc((3 * n + 1) * sizeof *ids);
    uint8_t *status = malloc(n + 1);
    int rc = 0;
    if (!items || !ids || !status) {
        rc = qvl_errorf("%s: out of memory", path);
        goto done;
    }
    const cJSON *m;
    cJSON_ArrayForEach(m, merges) items[k++] = m;
    enum { MAX_THREADS = 4 };
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    int n_threads = cpus < 1 ? 1 : cpus > MAX_THREADS ? MAX_THREADS : (int)cpus;
    if (n < 10000) n_threads = 1;
    merge_job job = {tok, items, ids, status};
    qvl_parallel_for(n_threads, (int)n, 1, resolve_merges, &job);
    for (size_t i = 0; i < n && !rc; i++) {
        char pair[1024];
        const char *a = "?", *b = "?";
        switch (status[i]) {
        case MERGE_OK: tok_merge_map_put(&tok->merges, ids[3 * i], ids[3 * i + 1], (uint32_t)i, ids[3 * i + 2]); break;
        case MERGE_BAD_FORM: rc = qvl_errorf("%s: merge %zu is not a pair of strings", path, i); break;
        case MERGE_TOO_LONG: rc = qvl_errorf("%s: merge %zu too long", path, i); break;
        default:
            merge_parts(items[i], pair, &a, &b);
            rc = qvl_errorf("%s: merge %zu ('%s' '%s') uses a token not in the vocabulary", path, i, a, b);
        }
    }
    tok->n_merges = (int32_t)n;
done:
    free(items);
    free(ids);
    free(status);
    return rc;
}

static int cmp_added_longest_first(const void *x, const void *y, void *ctx) {
    const qvl_tokenizer *tok = ctx;
    const tok_added *a = x, *b = y;
    uint32_t la = tok->tok_len[a->id], lb = tok->tok_len[b->id];
    return la != lb ? (la < lb ? 1 : -1) : (a->id > b->id) - (a->id < b->id);
}

int tok_finish_load(qvl_tokenizer *tok, const char *split_pattern, const char *path) {
    memset(tok->added_first, 0, sizeof tok->added_first);
    qsort_r(tok->added, (size_t)tok->n_added, sizeof *tok->added, cmp_added_longest_first, tok);
    for (int i = 0; i < tok->n_added; i++) {
        int32_t id = tok->added[i].id;
        if (tok->tok_len[id]) tok->added_first[(unsigned char)tok->arena[tok->tok_off[id]]] = 1;
    }
    for (int b = 0; b < 256; b++) {
        char c = (char)b;
        tok->byte_id[b] = tok_str_map_get(&tok->vocab, tok, &c, 1);
        if (tok->byte_id[b] < 0) return qvl_errorf("%s: vocabulary lacks the token for byte 0x%02X", path, b);
    }
    if (tok_compile_split(tok, split_pattern)) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", qvl_error());
        return qvl_errorf("%s: %s", path, msg);
    }
    return 0;
}

static qvl_tokenizer *load_json(const char *path, const char *text, size_t len, uint64_t hash, const char *cache_dir) {
    cJSON *root = cJSON_ParseWithLength(text, len);
    if (!root) {
        qvl_errorf("%s: not valid JSON", path);
        return NULL;
    }
    qvl_tokenizer *tok = calloc(1, sizeof *tok);
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
    const char *dec_type = str_field(cJSON_GetObjectItemCaseSensitive(root, "decoder"), "type");
    const char *split_pattern = NULL;
    if (!tok) goto oom;
    if (!cJSON_IsObject(root)) {
        qvl_errorf("%s: not a tokenizer.json (top level is not an object)", path);
        goto fail;
    }
    if (check_model(model, path) || check_normalizer(cJSON_GetObjectItemCaseSensitive(root, "normalizer"), path))
        goto fail;
    if (!(split_pattern = check_pre_tokenizer(cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer"), path)))
        goto fail;
    if (!dec_type || strcmp(dec_type, "ByteLevel")) {
        qvl_errorf("%s: unsupported decoder '%s' (only ByteLevel)", path, dec_type ? dec_type : "none");
        goto fail;
    }
    if (added && !cJSON_IsArray(added)) {
        qvl_errorf("%s: added_tokens is not an array", path);
        goto fail;
    }
    /* Size the tables: highest id, total token bytes. */
    int32_t max_id = -1;
    size_t bytes = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, vocab) {
        if (!valid_id(it)) {
            qvl_errorf("%s: vocab entry '%s' has a bad id", path, it->string);
            goto fail;
        }
        if ((int32_t)it->valuedouble > max_id) max_id = (int32_t)it->valuedouble;
        bytes += strlen(it->string);
    }
    cJSON_ArrayForEach(it, added) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(it, "id");
        const char *content = str_field(it, "content");
        if (!valid_id(id) || !content || !content[0]) {
            qvl_errorf("%s: added token %d has no id or content", path, tok->n_added);
            goto fail;
        }
        if (!field_is_off(it, "lstrip") || !field_is_off(it, "rstrip") || !field_is_off(it, "single_word")) {
            qvl_errorf("%s: added token '%s': lstrip/rstrip/single_word are not supported", path, content);
            goto fail;
        }
        if ((int32_t)id->valuedouble > max_id) max_id = (int32_t)id->valuedouble;
        bytes += strlen(content);
        tok->n_added++;
    }
    if (max_id < 255) {
        qvl_errorf("%s: vocabulary too small (%d tokens)", path, max_id + 1);
        goto fail;
    }
    tok->n_tokens = max_id + 1;
    tok->tok_off = calloc((size_t)tok->n_tokens, sizeof *tok->tok_off);
    tok->tok_len = calloc((size_t)tok->n_tokens, sizeof *tok->tok_len);
    tok->tok_flags = calloc((size_t)tok->n_tokens, 1);
    tok->arena = calloc(bytes + 1, 1);
    tok->added = calloc((size_t)tok->n_added + 1, sizeof *tok->added);
    if (!tok->tok_off || !tok->tok_len || !tok->tok_flags || !tok->arena || !tok->added) goto oom;
    cJSON_ArrayForEach(it, vocab) set_token(tok, (int32_t)it->valuedouble, it->string, strlen(it->string), 0, 1);
    int k = 0;
    cJSON_ArrayForEach(it, added) {
        int32_t id = (int32_t)cJSON_GetObjectItemCaseSensitive(it, "id")->valuedouble;
        const char *content = str_field(it, "content");
        int special = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(it, "special"));
        /* Stored verbatim: input text matches it as written, and decoding gives it back. (The
         * reference decoder would unmap a content made only of ByteLevel stand-in characters such
         * as "\u0120"; for ASCII contents, like all of Qwen's, both agree.) */
        set_token(tok, id, content, strlen(content), (uint8_t)(TOK_ADDED | (special ? TOK_SPECIAL : 0)), 0);
        tok->added[k++] = (tok_added){id, special};
    }
    if (tok_str_map_build(&tok->vocab, tok)) goto oom;
    if (load_merges(tok, cJSON_GetObjectItemCaseSensitive(model, "merges"), path)) goto fail;
    if (tok_finish_load(tok, split_pattern, path)) goto fail;
    if (cache_dir) tok_cache_save(cache_dir, tok, len, hash, split_pattern); /* best effort */
    cJSON_Delete(root);
    return tok;
oom:
    qvl_errorf("%s: out of memory", path);
fail:
    cJSON_Delete(root);
    qvl_tokenizer_free(tok);
    return NULL;
}

qvl_tokenizer *qvl_tokenizer_load(const char *path) { return qvl_tokenizer_load_cached(path, NULL); }

qvl_tokenizer *qvl_tokenizer_load_cached(const char *path, const char *cache_dir) {
    char *file = qvl_is_dir(path) ? qvl_path_join(path, "tokenizer.json") : strdup(path);
    if (!file) {
        qvl_errorf("%s: out of memory", path);
        return NULL;
    }
    size_t len;
    char *text = qvl_read_file(file, &len);
    qvl_tokenizer *tok = NULL;
    if (text) {
        uint64_t hash = tok_hash_bytes(text, len);
        if (cache_dir) tok = tok_cache_load(cache_dir, file, len, hash);
        if (!tok) tok = load_json(file, text, len, hash, cache_dir);
        free(text);
    }
    free(file);
    return tok;
}
