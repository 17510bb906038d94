/* --shard and mpirun ranks for `qvl eval` (see eval_scale.h). */
#include "cli/eval_scale.h"

#include <dirent.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/eval_mpi.h"
#include "cli/merge.h"
#include "eval/plan_data.h"
#include "eval/shard.h"
#include "util/error.h"
#include "util/file.h"

/* One process's part; a static so atexit can finish the ranks' collectives after an early return. */
static struct {
    int active;             /* --shard or mpirun */
    int mpi;                /* an mpirun rank */
    int index, count;       /* this share, of count */
    int local_rank, local_size;
    int stage;              /* collectives done: 1 settings checked, 2 results gathered */
    int exiting;            /* in the atexit handler: never exit() again */
    qvl_sample *share;
    cJSON *shard;           /* the "shard" setting */
    char *out, *summary;    /* this share's files */
    char *merged_out, *merged_summary;
    char gpu[64];           /* the GPU chosen for this rank ("" none) */
} S;

/* ---- device choice ---- */

/* GPUs the NVIDIA driver lists, without touching CUDA (0 on machines without one). */
static int count_gpus(void) {
    DIR *d = opendir("/proc/driver/nvidia/gpus");
    if (!d) return 0;
    int n = 0;
    for (struct dirent *e; (e = readdir(d));) n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

/* Makes GPU k (of CUDA_VISIBLE_DEVICES's list when set) the only one this process sees, so the
 * engine's device 0 is it. by_rank: k is a local rank, taken modulo the GPUs (ranks then share). */
static int choose_gpu(long k, int by_rank) {
    const char *vis = getenv("CUDA_VISIBLE_DEVICES");
    char entry[64] = "";
    if (vis && *vis) {
        char *list = strdup(vis), *save = NULL;
        if (!list) return qvl_errorf("CUDA_VISIBLE_DEVICES: out of memory");
        int m = 0;
        for (char *t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save)) m++;
        free(list);
        if (!by_rank && k >= m)
            return qvl_errorf("--device cuda:%ld: CUDA_VISIBLE_DEVICES=%s lists %d device%s", k, vis, m, m == 1 ? "" : "s");
        if (by_rank && m == 1) {
            snprintf(S.gpu, sizeof S.gpu, "%s", vis);
            return 0;   /* one listed: every rank shares it */
        }
        list = strdup(vis);
        if (!list) return qvl_errorf("CUDA_VISIBLE_DEVICES: out of memory");
        long want = k % m, i = 0;
        for (char *t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save), i++)
            if (i == want) snprintf(entry, sizeof entry, "%s", t);
        free(list);
    } else {
        int n = by_rank ? count_gpus() : 0;
        if (by_rank && n == 0) return 0;   /* no GPU here: the engine's auto choice stands */
        snprintf(entry, sizeof entry, "%ld", by_rank ? k % n : k);
    }
    snprintf(S.gpu, sizeof S.gpu, "%s", entry);
    return setenv("CUDA_VISIBLE_DEVICES", entry, 1) ? qvl_errorf("CUDA_VISIBLE_DEVICES: cannot set") : 0;
}

/* ---- the ranks' collectives ---- */

static void finish_at_exit(void);

/* Names the first top-level setting that differs between two settings texts. */
static void describe_difference(const char *t0, const char *tr, int r, char *msg, size_t len) {
    cJSON *a = cJSON_Parse(t0), *b = cJSON_Parse(tr);
    snprintf(msg, len, "rank %d: its settings differ from rank 0's", r);
    for (int pass = 0; pass < 2 && a && b; pass++) {
        const cJSON *x = pass ? b : a, *y = pass ? a : b, *it;
        int found = 0;
        cJSON_ArrayForEach(it, x) {
            const cJSON *o = cJSON_GetObjectItemCaseSensitive(y, it->string);
            if (o && cJSON_Compare(it, o, 1)) continue;
            const cJSON *v0 = pass ? o : it, *vr = pass ? it : o;
            char *s0 = v0 ? cJSON_PrintUnformatted(v0) : NULL, *sr = vr ? cJSON_PrintUnformatted(vr) : NULL;
            snprintf(msg, len, "rank %d: setting '%s' differs: rank 0 has %s, rank %d has %s (every rank must run "
                     "the same command)", r, it->string, s0 ? s0 : "(none)", r, sr ? sr : "(none)");
            cJSON_free(s0);
            cJSON_free(sr);
            found = 1;
            break;
        }
        if (found) break;
    }
    cJSON_Delete(a);
    cJSON_Delete(b);
}

