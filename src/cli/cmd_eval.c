/* qvl eval --model DIR --data PATH [...] (docs/cli.md): runs every selected OCRBench sample through
 * the engine one at a time, appends each result to the results JSONL as it finishes (the resume
 * log), shows progress on stderr, then prints the report (docs/report-format.md) and writes the summary
 * JSON atomically. A rerun with the same settings resumes: finished samples are kept. */
#include <cjson/cJSON.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend/cuda/cuda_quant.h"
#include "cli/commands.h"
#include "cli/eval_scale.h"
#include "cli/opts.h"
#include "engine/backend.h"
#include "eval/dataset.h"
#include "eval/plan_fit.h"
#include "eval/progress.h"
#include "eval/report.h"
#include "eval/results.h"
#include "eval/score.h"
#include "model/config.h"
#include "model/mem_plan.h"
#include "qvl.h"
#include "util/error.h"
#include "util/file.h"

typedef struct {
    const char *model, *data, *images, *out, *summary, *on_overflow, *rule, *shard;
    long limit, offset;
    int max_new_tokens, batch, overwrite, sample, top_k;
    double temperature, top_p, presence_penalty, repetition_penalty;
    common_opts c;
} eval_args;

/* The last path component without a trailing slash and, for files, without the extension. */
static char *base_name(const char *path, int strip_ext) {
    char *s = strdup(path);
    if (!s) return NULL;
    size_t n = strlen(s);
    while (n > 1 && s[n - 1] == '/') s[--n] = 0;
    const char *b = strrchr(s, '/');
    char *out = strdup(b ? b + 1 : s);
    free(s);
    if (!out) return NULL;
    char *dot = strrchr(out, '.');
    if (strip_ext && dot && dot != out) *dot = 0;
    return out;
}

/* The settings that decide the results: a resumed log must have been made with the same ones. */
static cJSON *run_settings(const eval_args *a, const qvl_config *cfg, const qvl_dataset *ds) {
    cJSON *s = cJSON_CreateObject();
    cJSON_AddStringToObject(s, "model", a->model);
    cJSON_AddStringToObject(s, "data", a->data);
    cJSON_AddStringToObject(s, "format", qvl_data_format_name(ds->format));
    if (a->images) cJSON_AddStringToObject(s, "images", a->images);
    cJSON_AddStringToObject(s, "requested_device", a->c.device ? a->c.device : "auto");
    cJSON_AddStringToObject(s, "dtype", cfg->dtype);
    if (cfg->quant_method[0]) cJSON_AddStringToObject(s, "quantization", cfg->quant_method);
    else cJSON_AddNullToObject(s, "quantization");
    cJSON_AddNumberToObject(s, "max_model_len", (double)common_max_model_len(&a->c, cfg));   /* the value used */
    long min_px = a->c.min_pixels > 0 ? a->c.min_pixels : cfg->preproc.min_pixels;
    cJSON_AddNumberToObject(s, "min_pixels", (double)min_px);
    cJSON_AddNumberToObject(s, "max_pixels", (double)common_max_pixels(&a->c, cfg));
    cJSON_AddNumberToObject(s, "max_new_tokens", a->max_new_tokens);
    cJSON_AddStringToObject(s, "on_overflow", a->on_overflow);
    /* The KV element type decides the numbers too. Recorded when it is fp8 only, so that result files
     * written before the option existed (bf16 by construction) still resume; the report says it always. */
    if (a->c.kv_dtype && !strcmp(a->c.kv_dtype, "fp8")) cJSON_AddStringToObject(s, "kv_dtype", "fp8");
    if (a->sample) {
        cJSON *g = cJSON_AddObjectToObject(s, "sampling");
        /* The checkpoint's generation_config values unless overridden (docs/cli.md). */
        cJSON_AddNumberToObject(g, "temperature", !isnan(a->temperature) ? a->temperature : cfg->gen.temperature);
        cJSON_AddNumberToObject(g, "top_p", !isnan(a->top_p) ? a->top_p : cfg->gen.top_p);
        cJSON_AddNumberToObject(g, "top_k", a->top_k >= 0 ? a->top_k : cfg->gen.top_k);
        cJSON_AddNumberToObject(g, "presence_penalty",
                                !isnan(a->presence_penalty) ? a->presence_penalty : cfg->gen.presence_penalty);
        cJSON_AddNumberToObject(g, "repetition_penalty",
                                !isnan(a->repetition_penalty) ? a->repetition_penalty : cfg->gen.repetition_penalty);
        cJSON_AddNumberToObject(g, "seed", (double)a->c.seed);
    } else {
        cJSON_AddStringToObject(s, "sampling", "greedy");
    }
    cJSON_AddStringToObject(s, "prompt", "question verbatim after the image, checkpoint chat template");
    cJSON_AddStringToObject(s, "score_rule", a->rule);
    return s;
}

