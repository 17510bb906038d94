/* qvl compare RUN.json... [--svg OUT.svg] (docs/cli.md): a Markdown table of evaluation summaries,
 * one column per run (with a row for every setting that differs between them), and optionally a hand-written SVG bar chart of accuracy, throughput and peak
 * memory side by side. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "cli/opts.h"
#include "util/error.h"
#include "util/file.h"

enum { MAX_RUNS = 64 };

typedef struct {
    char *name;          /* column title: the file name without folder and .json */
    char *model, *quant, *device;
    double accuracy, latency, throughput, peak_mib;
    long total;
    cJSON *settings;     /* the summary's settings object (may be NULL) */
} run_row;

static const char *str_or(const cJSON *o, const char *key, const char *def) {
    const char *s = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, key));
    return s && s[0] ? s : def;
}

static double num_or(const cJSON *o, const char *key, double def) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(v) ? v->valuedouble : def;
}

static int load_run(const char *path, run_row *r) {
    size_t len;
    char *text = qvl_read_file(path, &len);
    if (!text) return -1;
    cJSON *j = cJSON_Parse(text);
    free(text);
    double total = num_or(j, "total_samples", -1);   /* range-checked: a double -> long cast out of range is UB */
    if (!cJSON_IsObject(j) || !(total >= 0 && total < 9e15) ||
        !cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(j, "accuracy"))) {
        cJSON_Delete(j);
        return qvl_errorf("%s: not a qvl eval summary (needs total_samples and accuracy)", path);
    }
    const char *base = strrchr(path, '/');
    r->name = strdup(base ? base + 1 : path);
    const cJSON *settings = cJSON_GetObjectItemCaseSensitive(j, "settings");
    r->model = strdup(str_or(j, "model", "-"));
    r->quant = strdup(str_or(settings, "quantization", str_or(settings, "dtype", "-")));
    r->device = strdup(str_or(j, "device", "-"));
    if (!r->name || !r->model || !r->quant || !r->device) {
        cJSON_Delete(j);
        free(r->name);
        free(r->model);
        free(r->quant);
        free(r->device);
        return qvl_errorf("%s: out of memory", path);
    }
    size_t n = strlen(r->name);
    if (n > 5 && !strcmp(r->name + n - 5, ".json")) r->name[n - 5] = 0;
    r->accuracy = num_or(j, "accuracy", 0);
    r->total = (long)total;
    r->latency = num_or(cJSON_GetObjectItemCaseSensitive(j, "latency_s"), "mean", 0);
    r->throughput = num_or(j, "samples_per_s", 0);
    r->peak_mib = num_or(cJSON_GetObjectItemCaseSensitive(j, "peak_memory_mib"), "used", 0);
    if (cJSON_IsObject(settings)) r->settings = cJSON_DetachItemFromObjectCaseSensitive(j, "settings");
    cJSON_Delete(j);
    return 0;
}

/* A Markdown table cell: '|' escaped, newlines flattened. */
static void md_cell(const char *s) {
    putchar(' ');
    for (; *s; s++) {
        if (*s == '|') fputs("\\|", stdout);
        else if (*s == '\n' || *s == '\r') putchar(' ');
        else putchar(*s);
    }
    fputs(" |", stdout);
}

static void md_row(const char *label, const run_row *runs, int n, int field) {
    printf("|");
    md_cell(label);
    for (int i = 0; i < n; i++) {
        char buf[64];
        const char *s = buf;
        const run_row *r = &runs[i];
        switch (field) {
        case 0: s = r->model; break;
        case 1: s = r->quant; break;
        case 2: snprintf(buf, sizeof buf, "%.2f%%", r->accuracy); break;
        case 3: snprintf(buf, sizeof buf, "%ld", r->total); break;
        case 4: snprintf(buf, sizeof buf, "%.4f", r->latency); break;
        case 5: snprintf(buf, sizeof buf, "%.2f", r->throughput); break;
        case 6: snprintf(buf, sizeof buf, "%.2f", r->peak_mib); break;
        default: s = r->device; break;
        }
        md_cell(s);
    }
    printf("\n");
}

