#include "util/error.h"

#include <stdarg.h>
#include <stdio.h>

static _Thread_local char last_error[1024];
static _Thread_local int last_code;

int qvl_errorf(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    last_code = 0;
    return -1;
}

const char *qvl_error(void) { return last_error; }

void qvl_error_clear(void) {
    last_error[0] = 0;
    last_code = 0;
}

void qvl_error_set_kind(int code) { last_code = code; }

int qvl_error_kind(void) { return last_code; }
