#include "qvl.h"
#include "util/error.h"

const char *qvl_last_error(void) { return qvl_error(); }
