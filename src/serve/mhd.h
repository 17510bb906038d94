/* libmicrohttpd, resolved at run time with dlopen: only `qvl serve` needs the HTTP library, so the
 * other commands (and binaries carried to machines without it) keep no load-time dependency on it.
 * The header (libmicrohttpd-dev) is still needed to build; the function types come from it. */
#ifndef QVL_SERVE_MHD_H
#define QVL_SERVE_MHD_H
#include <microhttpd.h>

typedef struct {
    __typeof__(&MHD_start_daemon) start_daemon;
    __typeof__(&MHD_stop_daemon) stop_daemon;
    __typeof__(&MHD_quiesce_daemon) quiesce_daemon;
    __typeof__(&MHD_get_daemon_info) get_daemon_info;
    __typeof__(&MHD_get_connection_info) get_connection_info;
    __typeof__(&MHD_lookup_connection_value) lookup_connection_value;
    __typeof__(&MHD_create_response_from_buffer) create_response_from_buffer;
    __typeof__(&MHD_create_response_from_callback) create_response_from_callback;
    __typeof__(&MHD_add_response_header) add_response_header;
    __typeof__(&MHD_queue_response) queue_response;
    __typeof__(&MHD_destroy_response) destroy_response;
} serve_mhd_api;

/* The library's functions (valid after serve_mhd_load() returned 0). */
extern serve_mhd_api serve_mhd;

/* Loads libmicrohttpd once (thread-safe); 0, or -1 + error "libmicrohttpd.so.12: <reason>". */
int serve_mhd_load(void);

#endif