/* qvl's GPU memory plan as a JSON object of MiB figures (NULL if it cannot be computed), and where
 * it comes from: the engine's own plan on the GPU path (context measured as the peak is), else the
 * plan `qvl mem` would print for these settings from the config (context estimated). */
static cJSON *memory_plan(const qvl_fit *fit, const qvl_memory_info *mi, double *total, char *note, size_t note_len) {
    if (mi->has_plan) {
        *total = mi->plan_total;
        int n = snprintf(note, note_len, "the engine's plan at open, CUDA context measured by %s; arena %.2f MiB",
                         mi->plan_context_measure, mi->arena_mib);
        if (strncmp(mi->peak_measure, "nvml", 4) && mi->note[0] && n > 0 && (size_t)n < note_len)
            snprintf(note + n, note_len - (size_t)n, "; %s", mi->note);   /* why NVML was not used */
        return qvl_report_plan_object(mi);
    }
    const qvl_mem_plan p = fit->plan;   /* sized from the data (eval/plan_fit.h) */
    qvl_memory_info m = {.has_plan = 1, .plan_cuda_context = p.cuda_context, .plan_weights = p.weights,
                         .plan_kv_cache = p.kv_cache, .plan_vision_activations = p.vision_activations,
                         .plan_workspace = p.workspace, .plan_total = p.total};
    *total = p.total;
    snprintf(note, note_len, "for this data at these settings (CUDA context estimated), as `qvl mem --data` prints it");
    return qvl_report_plan_object(&m);
}

static qvl_gen_opts gen_opts(const eval_args *a) {
    qvl_gen_opts g = qvl_gen_opts_default();
    g.max_new_tokens = a->max_new_tokens;
    g.sample = a->sample;
    if (!isnan(a->temperature)) g.temperature = a->temperature;
    if (!isnan(a->top_p)) g.top_p = a->top_p;
    if (a->top_k >= 0) g.top_k = a->top_k;
    if (!isnan(a->presence_penalty)) g.presence_penalty = a->presence_penalty;
    if (!isnan(a->repetition_penalty)) g.repetition_penalty = a->repetition_penalty;
    g.seed = (uint64_t)a->c.seed;
    g.on_overflow_downscale = !strcmp(a->on_overflow, "downscale");
    return g;
}

/* The record of one sample, before timing: fields from the data. Borrowed strings. */
static qvl_eval_record base_record(const qvl_sample *s) {
    qvl_eval_record r = {0};
    r.index = s->index;
    r.type = s->type;
    r.dataset = s->dataset;
    r.question = s->question;
    r.answers = s->answers;
    r.n_answers = s->n_answers;
    r.prediction = "";
    return r;
}

/* The request of one sample (name: room for the image's name in errors). */
static qvl_request sample_request(const qvl_sample *s, char *name, size_t name_len) {
    qvl_request req = {.image_path = s->image_path, .image_data = s->image_data, .image_size = s->image_size,
                       .prompt = s->question};
    snprintf(name, name_len, "sample %ld image", s->index);
    req.image_name = name;
    return req;
}

/* The record of a finished request; fills rec (prediction borrowed from ev->result until
 * qvl_result_free, reason from ev->error). Returns 0, or -1 for a failure that must stop the run
 * (the sample is then not recorded, so a rerun runs it again). */
