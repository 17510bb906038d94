/* Allocation of large image buffers (decoded RGB, resize intermediates, pixel_values). */
#ifndef QVL_IMAGE_BIG_ALLOC_H
#define QVL_IMAGE_BIG_ALLOC_H
#include <stddef.h>

/* malloc-compatible (release with free()). Buffers of 8 MiB and more are 2 MiB aligned and marked
 * for transparent huge pages where the system offers them (madvise mode): fresh memory then costs
 * one page fault per 2 MiB instead of per 4 KiB, which matters when many images are processed. */
void *qvl_big_alloc(size_t bytes);

#endif
