/* src/cli/tuning_env.h: the QVL_* kernel switches become qvl_tuning fields (the one place the
 * library's tuning comes from the environment). */
#include <stdlib.h>

#include "cli/tuning_env.h"
#include "test.h"

TEST(tuning_env_decode_graphs_and_no_graph) {
    unsetenv("QVL_DECODE_GRAPHS"), unsetenv("QVL_NO_GRAPH"), unsetenv("QVL_ATT_IMPL"), unsetenv("QVL_GEMV_PICK");
    unsetenv("QVL_DUMP");
    qvl_tuning t = qvl_tuning_default();
    qvl_tuning_from_env(&t);
    CHECK_INT(t.decode_graphs, 0);   /* the backend's default */
    CHECK_INT(t.no_cuda_graphs, 0);
    setenv("QVL_DECODE_GRAPHS", "1", 1);
    qvl_tuning_from_env(&t);
    CHECK_INT(t.decode_graphs, 1);
    setenv("QVL_DECODE_GRAPHS", "0", 1);
    qvl_tuning_from_env(&t);
    CHECK_INT(t.decode_graphs, -1);
    setenv("QVL_NO_GRAPH", "1", 1);
    qvl_tuning_from_env(&t);
    CHECK_INT(t.no_cuda_graphs, 1);
}