/* Stage 1: every rank sends its settings (or "!why" when it failed before); rank 0 sends back ""
 * or the refusal. Returns 0 when every rank may run. Ranks other than 0 leave quietly on a refusal
 * (rank 0 prints it once). */
static int check_ranks(const char *mine) {
    char **all = NULL, *verdict = NULL;
    if (eval_mpi_gather(mine, &all)) return -1;
    S.stage = 1;
    if (S.index == 0) {
        char msg[1024] = "";
        for (int r = 0; r < S.count && !msg[0]; r++) {
            if (all[r][0] == '!') snprintf(msg, sizeof msg, "rank %d: %s", r, all[r] + 1);
            else if (r > 0 && all[0][0] != '!' && strcmp(all[0], all[r])) describe_difference(all[0], all[r], r, msg, sizeof msg);
        }
        for (int r = 0; r < S.count; r++) free(all[r]);
        free(all);
        verdict = strdup(msg);
        if (!verdict) abort();
    }
    eval_mpi_bcast(&verdict);
    if (!verdict[0]) {
        free(verdict);
        return 0;
    }
    S.stage = 2;   /* every rank knows: nothing more to gather */
    if (S.index != 0 && !S.exiting) {
        free(verdict);
        eval_mpi_end();
        exit(1);
    }
    qvl_errorf("%s", verdict);
    free(verdict);
    return -1;
}

/* Stage 2: every rank sends {"ok", "error", "results", "text", "summary"}; rank 0 merges. */
static int gather_results(const qvl_dataset *ds, const char *data, int ok, const char *why) {
    cJSON *mine = cJSON_CreateObject();
    char *text = ok ? qvl_read_file(S.out, NULL) : NULL;
    char *summary = ok && text ? qvl_read_file(S.summary, NULL) : NULL;
    if (ok && (!text || !summary)) {
        ok = 0;
        why = qvl_error();
    }
    cJSON_AddBoolToObject(mine, "ok", ok);
    cJSON_AddStringToObject(mine, "error", ok ? "" : why);
    cJSON_AddStringToObject(mine, "results", S.out ? S.out : "");
    cJSON_AddStringToObject(mine, "text", text ? text : "");
    cJSON_AddStringToObject(mine, "summary", summary ? summary : "");
    free(text);
    free(summary);
    char *payload = cJSON_PrintUnformatted(mine);
    cJSON_Delete(mine);
    if (!payload) abort();   /* the other ranks are already in the collective */
    char **all = NULL, *verdict = NULL;
    int rc = eval_mpi_gather(payload, &all);
    cJSON_free(payload);
    S.stage = 2;
    if (rc) return -1;
    if (S.index == 0) {
        cJSON **docs = calloc((size_t)S.count, sizeof *docs), **sums = calloc((size_t)S.count, sizeof *sums);
        qvl_shard_input *in = calloc((size_t)S.count, sizeof *in);
        char msg[1024] = "";
        if (!docs || !sums || !in) abort();
        for (int r = 0; r < S.count; r++) {
            docs[r] = cJSON_Parse(all[r]);
            const cJSON *d = docs[r];
            if (!cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(d, "ok")) && !msg[0])
                snprintf(msg, sizeof msg, "rank %d stopped before finishing its share: %s (its finished samples "
                         "are kept in %s; rerun the same command to finish)", r,
                         cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(d, "error")),
                         cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(d, "results")));
            in[r].name = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(d, "results"));
            in[r].text = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(d, "text"));
            in[r].len = in[r].text ? strlen(in[r].text) : 0;
            sums[r] = cJSON_Parse(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(d, "summary")));
            in[r].summary = sums[r];
            free(all[r]);
        }
        free(all);
        if (!msg[0] && ok &&
            merge_write_outputs(ds, data, in, S.count, "rank", S.merged_out, S.merged_summary))
            snprintf(msg, sizeof msg, "%s", qvl_error());
        for (int r = 0; r < S.count; r++) {
            cJSON_Delete(docs[r]);
            cJSON_Delete(sums[r]);
        }
        free(docs);
        free(sums);
        free(in);
        verdict = strdup(msg);
        if (!verdict) abort();
    }
    /* Everyone waits for rank 0's outputs, so mpirun never stops rank 0 for another rank's exit code. */
    eval_mpi_bcast(&verdict);
    rc = verdict[0] ? -1 : 0;
    if (rc && S.index == 0) qvl_errorf("%s", verdict);
    free(verdict);
    return rc;
}