static int sample_record(const qvl_sample *s, qvl_event *ev, qvl_score_rule rule, qvl_eval_record *rec) {
    *rec = base_record(s);
    if (ev->status) {
        /* Running out of memory is the machine's problem, not the sample's: stop, keep it pending. */
        if (ev->code == QVL_ERR_NO_MEMORY) return -1;
        rec->skipped = 1;
        rec->reason = ev->error;
        return 0;
    }
    const qvl_result *res = &ev->result;
    /* The request's own time to its last token (docs/report-format.md): its total less the time it
     * waited in the queue, which only reflects how far ahead of the engine qvl submits. */
    rec->latency_s = res->total_s - res->queue_s;
    rec->ttft_s = res->ttft_s - res->queue_s;
    rec->prediction = res->text ? res->text : "";
    rec->prompt_tokens = res->prompt_tokens;
    rec->image_tokens = res->image_tokens;
    rec->generated_tokens = res->n_tokens;
    rec->correct = qvl_ocrbench_match_rule(rec->prediction, (const char *const *)s->answers, s->n_answers,
                                           s->type, rule);
    return 0;
}

static int parse_args(int argc, char **argv, eval_args *a) {
    memset(a, 0, sizeof *a);
    a->limit = LONG_MIN;   /* not given */
    a->on_overflow = "skip";
    a->rule = "official";
    a->max_new_tokens = 128;
    a->batch = 0;   /* from the memory plan */
    a->top_k = -1;
    a->temperature = a->top_p = a->presence_penalty = a->repetition_penalty = NAN;
    common_opts c0 = COMMON_OPTS_INIT;
    a->c = c0;
    cli_opt opts[] = {
        {"model", OPT_STR, &a->model, "DIR", "checkpoint folder"},
        {"data", OPT_STR, &a->data, "PATH", "OCRBench.json, VLMEvalKit .tsv, or .parquet file/folder"},
        {"images", OPT_STR, &a->images, "DIR", "image folder for OCRBench.json (default: its folder)"},
        {"out", OPT_STR, &a->out, "RUN.jsonl", "results log (default ./qvl-<model>-<data>.jsonl)"},
        {"summary", OPT_STR, &a->summary, "RUN.json", "summary JSON (default: --out with .json)"},
        {"limit", OPT_LONG, &a->limit, "N", "evaluate at most N samples"},
        {"offset", OPT_LONG, &a->offset, "K", "skip the first K samples"},
        {"on-overflow", OPT_STR, &a->on_overflow, "skip|downscale", "a prompt over max-model-len (default skip)"},
        {"max-new-tokens", OPT_INT, &a->max_new_tokens, "N", "generated tokens per sample (default 128)"},
        {"batch", OPT_INT, &a->batch, "N", "samples in flight at most (default: as many as the memory plan fits)"},
        {"overwrite", OPT_FLAG, &a->overwrite, NULL, "start afresh instead of resuming --out"},
        {"shard", OPT_STR, &a->shard, "i/N", "run the i-th of N shares (0-based) into its own results (qvl merge)"},
        {"rule", OPT_STR, &a->rule, "official|lmms-eval", "scoring rule (default official)"},
        {"sample", OPT_FLAG, &a->sample, NULL, "sample with generation_config.json values (default greedy)"},
        {"temperature", OPT_DOUBLE, &a->temperature, "T", "sampling temperature (with --sample)"},
        {"top-p", OPT_DOUBLE, &a->top_p, "P", "nucleus sampling (with --sample)"},
        {"top-k", OPT_INT, &a->top_k, "K", "top-k sampling (with --sample)"},
        {"presence-penalty", OPT_DOUBLE, &a->presence_penalty, "X", "presence penalty"},
        {"repetition-penalty", OPT_DOUBLE, &a->repetition_penalty, "X", "repetition penalty"},
        COMMON_OPT_ROWS(a->c),
    };
    int rc = opts_parse(argc, argv, opts, (int)(sizeof opts / sizeof opts[0]),
                        "qvl eval --model DIR --data PATH [--out RUN.jsonl] [--summary RUN.json] [--limit N] "
                        "[--offset K] [--on-overflow skip|downscale] [--max-new-tokens N] [--batch N] [--overwrite] "
                        "[common options]",
                        "Evaluates a model on OCRBench with the official scoring rule. Each result is appended to "
                        "--out as it finishes; rerunning the same command resumes where it stopped.",
                        NULL, 0, NULL);
    if (rc) return rc == 1 ? 1 : 2;
    if (!a->model) return usage_error("eval", "--model is required");
    if (!a->data) return usage_error("eval", "--data is required");
    if (a->batch < 0) return usage_error("eval", "--batch %d: must be at least 1", a->batch);
    if (strcmp(a->on_overflow, "skip") && strcmp(a->on_overflow, "downscale"))
        return usage_error("eval", "--on-overflow: '%s' is not skip or downscale", a->on_overflow);
    if (strcmp(a->rule, "official") && strcmp(a->rule, "lmms-eval"))
        return usage_error("eval", "--rule: '%s' is not official or lmms-eval", a->rule);
    if (a->c.device && strcmp(a->c.device, "cpu") && strcmp(a->c.device, "cuda") && strncmp(a->c.device, "cuda:", 5))
        return usage_error("eval", "--device: '%s' is not cpu, cuda or cuda:K", a->c.device);
    if (a->max_new_tokens < 1) return usage_error("eval", "--max-new-tokens %d: must be at least 1", a->max_new_tokens);
    if (a->offset < 0) return usage_error("eval", "--offset %ld: must not be negative", a->offset);
    if (a->limit != LONG_MIN && a->limit < 1) return usage_error("eval", "--limit %ld: must be positive", a->limit);
    return common_opts_check("eval", &a->c);
}

