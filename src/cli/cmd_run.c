/* qvl run (docs/cli.md): one image (or none) and one prompt; streams the answer to stdout, or with
 * --json prints one JSON object at the end. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/commands.h"
#include "cli/opts.h"
#include "eval/report.h"
#include "qvl.h"

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void print_piece(const char *piece, void *user) {
    (void)user;
    fputs(piece, stdout);
    fflush(stdout);
}

/* Microsecond resolution keeps the JSON readable. */
static double usec(double s) { return round(s * 1e6) / 1e6; }

/* The JSON object of cli.md, exactly its keys (peak_memory_mib: the measured peak; the plan beside
 * it goes to stderr). load_s and total_s include loading the model. */
static int print_json(const qvl_result *r, double model_load_s, double total_s, double peak_mib) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "text", r->text);
    cJSON *ids = cJSON_AddArrayToObject(o, "token_ids");
    for (int i = 0; i < r->n_tokens; i++) cJSON_AddItemToArray(ids, cJSON_CreateNumber(r->token_ids[i]));
    cJSON_AddStringToObject(o, "finish_reason", r->finish_reason == QVL_FINISH_STOP ? "stop" : "length");
    cJSON_AddNumberToObject(o, "prompt_tokens", r->prompt_tokens);
    cJSON_AddNumberToObject(o, "image_tokens", r->image_tokens);
    cJSON *t = cJSON_AddObjectToObject(o, "timings");
    cJSON_AddNumberToObject(t, "load_s", usec(model_load_s + r->load_s));
    cJSON_AddNumberToObject(t, "preprocess_s", usec(r->preprocess_s));
    cJSON_AddNumberToObject(t, "vision_s", usec(r->vision_s));
    cJSON_AddNumberToObject(t, "prefill_s", usec(r->prefill_s));
    cJSON_AddNumberToObject(t, "decode_s", usec(r->decode_s));
    cJSON_AddNumberToObject(t, "total_s", usec(total_s));
    cJSON_AddNumberToObject(o, "peak_memory_mib", round(peak_mib * 10) / 10);
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (!s) {
        fprintf(stderr, "qvl: run: out of memory\n");
        return 1;
    }
    puts(s);
    free(s);
    return 0;
}