/* An early return from cmd_eval (or exit) on a rank: take part in the collectives left, as failed,
 * so the other ranks are not left waiting. */
static void finish_at_exit(void) {
    if (!S.mpi) return;
    S.exiting = 1;
    char why[512];
    snprintf(why, sizeof why, "%s", qvl_error()[0] ? qvl_error() : "stopped");
    if (S.stage < 1) {
        char msg[600];
        snprintf(msg, sizeof msg, "!%s", why);
        check_ranks(msg);
    }
    if (S.stage < 2) {
        int was_root = S.index == 0;
        if (gather_results(NULL, NULL, 0, why) && was_root) fprintf(stderr, "qvl: %s\n", qvl_error());
    }
    eval_mpi_end();
}

/* ---- the steps ---- */

int eval_scale_begin(const char *shard_arg, const char **device, int *threads) {
    int device_fixed = 0;
    if (*device && !strncmp(*device, "cuda:", 5)) {
        char *end;
        long k = strtol(*device + 5, &end, 10);
        if (end == *device + 5 || *end || k < 0) return usage_error("eval", "--device: '%s' is not cuda:K", *device);
        if (choose_gpu(k, 0)) return runtime_error();
        *device = "cuda";
        device_fixed = 1;
    }
    if (shard_arg) {
        if (qvl_shard_parse(shard_arg, "--shard", &S.index, &S.count)) {
            fprintf(stderr, "qvl: eval: %s\n", qvl_error());
            return 2;
        }
        S.active = 1;
    }
    if (!eval_mpi_launched()) return 0;
    if (shard_arg) return usage_error("eval", "--shard: not under mpirun (each rank takes the share of its rank)");
    int rank, size;
    if (eval_mpi_start(&rank, &size, &S.local_rank, &S.local_size)) return runtime_error();
    S.mpi = S.active = 1;
    S.index = rank;
    S.count = size;
    atexit(finish_at_exit);
    if (!device_fixed && !(*device && !strcmp(*device, "cpu")) && choose_gpu(S.local_rank, 1)) return runtime_error();
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    if (*threads == 0 && cores > 0 && S.local_size > 1) *threads = cores / S.local_size > 0 ? (int)(cores / S.local_size) : 1;
    if (rank != 0) setenv("QVL_PROGRESS", "off", 1);   /* one progress display: rank 0's share */
    return 0;
}

/* Predicted cost of every selected sample in microseconds: image tokens from the image headers
 * (no decode) and exact prompt tokens, through the roofline estimate of eval/plan_data.h, at this
 * run's pixel and context settings, so every rank computes the same numbers. */
static const char *const cost_name = "predicted microseconds (plan_data: header image tokens, prompt tokens)";

static int sample_costs(const char *model, const qvl_config *cfg, const common_opts *c, const char *on_overflow,
                        int max_new_tokens, const qvl_dataset *ds, long first, long n, int64_t *cost) {
    qvl_tokenizer *tok = qvl_tokenizer_load_cached(model, cli_tokenizer_cache_dir());
    if (!tok) return -1;
    qvl_data_plan dp;
    int rc = qvl_data_plan_probe(ds, first, n, tok, &dp);
    qvl_tokenizer_free(tok);
    if (rc) return -1;
    qvl_image_params p = qvl_config_image_params(cfg);
    rc = qvl_image_params_set_pixels(&p, c->min_pixels, c->max_pixels, c->max_image_tokens);
    if (!rc)
        rc = qvl_data_plan_settle(&dp, cfg, &p, common_max_model_len(c, cfg), !strcmp(on_overflow, "downscale"),
                                  max_new_tokens);
    for (long k = 0; !rc && k < n; k++) {
        int64_t us = (int64_t)llround(dp.samples[k].cost * 1e6);
        cost[k] = dp.samples[k].status == QVL_PLAN_OK && us > 0 ? us : 1;   /* a failing sample costs ~nothing */
    }
    qvl_data_plan_free(&dp);
    return rc;
}