typedef struct {
    qvl_dataset ds;
    qvl_data_plan dp;
    qvl_results res;
    cJSON *settings;
    char *out, *summary;
    qvl_engine *engine;
} eval_state;

static void state_free(eval_state *st) {
    if (st->engine) qvl_engine_close(st->engine);
    qvl_results_close(&st->res);
    qvl_data_plan_free(&st->dp);
    qvl_dataset_free(&st->ds);
    cJSON_Delete(st->settings);
    free(st->out);
    free(st->summary);
}

/* Where the engine's time went (qvl_engine_stats): one line on stderr and "engine_time_s" in the
 * summary, so that a slow run says whether images, vision, prompts or decoding took it. */
static void engine_time(qvl_engine *e, cJSON *summary) {
    qvl_engine_stats s;
    qvl_engine_stats_get(e, &s);
    long long steps = s.prefill_steps + s.decode_steps;
    double rows = steps > 0 ? (double)s.step_rows / (double)steps : 0;
    if (!eval_scale_quiet())
        fprintf(stderr, "qvl eval: engine time: vision %.2f s (%lld passes), prompt steps %.2f s (%lld), decode-only "
                "steps %.2f s (%lld), %.1f rows per step, waiting for images %.2f s\n", s.vision_s, s.vision_passes,
                s.prefill_steps_s, s.prefill_steps, s.decode_steps_s, s.decode_steps, rows, s.wait_s);
    cJSON *t = cJSON_AddObjectToObject(summary, "engine_time_s");
    if (!t) return;
    cJSON_AddNumberToObject(t, "vision", s.vision_s);
    cJSON_AddNumberToObject(t, "prompt_steps", s.prefill_steps_s);
    cJSON_AddNumberToObject(t, "decode_only_steps", s.decode_steps_s);
    cJSON_AddNumberToObject(t, "waiting_for_images", s.wait_s);
    cJSON_AddNumberToObject(t, "vision_passes", (double)s.vision_passes);
    cJSON_AddNumberToObject(t, "prompt_step_count", (double)s.prefill_steps);
    cJSON_AddNumberToObject(t, "decode_only_step_count", (double)s.decode_steps);
    cJSON_AddNumberToObject(t, "rows_per_step", rows);
}

/* QVL_PROGRESS=tty|plain|off overrides the display's detection (-1: detect; MPI ranks other than 0
 * set off). */
static int progress_mode_from_env(void) {
    const char *e = getenv("QVL_PROGRESS");
    if (e && !strcmp(e, "tty")) return QVL_PROGRESS_TTY;
    if (e && !strcmp(e, "plain")) return QVL_PROGRESS_PLAIN;
    if (e && !strcmp(e, "off")) return QVL_PROGRESS_OFF;
    return -1;
}

/* Whether the engine will open on a GPU (the data plan's batch and KV pool are then its limits):
 * --device cuda[:K], or auto with a usable CUDA device in this build. */
static int runs_on_gpu(const char *device) {
    if (device && !strcmp(device, "cpu")) return 0;
    if (device) return 1;
    const qvl_backend_ops *cuda = qvl_backend_find("cuda");
    int n = cuda ? cuda->devices() : 0;
    qvl_error_clear();
    return n > 0;
}

