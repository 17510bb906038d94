/* qvl serve (docs/cli.md): an OpenAI-compatible HTTP server (src/serve/serve.h) over one engine.
 * The main thread blocks SIGINT/SIGTERM before any other thread starts (so that they all inherit
 * the mask), opens the engine, then waits for one of them with sigwait and shuts down in order:
 * new requests refused, requests in flight finished (up to --grace seconds) or cancelled, HTTP
 * threads stopped, engine closed. */
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "cli/opts.h"
#include "qvl.h"
#include "serve/serve.h"

/* The id clients name the model by: the last component of the model folder. */
static void model_id(const char *dir, char *out, size_t n) {
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof tmp, "%s", dir);
    size_t l = strlen(tmp);
    while (l > 1 && tmp[l - 1] == '/') tmp[--l] = 0;
    snprintf(out, n, "%s", basename(tmp));
}

int cmd_serve(int argc, char **argv) {
    const char *model = NULL, *host = "127.0.0.1", *name = NULL, *media_dir = NULL;
    int port = 8080, max_connections = 256, timeout_s = 30, max_images = 8, max_messages = 256, max_tokens = 512;
    int max_queue = 256, max_batch = 0;
    long max_body = 32L << 20, max_image_bytes = 20L << 20, max_image_pixels = 16L << 20;
    double grace_s = 10;
    common_opts c = COMMON_OPTS_INIT;
    cli_opt opts[] = {
        {"model", OPT_STR, &model, "DIR", "model folder (config.json, safetensors, tokenizer.json)"},
        {"host", OPT_STR, &host, "ADDR", "address to listen on (default 127.0.0.1; 0.0.0.0 for every interface)"},
        {"port", OPT_INT, &port, "N", "TCP port (default 8080; 0 = any free port, printed at start)"},
        {"served-model-name", OPT_STR, &name, "NAME", "model id in /v1/models and answers (default: folder name)"},
        {"max-tokens", OPT_INT, &max_tokens, "N", "tokens generated when a request sets no max_tokens (default 512)"},
        {"max-body", OPT_LONG, &max_body, "BYTES", "largest request body (default 33554432 = 32 MiB): 413 beyond"},
        {"max-images", OPT_INT, &max_images, "N", "images per request (default 8): 400 beyond"},
        {"max-image-bytes", OPT_LONG, &max_image_bytes, "BYTES",
         "encoded size of one image (default 20971520 = 20 MiB): 413 beyond"},
        {"max-image-pixels", OPT_LONG, &max_image_pixels, "N",
         "width*height one image's header declares (default 16777216), checked before decoding: 413 beyond"},
        {"max-messages", OPT_INT, &max_messages, "N", "messages per request (default 256)"},
        {"allowed-media-dir", OPT_STR, &media_dir, "DIR",
         "folder whose image files requests may name by path (default: none, data: URLs only)"},
        {"max-connections", OPT_INT, &max_connections, "N",
         "concurrent HTTP connections (default 256); each carries one request at a time"},
        {"max-queue", OPT_INT, &max_queue, "N",
         "requests waiting for the engine (default 256): 503 + Retry-After beyond"},
        {"batch", OPT_INT, &max_batch, "N", "sequences generated at once, as qvl eval --batch (default: from the memory plan)"},
        {"timeout", OPT_INT, &timeout_s, "S", "close a connection idle (or sending nothing) for S seconds (default 30)"},
        {"grace", OPT_DOUBLE, &grace_s, "S",
         "on SIGINT/SIGTERM, let requests in flight finish for S seconds, then cancel them (default 10)"},
        COMMON_OPT_ROWS(c),
    };
    int rc = opts_parse(argc, argv, opts, (int)(sizeof opts / sizeof opts[0]),
                        "qvl serve --model DIR [--host ADDR] [--port N] [limits] [options]",
                        "Serves the model over HTTP with OpenAI's chat completions API: POST\n"
                        "/v1/chat/completions (text and images as data: URLs, streaming with \"stream\": true),\n"
                        "GET /v1/models, GET /health (200 once the model is loaded), GET /metrics (Prometheus\n"
                        "text). A request without temperature/top_p/top_k samples with generation_config.json's\n"
                        "values; temperature 0 is greedy. SIGINT or SIGTERM stops the server cleanly (exit 0).\n"
                        "Prints \"qvl serve: listening on http://HOST:PORT\" on stderr once requests are accepted.",
                        NULL, 0, NULL);
    if (rc) return rc == 1 ? 0 : rc;
    const char *cmd = argv[0];
    if (!model) return usage_error(cmd, "--model DIR is required");
    if (port < 0 || port > 65535) return usage_error(cmd, "--port must be in [0, 65535]");
    if (max_tokens < 1) return usage_error(cmd, "--max-tokens must be at least 1");
    if (max_body < 1024) return usage_error(cmd, "--max-body must be at least 1024 bytes");
    if (max_images < 0) return usage_error(cmd, "--max-images must be >= 0");
    if (max_image_bytes < 1) return usage_error(cmd, "--max-image-bytes must be at least 1");
    if (max_image_pixels < 1) return usage_error(cmd, "--max-image-pixels must be at least 1");
    if (max_messages < 1) return usage_error(cmd, "--max-messages must be at least 1");
    if (max_connections < 1) return usage_error(cmd, "--max-connections must be at least 1");
    if (max_queue < 1) return usage_error(cmd, "--max-queue must be at least 1");
    if (max_batch < 0) return usage_error(cmd, "--batch must be >= 0");
    if (timeout_s < 1) return usage_error(cmd, "--timeout must be at least 1 second");
    if (!(grace_s >= 0)) return usage_error(cmd, "--grace must be >= 0");
    if ((rc = common_opts_check(cmd, &c))) return rc;
    if (c.device && strcmp(c.device, "cpu") && strcmp(c.device, "cuda"))
        return usage_error(cmd, "--device must be cpu or cuda, not '%s'", c.device);
    char media_real[PATH_MAX];
    if (media_dir && !realpath(media_dir, media_real)) {
        fprintf(stderr, "qvl: %s: %s\n", media_dir, strerror(errno));
        return 1;
    }
    char id[256];
    if (name) snprintf(id, sizeof id, "%s", name);
    else model_id(model, id, sizeof id);

    /* Every thread started from here on inherits this mask: only sigwait below sees the signals. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    /* A client that vanishes while an answer is written must not kill the server. */
    signal(SIGPIPE, SIG_IGN);

    serve_opts so = {
        .host = host,
        .port = port,
        .model_name = id,
        .max_body_bytes = max_body,
        .max_connections = max_connections,
        .timeout_s = timeout_s,
        .chat = {.max_images = max_images,
                 .max_messages = max_messages,
                 .default_max_tokens = max_tokens,
                 .default_seed = (uint64_t)c.seed,
                 .media = {.allowed_dir = media_dir ? media_real : NULL,
                           .max_bytes = max_image_bytes,
                           .max_pixels = max_image_pixels}},
    };
    serve_server *s = serve_start(&so);   /* listening now: /health says "loading" until attached */
    if (!s) return runtime_error();
    qvl_engine_opts eo = common_engine_opts(&c, model);
    eo.max_queue = max_queue;
    eo.max_batch = max_batch;
    qvl_engine *e = qvl_engine_open(&eo);
    if (!e) {
        rc = runtime_error();
        serve_stop(s);
        return rc;
    }
    serve_jobs *jobs = serve_jobs_start(e, serve_server_metrics(s));
    if (!jobs) {
        rc = runtime_error();
        serve_stop(s);
        qvl_engine_close(e);
        return rc;
    }
    serve_attach(s, e, jobs);
    fprintf(stderr, "qvl serve: %s on %s, listening on http://%s%s%s:%d\n", id, qvl_engine_device_name(e),
            strchr(host, ':') ? "[" : "", host, strchr(host, ':') ? "]" : "", serve_port(s));

    int sig = 0;
    while (sigwait(&sigs, &sig) != 0) {}
    fprintf(stderr, "qvl serve: %s: stopping (requests in flight get %.0f s)\n", sig == SIGINT ? "SIGINT" : "SIGTERM",
            grace_s);
    serve_drain(s);
    serve_jobs_shutdown(jobs, grace_s);
    serve_stop(s);
    serve_jobs_free(jobs);
    qvl_engine_close(e);
    fprintf(stderr, "qvl serve: stopped\n");
    return 0;
}