/* A setting's value as table text: strings as they are, everything else as compact JSON; "-" when
 * the run has no such setting. */
static char *setting_text(const run_row *r, const char *key) {
    const cJSON *v = r->settings ? cJSON_GetObjectItemCaseSensitive(r->settings, key) : NULL;
    if (!v) return strdup("-");
    if (cJSON_IsString(v)) return strdup(v->valuestring);
    return cJSON_PrintUnformatted(v);
}

/* One row per setting whose value differs between the runs (max_new_tokens, pixels, batch,
 * sampling, ...), in the order the first run that has it lists them: runs that look alike in the
 * figures above may not have been made alike. Model, dtype and quantization have their own rows. */
static void md_setting_rows(const run_row *runs, int n) {
    for (int i = 0; i < n; i++) {
        const cJSON *it;
        cJSON_ArrayForEach(it, runs[i].settings) {
            const char *key = it->string;
            if (!strcmp(key, "model") || !strcmp(key, "quantization") || !strcmp(key, "dtype")) continue;
            int seen_before = 0;
            for (int k = 0; k < i && !seen_before; k++)
                seen_before = runs[k].settings && cJSON_GetObjectItemCaseSensitive(runs[k].settings, key);
            if (seen_before) continue;
            char *vals[MAX_RUNS];
            int differ = 0;
            for (int k = 0; k < n; k++) {
                vals[k] = setting_text(&runs[k], key);
                if (k && (!vals[k] || !vals[0] || strcmp(vals[k], vals[0]))) differ = 1;
            }
            if (differ) {
                printf("|");
                char label[256];
                snprintf(label, sizeof label, "setting: %s", key);
                md_cell(label);
                for (int k = 0; k < n; k++) md_cell(vals[k] ? vals[k] : "?");
                printf("\n");
            }
            for (int k = 0; k < n; k++) free(vals[k]);
        }
    }
}

/* XML text/attribute escaping. */
static void xml_text(FILE *f, const char *s) {
    for (; *s; s++) {
        switch (*s) {
        case '&': fputs("&amp;", f); break;
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '"': fputs("&quot;", f); break;
        case '\'': fputs("&apos;", f); break;
        default:
            if ((unsigned char)*s < 0x20 && *s != '\t') fputc(' ', f);   /* not allowed in XML 1.0 */
            else fputc(*s, f);
        }
    }
}

static const char *const palette[] = {"#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2",
                                      "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"};

