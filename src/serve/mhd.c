/* Loads libmicrohttpd with dlopen (see mhd.h for why). */
#include "serve/mhd.h"

#include <dlfcn.h>
#include <stdio.h>
#include <pthread.h>

#include "util/error.h"

serve_mhd_api serve_mhd;

static pthread_once_t once = PTHREAD_ONCE_INIT;
static char load_error[300];

/* The soname of the Debian package libmicrohttpd12 (ABI 12, every 0.9.x release). */
#define MHD_SONAME "libmicrohttpd.so.12"

static void load(void) {
    void *h = dlopen(MHD_SONAME, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        snprintf(load_error, sizeof load_error, "%s: cannot load the HTTP library (%s; Debian package libmicrohttpd12)",
                 MHD_SONAME, dlerror());
        return;
    }
    struct {
        void **slot;
        const char *name;
    } syms[] = {
        {(void **)&serve_mhd.start_daemon, "MHD_start_daemon"},
        {(void **)&serve_mhd.stop_daemon, "MHD_stop_daemon"},
        {(void **)&serve_mhd.quiesce_daemon, "MHD_quiesce_daemon"},
        {(void **)&serve_mhd.get_daemon_info, "MHD_get_daemon_info"},
        {(void **)&serve_mhd.get_connection_info, "MHD_get_connection_info"},
        {(void **)&serve_mhd.lookup_connection_value, "MHD_lookup_connection_value"},
        {(void **)&serve_mhd.create_response_from_buffer, "MHD_create_response_from_buffer"},
        {(void **)&serve_mhd.create_response_from_callback, "MHD_create_response_from_callback"},
        {(void **)&serve_mhd.add_response_header, "MHD_add_response_header"},
        {(void **)&serve_mhd.queue_response, "MHD_queue_response"},
        {(void **)&serve_mhd.destroy_response, "MHD_destroy_response"},
    };
    for (size_t i = 0; i < sizeof syms / sizeof syms[0]; i++) {
        *syms[i].slot = dlsym(h, syms[i].name);
        if (!*syms[i].slot) {
            snprintf(load_error, sizeof load_error, "%s: has no %s (too old a version)", MHD_SONAME, syms[i].name);
            serve_mhd.start_daemon = NULL;
            return;
        }
    }
    /* The handle stays open for the life of the process: the daemon's threads run its code. */
}

int serve_mhd_load(void) {
    pthread_once(&once, load);
    if (!serve_mhd.start_daemon || load_error[0]) return qvl_errorf("%s", load_error);
    return 0;
}
