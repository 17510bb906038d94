/* qvl merge --data PATH RUN.jsonl... [--out RUN.jsonl] [--summary RUN.json] (docs/cli.md): combines
 * the results of `qvl eval --shard i/N` runs into the results, summary and report of one run. Rank 0
 * of `mpirun ... qvl eval` writes its outputs through merge_write_outputs too. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/commands.h"
#include "cli/merge.h"
#include "cli/opts.h"
#include "eval/dataset.h"
#include "eval/report.h"
#include "eval/shard.h"
#include "util/error.h"
#include "util/file.h"

int merge_write_outputs(const qvl_dataset *ds, const char *data, const qvl_shard_input *in, int n_in,
                        const char *label, const char *out, const char *summary) {
    qvl_merged m;
    if (qvl_shard_merge(ds, in, n_in, label, &m)) return -1;
    /* The settings of one run, as `qvl eval` would report them, plus how many shares ran. */
    if (cJSON_GetObjectItemCaseSensitive(m.report_settings, "results"))
        cJSON_ReplaceItemInObjectCaseSensitive(m.report_settings, "results", cJSON_CreateString(out));
    char date[32];
    time_t now = time(NULL);
    strftime(date, sizeof date, "%Y-%m-%d %H:%M:%S", localtime(&now));
    qvl_report_input rin;
    qvl_merged_report_input(&m, data, date, &rin);
    char *text = qvl_report_text(&rin), *shares = qvl_merged_shares_text(&m);
    cJSON *sum = qvl_report_summary(&rin);
    char key[32];
    snprintf(key, sizeof key, "per_%s", label);
    cJSON_AddItemToObject(sum, key, cJSON_Duplicate(m.shares, 1));
    int rc = 0;
    if (!text || !shares || !sum) rc = qvl_errorf("%s: out of memory building the report", out);
    if (!rc) rc = qvl_merged_write_results(&m, out);
    if (!rc) rc = qvl_report_write_json(summary, sum);
    if (!rc) {
        fputs(text, stdout);
        fputs(shares, stdout);
        fflush(stdout);
        fprintf(stderr, "qvl: %d %ss merged: results in %s, summary in %s\n", m.count, label, out, summary);
    }
    free(text);
    free(shares);
    cJSON_Delete(sum);
    qvl_merged_free(&m);
    return rc;
}

/* RUN.shard-i-of-N.jsonl -> RUN.jsonl (NULL when the name is not of that form). */
static char *merged_name(const char *shard) {
    const char *p = strstr(shard, ".shard-");
    int i, n, used = 0;
    if (!p || sscanf(p, ".shard-%d-of-%d.jsonl%n", &i, &n, &used) != 2 || p[used]) return NULL;
    size_t stem = (size_t)(p - shard);
    char *s = malloc(stem + 7);
    if (s) snprintf(s, stem + 7, "%.*s.jsonl", (int)stem, shard);
    return s;
}

int cmd_merge(int argc, char **argv) {
    const char *data = NULL, *images = NULL, *out = NULL, *summary = NULL;
    const char *files[4096];
    int n_files = 0;
    cli_opt opts[] = {
        {"data", OPT_STR, &data, "PATH", "the data the shards ran on (OCRBench.json, .tsv or .parquet)"},
        {"images", OPT_STR, &images, "DIR", "image folder for OCRBench.json (default: its folder)"},
        {"out", OPT_STR, &out, "RUN.jsonl", "merged results (default: the shards' name without .shard-i-of-N)"},
        {"summary", OPT_STR, &summary, "RUN.json", "merged summary JSON (default: --out with .json)"},
    };
    int rc = opts_parse(argc, argv, opts, (int)(sizeof opts / sizeof opts[0]),
                        "qvl merge --data PATH RUN.jsonl... [--out RUN.jsonl] [--summary RUN.json]",
                        "Combines the results files of `qvl eval --shard i/N` (every shard once) into the "
                        "results, summary and report of one run. Each shard's summary (its results path with "
                        ".json) adds its device, load time and memory when present. Shards with different "
                        "settings, a missing shard, and samples missing or in two shards are refused.",
                        files, (int)(sizeof files / sizeof files[0]), &n_files);
    if (rc) return rc == 1 ? 0 : 2;
    if (!data) return usage_error("merge", "--data is required");
    if (n_files < 1) return usage_error("merge", "give the shards' results files (RUN.shard-i-of-N.jsonl ...)");
    char *out_path = out ? strdup(out) : merged_name(files[0]);
    if (!out_path) return usage_error("merge", "--out is required (%s is not named RUN.shard-i-of-N.jsonl)", files[0]);
    char *sum_path = summary ? strdup(summary) : qvl_shard_summary_path(out_path);
    qvl_shard_input *in = calloc((size_t)n_files, sizeof *in);
    char **texts = calloc((size_t)n_files, sizeof *texts);
    cJSON **sums = calloc((size_t)n_files, sizeof *sums);
    qvl_dataset ds;
    memset(&ds, 0, sizeof ds);
    rc = 0;
    if (!sum_path || !in || !texts || !sums) rc = qvl_errorf("merge: out of memory");
    for (int k = 0; k < n_files && !rc; k++) {
        for (int j = 0; j < k && !rc; j++)
            if (!strcmp(files[j], files[k])) rc = qvl_errorf("%s: given twice", files[k]);
        size_t len = 0;
        if (!rc && !(texts[k] = qvl_read_file(files[k], &len))) rc = -1;
        if (rc) break;
        in[k].name = files[k];
        in[k].text = texts[k];
        in[k].len = len;
        char *sp = qvl_shard_summary_path(files[k]);
        char *st = sp ? qvl_read_file(sp, NULL) : NULL;
        sums[k] = st ? cJSON_Parse(st) : NULL;   /* optional: without it device and load time are unknown */
        in[k].summary = sums[k];
        free(st);
        free(sp);
        qvl_error_clear();
    }
    if (!rc) rc = qvl_dataset_load(data, images, 0, &ds);
    for (int k = 0; k < n_files && !rc; k++)   /* never overwrite an input */
        if (!strcmp(files[k], out_path) || !strcmp(files[k], sum_path))
            rc = qvl_errorf("%s: is one of the shards' results; choose another --out", files[k]);
    if (!rc) rc = merge_write_outputs(&ds, data, in, n_files, "shard", out_path, sum_path);
    if (rc) fprintf(stderr, "qvl: %s\n", qvl_error());
    for (int k = 0; texts && sums && k < n_files; k++) {
        free(texts[k]);
        cJSON_Delete(sums[k]);
    }
    free(texts);
    free(sums);
    free(in);
    free(out_path);
    free(sum_path);
    qvl_dataset_free(&ds);
    return rc ? 1 : 0;
}