int cmd_eval(int argc, char **argv) {
    eval_args a;
    int rc = parse_args(argc, argv, &a);
    if (rc) return rc == 1 ? 0 : rc;
    if ((rc = eval_scale_begin(a.shard, &a.c.device, &a.c.threads))) return rc;   /* --shard, mpirun */
    eval_state st;
    memset(&st, 0, sizeof st);
    st.res.fd = -1;
    qvl_config cfg;
    if (qvl_config_load(a.model, &cfg)) return runtime_error();
    if (qvl_dataset_load(a.data, a.images, 1, &st.ds)) return runtime_error();
    if (a.offset >= st.ds.n_samples) {
        qvl_errorf("%s: --offset %ld is past its %ld samples", a.data, a.offset, st.ds.n_samples);
        state_free(&st);
        return runtime_error();
    }
    long first = a.offset, n = st.ds.n_samples - a.offset;
    if (a.limit > 0 && a.limit < n) n = a.limit;
    const qvl_sample *sel = st.ds.samples + first;

    if (a.out) {
        st.out = strdup(a.out);
    } else {
        char *m = base_name(a.model, 0), *d = base_name(a.data, 1);
        size_t len = (m ? strlen(m) : 0) + (d ? strlen(d) : 0) + 32;
        if (m && d && (st.out = malloc(len))) snprintf(st.out, len, "./qvl-%s-%s.jsonl", m, d);
        free(m);
        free(d);
    }
    if (!st.out) {
        qvl_errorf("%s: out of memory", a.out ? a.out : "--out");
        state_free(&st);
        return runtime_error();
    }
    if (a.summary) {
        st.summary = strdup(a.summary);
    } else {
        size_t len = strlen(st.out);
        st.summary = malloc(len + 8);
        if (st.summary) {
            memcpy(st.summary, st.out, len + 1);
            if (len > 6 && !strcmp(st.summary + len - 6, ".jsonl")) st.summary[len - 1] = 0;   /* .jsonl -> .json */
            else strcat(st.summary, ".json");
        }
    }
    if (!st.summary) {
        qvl_errorf("%s: out of memory", st.out);
        state_free(&st);
        return runtime_error();
    }
    /* The memory plan from the data: the context and the vision activations for the largest sample
     * of this selection plus the answer budget, the KV pool and the batch, auto-fitted to --gpu-mem
     * (eval/plan_fit.h). */
    qvl_fit_request frq = qvl_fit_request_default();
    frq.max_model_len = a.c.max_model_len, frq.min_pixels = a.c.min_pixels, frq.max_pixels = a.c.max_pixels;
    frq.max_image_tokens = a.c.max_image_tokens, frq.gpu_mem_mib = a.c.gpu_mem_mib;
    frq.auto_fit = !(a.c.device && !strcmp(a.c.device, "cpu"));
    frq.max_new_tokens = a.max_new_tokens, frq.downscale = !strcmp(a.on_overflow, "downscale");
    frq.kv_dtype = a.c.kv_dtype && !strcmp(a.c.kv_dtype, "fp8") ? QVL_PLAN_KV_FP8 : QVL_PLAN_KV_BF16;
    frq.batch = a.batch;
    frq.tokenizer_cache_dir = cli_tokenizer_cache_dir();
    if (cfg.quant.method) { /* packed Linears as the GPU keeps them (the default counts every weight as BF16) */
        qvl_safetensors *wst = qvl_st_open(a.model);
        if (wst) frq.weight_bytes = qvl_cuda_weight_bytes(&cfg, wst);
        qvl_st_close(wst);
        qvl_error_clear();
    }
    qvl_fit fit;
    if (qvl_fit_dataset(&cfg, a.model, &st.ds, first, n, &frq, &st.dp, &fit)) {
        fprintf(stderr, "qvl: %s\n", qvl_last_error());
        state_free(&st);
        return 1;
    }
    fprintf(stderr, "qvl eval: memory plan %.0f MiB: %s\n", fit.plan.total, fit.sized_for);
    st.settings = run_settings(&a, &cfg, &st.ds);
    if (fit.auto_image_tokens > 0) {   /* the cap decides the results: a resumed log must share it */
        cJSON_ReplaceItemInObject(st.settings, "min_pixels", cJSON_CreateNumber((double)fit.params.min_pixels));
        cJSON_ReplaceItemInObject(st.settings, "max_pixels", cJSON_CreateNumber((double)fit.params.max_pixels));
        cJSON_AddNumberToObject(st.settings, "auto_fit_max_image_tokens", (double)fit.auto_image_tokens);
    }
    /* --shard / mpirun: this process's share (the plan above is the whole selection's, as on every rank). */
    if (eval_scale_select(a.model, &cfg, &a.c, a.on_overflow, a.max_new_tokens, &st.ds, first, &sel, &n) ||
        eval_scale_paths(&st.out, &st.summary, a.out != NULL, a.summary != NULL) || eval_scale_settings(st.settings)) {
        state_free(&st);
        return runtime_error();
    }
    if (qvl_results_open(&st.res, st.out, st.settings, a.overwrite)) {
        state_free(&st);
        return runtime_error();
    }

    /* What the log already holds for this selection. Samples without a readable key (index -1)
     * are never logged: they are recounted as skipped on every run. */
    long done = 0, done_correct = 0, pending = 0;
    for (long i = 0; i < n; i++) {
        const qvl_eval_record *r = sel[i].index >= 0 ? qvl_results_find(&st.res, sel[i].index) : NULL;
        if (r) {
            done++;
            done_correct += r->correct && !r->skipped;
        } else if (!sel[i].error) {
            pending++;
        }
    }
    long resumed = done;

    double load_s = -1, warmup_s = -1;
    if (pending > 0) {
        double t0 = qvl_now_s();
        qvl_engine_opts eo = common_engine_opts(&a.c, a.model);
        qvl_fit_engine_opts(&fit, &eo);   /* the batch, the KV pool and the pass sizes too */
        if (!runs_on_gpu(a.c.device)) {   /* no device plan: the CPU backend's own batch unless --batch */
            eo.max_batch = a.batch;
            eo.kv_blocks = eo.token_budget = 0;
            eo.vision_tokens = 0;
        }
        st.engine = qvl_engine_open(&eo);
        if (!st.engine) {
            state_free(&st);
            fprintf(stderr, "qvl: %s\n", qvl_last_error());
            return 1;
        }
        load_s = qvl_now_s() - t0;
        /* Warm-up (first-call allocations, kernel loading) stays out of Total Time. */
        qvl_request wreq = {.prompt = "Hi"};
        qvl_gen_opts wg = qvl_gen_opts_default();
        wg.max_new_tokens = 1;
        qvl_result wres;
        t0 = qvl_now_s();
        if (qvl_generate(st.engine, &wreq, &wg, &wres) != 0) {
            fprintf(stderr, "qvl: warm-up: %s\n", qvl_last_error());
            state_free(&st);
            return 1;
        }
        qvl_result_free(&wres);
        warmup_s = qvl_now_s() - t0;
    }

    qvl_score_rule rule = !strcmp(a.rule, "lmms-eval") ? QVL_SCORE_LMMS_EVAL : QVL_SCORE_OFFICIAL;
    qvl_gen_opts g = gen_opts(&a);
    qvl_progress prog;
    qvl_progress_start(&prog, stderr, progress_mode_from_env(), n, done, done_correct);
    /* Unlogged skips (index -1) are built here and kept until the report is printed. */
    qvl_eval_record *unlogged = calloc((size_t)n + 1, sizeof *unlogged);
    const qvl_eval_record **recs = calloc((size_t)n + 1, sizeof *recs);
    if (!unlogged || !recs) {
        free(unlogged);
        free(recs);
        qvl_errorf("%s: out of memory for %ld samples", a.data, n);
        state_free(&st);
        return runtime_error();
    }
    /* Many samples in flight: keep the engine's queue a little ahead of its sequences (so that its
     * workers prepare images while the model runs), record each sample as it finishes. */
    int max_batch = a.batch;
    if (st.engine) {
        qvl_engine_stats es;
        qvl_engine_stats_get(st.engine, &es);
        max_batch = es.max_batch;
    }
    int window = 2 * max_batch + 4;
    qvl_req_id *ids = malloc((size_t)window * sizeof *ids);
    long *which = malloc((size_t)window * sizeof *which);
    char (*names)[64] = malloc((size_t)window * sizeof *names);
    if (!ids || !which || !names) {
        free(ids), free(which), free(names);
        free(unlogged);
        free(recs);
        qvl_errorf("%s: out of memory", a.data);
        state_free(&st);
        return runtime_error();
    }
    int in_flight = 0;
    long next = 0;
    double t_prev_end = qvl_now_s();
    int failed = 0;
    while (!failed) {
        /* Submit (and record the unreadable ones at once) up to the window. */
        while (in_flight < window && next < n) {
            long i = next++;
            const qvl_sample *s = &sel[i];
            if (s->index >= 0 && qvl_results_find(&st.res, s->index)) continue;
            if (s->error) {   /* no request: skipped as unreadable */
                qvl_eval_record rec = base_record(s);
                rec.skipped = 1;
                rec.reason = s->error;
                double t_end = qvl_now_s();
                rec.wall_s = t_end - t_prev_end;
                t_prev_end = t_end;
                if (s->index < 0) {
                    unlogged[i] = rec;
                    unlogged[i].reason = strdup(s->error);
                } else if (qvl_results_append(&st.res, &rec)) {
                    failed = 2;
                    break;
                }
                qvl_progress_step(&prog, 0);
                continue;
            }
            qvl_request req = sample_request(s, names[in_flight], sizeof names[in_flight]);
            qvl_req_id id = qvl_submit(st.engine, &req, &g);
            if (id < 0) {
                fprintf(stderr, "%sqvl: sample %ld: %s (stopped; rerun the same command to resume)\n",
                        prog.mode == QVL_PROGRESS_TTY ? "\n" : "", s->index, qvl_last_error());
                failed = 1;
                break;
            }
            ids[in_flight] = id;
            which[in_flight++] = i;
        }
        if (failed || (!in_flight && next >= n)) break;
        if (qvl_step(st.engine) < 0 && qvl_last_error_code() != QVL_ERR_DEVICE) {
            fprintf(stderr, "%sqvl: %s (stopped; rerun the same command to resume)\n",
                    prog.mode == QVL_PROGRESS_TTY ? "\n" : "", qvl_last_error());
            failed = 1;
            break;
        }
        qvl_event ev;
        while (!failed && qvl_poll(st.engine, &ev)) {
            int k = 0;
            while (k < in_flight && ids[k] != ev.id) k++;
            if (k == in_flight) {   /* not one of ours (cannot happen) */
                qvl_result_free(&ev.result);
                continue;
            }
            long i = which[k];
            ids[k] = ids[in_flight - 1], which[k] = which[in_flight - 1];
            memcpy(names[k], names[in_flight - 1], sizeof names[k]);
            in_flight--;
            const qvl_sample *s = &sel[i];
            qvl_eval_record rec;
            if (sample_record(s, &ev, rule, &rec)) {
                fprintf(stderr, "%sqvl: sample %ld: %s (stopped; rerun the same command to resume)\n",
                        prog.mode == QVL_PROGRESS_TTY ? "\n" : "", s->index, ev.error);
                qvl_result_free(&ev.result);
                failed = 1;
                break;
            }
            rec.peak_memory_mib = qvl_engine_peak_memory_mib(st.engine);
            double t_end = qvl_now_s();
            rec.wall_s = t_end - t_prev_end;
            t_prev_end = t_end;
            int bad = 0;
            if (s->index < 0) {   /* unreachable: such samples are unreadable ones, never submitted */
                unlogged[i] = rec;
                unlogged[i].prediction = "";
                unlogged[i].reason = strdup(rec.reason ? rec.reason : "");
            } else if (qvl_results_append(&st.res, &rec)) {
                bad = 1;
            }
            qvl_result_free(&ev.result);
            if (bad) {
                failed = 2;
                break;
            }
            qvl_progress_step(&prog, rec.correct && !rec.skipped);
        }
    }
    free(ids), free(which), free(names);
    qvl_progress_finish(&prog);
    if (failed) {
        if (failed == 2) fprintf(stderr, "qvl: %s\n", qvl_last_error());
        for (long i = 0; i < n; i++) free(unlogged[i].reason);
        free(unlogged);
        free(recs);
        state_free(&st);
        return 1;
    }

    /* The report: every selected sample's record. */
    double total_time = 0, peak = st.engine ? qvl_engine_peak_memory_mib(st.engine) : 0;
    for (long i = 0; i < n; i++) {
        recs[i] = sel[i].index >= 0 ? qvl_results_find(&st.res, sel[i].index) : &unlogged[i];
        total_time += recs[i]->wall_s;
        if (recs[i]->peak_memory_mib > peak) peak = recs[i]->peak_memory_mib;
    }
    char date[32];
    time_t now = time(NULL);
    strftime(date, sizeof date, "%Y-%m-%d %H:%M:%S", localtime(&now));
    const char *device = st.engine ? qvl_engine_device_name(st.engine) : "(not opened: every sample was already done)";
    cJSON *report_settings = cJSON_Duplicate(st.settings, 1);
    if (!cJSON_GetObjectItemCaseSensitive(report_settings, "kv_dtype"))
        cJSON_AddStringToObject(report_settings, "kv_dtype", "bf16");
    if (max_batch > 0) cJSON_AddNumberToObject(report_settings, "batch", max_batch);   /* sequences in flight at most */
    else cJSON_AddNullToObject(report_settings, "batch");   /* nothing ran: every sample was already done */
    if (st.engine) {   /* the KV pool in force and the most of it in use at once (within the plan's pool) */
        qvl_engine_stats es;
        qvl_engine_stats_get(st.engine, &es);
        cJSON *kp = cJSON_AddObjectToObject(report_settings, "kv_pool");
        cJSON_AddNumberToObject(kp, "blocks", es.kv_blocks_total);
        cJSON_AddNumberToObject(kp, "block_tokens", es.kv_block_tokens);
        cJSON_AddNumberToObject(kp, "peak_blocks", es.kv_blocks_peak);
    }
    cJSON_AddStringToObject(report_settings, "qvl_version", QVL_VERSION);
    cJSON_AddStringToObject(report_settings, "results", st.out);
    cJSON_AddItemToObject(report_settings, "memory_plan", qvl_fit_json(&fit, &st.dp, &frq));
    double planned = -1;
    qvl_memory_info mi = {0};
    if (st.engine) qvl_engine_memory(st.engine, &mi);
    char plan_note[256];
    cJSON *plan = memory_plan(&fit, &mi, &planned, plan_note, sizeof plan_note);
    qvl_report_input in = {
        .model = a.model, .data = a.data, .date = date, .device = device,
        .device_is_cpu = st.engine ? strncmp(device, "cpu", 3) == 0 : (a.c.device && !strcmp(a.c.device, "cpu")),
        .settings = report_settings, .records = recs, .n_samples = n, .total_time_s = total_time,
        .load_s = load_s, .warmup_s = warmup_s, .resumed = resumed, .peak_memory_mib = peak,
        .planned_memory_mib = planned, .memory_plan_mib = plan,
        .memory_budget_mib = a.c.gpu_mem_mib > 0 ? (double)a.c.gpu_mem_mib : 0,
        .peak_measure = st.engine ? mi.peak_measure : NULL, .cuda_used_peak_mib = mi.cuda_used_peak_mib,
        .plan_note = plan ? plan_note : NULL,
    };
    char *text = eval_scale_quiet() ? NULL : qvl_report_text(&in);   /* mpirun: rank 0 prints the merged one */
    if (eval_scale_quiet()) {
    } else if (!text) {
        fprintf(stderr, "qvl: eval: out of memory building the report (results are in %s)\n", st.out);
        rc = 1;
    } else {
        fputs(text, stdout);
        fflush(stdout);
        free(text);
    }
    cJSON *summary = qvl_report_summary(&in);
    if (st.engine && summary) engine_time(st.engine, summary);
    eval_scale_annotate(summary, &in);
    if (qvl_report_write_json(st.summary, summary) == 0) {
        if (!eval_scale_quiet()) fprintf(stderr, "qvl eval: results in %s, summary in %s\n", st.out, st.summary);
    } else {
        rc = runtime_error();
    }
    rc = eval_scale_finish(&st.ds, a.data, rc);
    cJSON_Delete(summary);
    cJSON_Delete(report_settings);
    cJSON_Delete(plan);
    free(recs);
    for (long i = 0; i < n; i++) free(unlogged[i].reason);
    free(unlogged);
    state_free(&st);
    return rc;
}