/* Three panels (accuracy %, throughput samples/s, peak memory MB), one bar per run in each. */
static int write_svg(const char *path, const run_row *runs, int n) {
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) return qvl_errorf("%s: cannot write: %s", tmp, strerror(errno));
    const int panel_w = 300, panel_h = 300, top = 50, legend_h = 22 * n + 10;
    const int width = panel_w * 3 + 40, height = top + panel_h + 60 + legend_h;
    fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
               "font-family=\"sans-serif\" font-size=\"12\">\n", width, height, width, height);
    fprintf(f, "  <rect x=\"0\" y=\"0\" width=\"%d\" height=\"%d\" fill=\"white\"/>\n", width, height);
    fprintf(f, "  <text x=\"%d\" y=\"24\" text-anchor=\"middle\" font-size=\"16\">qvl compare: %d runs</text>\n",
            width / 2, n);
    static const char *titles[3] = {"Accuracy (%)", "Throughput (samples/s)", "Peak memory (MB)"};
    for (int p = 0; p < 3; p++) {
        double max = 0;
        for (int i = 0; i < n; i++) {
            double v = p == 0 ? runs[i].accuracy : p == 1 ? runs[i].throughput : runs[i].peak_mib;
            if (v > max) max = v;
        }
        if (p == 0) max = 100;
        if (max <= 0) max = 1;
        int x0 = 20 + p * panel_w + 20, plot_w = panel_w - 40, base = top + panel_h;
        fprintf(f, "  <g class=\"panel\">\n");
        fprintf(f, "    <text x=\"%d\" y=\"%d\" text-anchor=\"middle\" font-size=\"14\">%s</text>\n",
                x0 + plot_w / 2, top, titles[p]);
        fprintf(f, "    <line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"black\"/>\n", x0, base, x0 + plot_w, base);
        double slot = (double)plot_w / n, bar = slot * 0.7;
        for (int i = 0; i < n; i++) {
            double v = p == 0 ? runs[i].accuracy : p == 1 ? runs[i].throughput : runs[i].peak_mib;
            if (v < 0) v = 0;
            double h = v / max * (panel_h - 40);
            double x = x0 + slot * i + (slot - bar) / 2;
            fprintf(f, "    <rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"%s\"><title>", x,
                    base - h, bar, h, palette[i % 10]);
            xml_text(f, runs[i].name);
            fprintf(f, ": %.2f</title></rect>\n", v);
            fprintf(f, "    <text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%.2f</text>\n", x + bar / 2,
                    base - h - 4, v);
        }
        fprintf(f, "  </g>\n");
    }
    for (int i = 0; i < n; i++) {
        int y = top + panel_h + 40 + 22 * i;
        fprintf(f, "  <rect x=\"40\" y=\"%d\" width=\"14\" height=\"14\" fill=\"%s\"/>\n", y - 11, palette[i % 10]);
        fprintf(f, "  <text x=\"60\" y=\"%d\">", y);
        xml_text(f, runs[i].name);
        fputs(" (", f);
        xml_text(f, runs[i].model);
        fputs(", ", f);
        xml_text(f, runs[i].device);
        fputs(")</text>\n", f);
    }
    fprintf(f, "</svg>\n");
    int bad = ferror(f);   /* a failed fprintf is not always reported again by fclose */
    if ((fclose(f) != 0) | bad || rename(tmp, path) != 0) {
        remove(tmp);
        return qvl_errorf("%s: cannot write", path);
    }
    return 0;
}

int cmd_compare(int argc, char **argv) {
    const char *svg = NULL;
    cli_opt opts[] = {
        {"svg", OPT_STR, &svg, "OUT.svg", "also write a bar chart of accuracy, throughput and peak memory"},
    };
    const char *pos[MAX_RUNS];
    int n_pos = 0;
    int rc = opts_parse(argc, argv, opts, 1, "qvl compare RUN.json... [--svg OUT.svg]",
                        "Compares `qvl eval` summary files: prints a Markdown table with one column per run.",
                        pos, MAX_RUNS, &n_pos);
    if (rc) return rc == 1 ? 0 : rc;
    if (n_pos == 0) return usage_error("compare", "give at least one summary JSON (RUN.json)");
    run_row runs[MAX_RUNS];
    memset(runs, 0, sizeof runs);
    int n = 0;
    rc = 0;
    for (int i = 0; i < n_pos && rc == 0; i++) {
        if (load_run(pos[i], &runs[n])) rc = runtime_error();
        else n++;
    }
    if (rc == 0) {
        printf("| run |");
        for (int i = 0; i < n; i++) md_cell(runs[i].name);
        printf("\n|---|");
        for (int i = 0; i < n; i++) printf("---:|");
        printf("\n");
        static const char *labels[8] = {"model", "quantization", "accuracy", "total samples",
                                        "average latency (s/sample)", "throughput (samples/s)",
                                        "peak memory (MB)", "device"};
        for (int k = 0; k < 8; k++) md_row(labels[k], runs, n, k);
        md_setting_rows(runs, n);
        if (svg && write_svg(svg, runs, n)) rc = runtime_error();
    }
    for (int i = 0; i < n; i++) {
        free(runs[i].name);
        free(runs[i].model);
        free(runs[i].quant);
        free(runs[i].device);
        cJSON_Delete(runs[i].settings);
    }
    return rc;
}