int eval_scale_select(const char *model, const qvl_config *cfg, const common_opts *c, const char *on_overflow,
                      int max_new_tokens, const qvl_dataset *ds, long first, const qvl_sample **sel, long *n) {
    if (!S.active) return 0;
    long total = *n;
    int64_t *cost = calloc((size_t)total + 1, sizeof *cost);
    int *owner = malloc(((size_t)total + 1) * sizeof *owner);
    S.share = malloc(((size_t)total + 1) * sizeof *S.share);
    if (!cost || !owner || !S.share) {
        free(cost);
        free(owner);
        return qvl_errorf("%s: out of memory for %ld samples", ds->source, total);
    }
    if (sample_costs(model, cfg, c, on_overflow, max_new_tokens, ds, first, total, cost)) {
        free(cost);
        free(owner);
        return -1;
    }
    uint64_t fp = qvl_shard_partition(cost, total, S.count, owner);
    long mine = 0;
    int64_t my_cost = 0, all_cost = 0;
    for (long k = 0; k < total; k++) {
        all_cost += cost[k];
        if (owner[k] != S.index) continue;
        S.share[mine++] = (*sel)[k];   /* borrowed: ds owns the strings */
        my_cost += cost[k];
    }
    free(cost);
    free(owner);
    char hex[20];
    snprintf(hex, sizeof hex, "%016" PRIx64, fp);
    S.shard = cJSON_CreateObject();
    cJSON_AddNumberToObject(S.shard, "index", S.index);
    cJSON_AddNumberToObject(S.shard, "count", S.count);
    cJSON_AddNumberToObject(S.shard, "offset", (double)first);
    cJSON_AddNumberToObject(S.shard, "selected", (double)total);
    cJSON_AddNumberToObject(S.shard, "data_samples", (double)ds->n_samples);
    cJSON_AddStringToObject(S.shard, "cost", cost_name);
    cJSON_AddStringToObject(S.shard, "fingerprint", hex);
    fprintf(stderr, "qvl eval: %s %d of %d: %ld of %ld samples, %.1f%% of the predicted cost%s%s\n",
            S.mpi ? "rank" : "shard", S.index, S.count, mine, total, all_cost ? 100.0 * (double)my_cost / (double)all_cost : 0.0,
            S.gpu[0] ? ", GPU " : "", S.gpu);
    *sel = S.share;
    *n = mine;
    return 0;
}

int eval_scale_paths(char **out, char **summary, int out_given, int summary_given) {
    if (!S.active) return 0;
    if (S.mpi || !out_given) {
        char *p = qvl_shard_path(*out, S.index, S.count);
        if (!p) return qvl_errorf("%s: out of memory", *out);
        if (S.mpi) {
            S.merged_out = *out;
            S.merged_summary = *summary;
        } else {
            free(*out);
        }
        *out = p;
        if (S.mpi || !summary_given) {
            char *s = qvl_shard_summary_path(p);
            if (!s) return qvl_errorf("%s: out of memory", p);
            if (!S.mpi) free(*summary);
            *summary = s;
        }
    }
    S.out = *out;
    S.summary = *summary;
    return 0;
}

int eval_scale_settings(cJSON *settings) {
    if (!S.active) return 0;
    cJSON_AddItemToObject(settings, "shard", cJSON_Duplicate(S.shard, 1));
    if (!S.mpi) return 0;
    /* What must agree: the settings with this rank's own index left out. */
    cJSON *cmp = cJSON_Duplicate(settings, 1);
    cJSON_DeleteItemFromObjectCaseSensitive(cJSON_GetObjectItemCaseSensitive(cmp, "shard"), "index");
    char *text = cJSON_PrintUnformatted(cmp);
    cJSON_Delete(cmp);
    if (!text) abort();   /* the other ranks are about to be in the collective */
    int rc = check_ranks(text);
    cJSON_free(text);
    return rc;
}

int eval_scale_quiet(void) { return S.mpi; }

void eval_scale_annotate(cJSON *summary, const qvl_report_input *in) {
    if (S.active) cJSON_AddItemToObject(summary, "shard_run", qvl_shard_run_facts(in));
}

int eval_scale_finish(const qvl_dataset *ds, const char *data, int rc) {
    if (!S.mpi || S.stage >= 2) return rc;
    if (gather_results(ds, data, rc == 0, rc ? qvl_error() : "")) {
        if (S.index == 0) fprintf(stderr, "qvl: %s\n", qvl_error());
        rc = 1;
    }
    eval_mpi_end();
    return rc;
}
