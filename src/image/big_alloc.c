#include "image/big_alloc.h"

#include <stdlib.h>
#include <sys/mman.h>

void *qvl_big_alloc(size_t bytes) {
#ifdef MADV_HUGEPAGE
    enum { HUGE_PAGE = 2 << 20 };
    if (bytes >= 4 * (size_t)HUGE_PAGE) {
        void *p = NULL;
        if (posix_memalign(&p, HUGE_PAGE, bytes) != 0) return NULL;
        madvise(p, bytes, MADV_HUGEPAGE); /* advice only: failure changes nothing */
        return p;
    }
#endif
    return malloc(bytes);
}
