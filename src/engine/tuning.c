/* The CUDA kernel choices' defaults (qvl.h qvl_tuning): each field's measured-best value. */
#include "qvl.h"

qvl_tuning qvl_tuning_default(void) {
    qvl_tuning t = {0};
    t.cuda_graphs = 1;
    return t;
}