int cmd_run(int argc, char **argv) {
    const char *model = NULL, *image = NULL, *prompt = NULL;
    int max_new = 128, json = 0, sample = 0, top_k = -1;
    double temperature = NAN, top_p = NAN, presence = NAN, repetition = NAN;
    common_opts c = COMMON_OPTS_INIT;
    cli_opt opts[] = {
        {"model", OPT_STR, &model, "DIR", "model folder (config.json, safetensors, tokenizer.json)"},
        {"image", OPT_STR, &image, "FILE", "image file (JPEG, PNG, WebP, BMP, GIF); omit for a text-only prompt"},
        {"prompt", OPT_STR, &prompt, "TEXT", "the user message (after the image)"},
        {"max-new-tokens", OPT_INT, &max_new, "N", "stop after N generated tokens (default 128)"},
        {"json", OPT_FLAG, &json, NULL, "print one JSON object at the end instead of streaming"},
        {"sample", OPT_FLAG, &sample, NULL, "sample with generation_config.json's values (default: greedy)"},
        {"temperature", OPT_DOUBLE, &temperature, "T", "sampling temperature (with --sample)"},
        {"top-p", OPT_DOUBLE, &top_p, "P", "nucleus sampling mass (with --sample)"},
        {"top-k", OPT_INT, &top_k, "K", "sample among the K most likely tokens, 0 = all (with --sample)"},
        {"presence-penalty", OPT_DOUBLE, &presence, "X", "subtract X from tokens already generated"},
        {"repetition-penalty", OPT_DOUBLE, &repetition, "X", "divide (multiply if negative) logits of seen tokens by X"},
        COMMON_OPT_ROWS(c),
    };
    int rc = opts_parse(argc, argv, opts, (int)(sizeof opts / sizeof opts[0]),
                        "qvl run --model DIR [--image FILE] --prompt TEXT [--max-new-tokens N] [--json] [options]",
                        "Generates an answer to PROMPT about the image, streaming it to stdout (a summary line\n"
                        "goes to stderr, with the measured peak memory, which measure, and on the GPU the memory\n"
                        "plan beside it). Greedy unless --sample; generation stops at an eos id of\n"
                        "generation_config.json or after --max-new-tokens. With --json, prints one object:\n"
                        "{text, token_ids, finish_reason, prompt_tokens, image_tokens, timings, peak_memory_mib};\n"
                        "timings.load_s and total_s include loading the model. The context defaults to\n"
                        "min(max_position_embeddings, 32768) tokens.",
                        NULL, 0, NULL);
    if (rc) return rc == 1 ? 0 : rc;
    const char *cmd = argv[0];
    if (!model) return usage_error(cmd, "--model DIR is required");
    if (!prompt) return usage_error(cmd, "--prompt TEXT is required");
    if (max_new < 1) return usage_error(cmd, "--max-new-tokens must be at least 1");
    if (!sample && (!isnan(temperature) || !isnan(top_p) || top_k >= 0))
        return usage_error(cmd, "--temperature, --top-p and --top-k need --sample");
    if (!isnan(temperature) && temperature < 0) return usage_error(cmd, "--temperature must be >= 0");
    if (!isnan(top_p) && !(top_p > 0 && top_p <= 1)) return usage_error(cmd, "--top-p must be in (0, 1]");
    if (sample && top_k < -1) return usage_error(cmd, "--top-k must be >= 0");
    if (!isnan(repetition) && !(repetition > 0)) return usage_error(cmd, "--repetition-penalty must be > 0");
    if ((rc = common_opts_check(cmd, &c))) return rc;

    if (c.device && strcmp(c.device, "cpu") && strcmp(c.device, "cuda"))
        return usage_error(cmd, "--device must be cpu or cuda, not '%s'", c.device);
    qvl_engine_opts eo = common_engine_opts(&c, model);

    /* A missing image is reported before the (slow) model load. */
    if (image) {
        FILE *f = fopen(image, "rb");
        if (!f) {
            fprintf(stderr, "qvl: %s: %s\n", image, strerror(errno));
            return 1;
        }
        fclose(f);
    }

    double t0 = now_s();
    qvl_engine *e = qvl_engine_open(&eo);
    if (!e) return runtime_error();
    double model_load_s = now_s() - t0;

    qvl_request req = {.image_path = image, .prompt = prompt};
    qvl_gen_opts g = qvl_gen_opts_default();
    g.max_new_tokens = max_new;
    g.sample = sample;
    g.temperature = temperature;
    g.top_p = top_p;
    g.top_k = top_k;
    g.presence_penalty = presence;
    g.repetition_penalty = repetition;
    g.seed = (uint64_t)c.seed;
    if (!json) g.on_token = print_piece;
    qvl_result r;
    if (qvl_generate(e, &req, &g, &r)) {
        if (!json) fflush(stdout);
        qvl_engine_close(e);
        return runtime_error();
    }
    double total_s = now_s() - t0;
    qvl_memory_info mi;
    qvl_engine_memory(e, &mi);
    char mem[200];
    qvl_report_memory_line(mem, sizeof mem, &mi);
    if (json) {
        rc = print_json(&r, model_load_s, total_s, mi.peak_mib);
        fprintf(stderr, "[%s | %s]\n", qvl_engine_device_name(e), mem);   /* human text: stderr */
    } else {
        size_t n = strlen(r.text);
        if (n == 0 || r.text[n - 1] != '\n') putchar('\n');
        fflush(stdout);
        fprintf(stderr, "[%s | prompt %d tokens (%d image) | %d generated, %s | prefill %.2f s | %.1f tokens/s | "
                        "%s]\n",
                qvl_engine_device_name(e), r.prompt_tokens, r.image_tokens, r.n_tokens,
                r.finish_reason == QVL_FINISH_STOP ? "stop" : "length", r.prefill_s,
                r.decode_s > 0 ? (r.n_tokens - 1) / r.decode_s : 0.0, mem);
        rc = 0;
    }
    qvl_result_free(&r);
    qvl_engine_close(e);
    return rc;
}
