/* eval_mpi.h for a build without MPI: qvl eval refuses to run as an mpirun rank (every rank would
 * otherwise evaluate everything into the same file). */
#include <stdlib.h>

#include "cli/eval_mpi.h"
#include "util/error.h"

int eval_mpi_built(void) { return 0; }

int eval_mpi_launched(void) {
    return getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMIX_RANK") || getenv("PMI_RANK");
}

int eval_mpi_start(int *rank, int *size, int *local_rank, int *local_size) {
    (void)rank, (void)size, (void)local_rank, (void)local_size;
    return qvl_errorf("mpirun: this qvl was built without MPI (qvl --version says 'mpi: no'); install "
                      "libopenmpi-dev and rebuild, or use qvl eval --shard i/N and qvl merge");
}

int eval_mpi_gather(const char *text, char ***texts) {
    (void)text, (void)texts;
    return qvl_errorf("mpirun: built without MPI");
}

int eval_mpi_bcast(char **text) {
    (void)text;
    return qvl_errorf("mpirun: built without MPI");
}

void eval_mpi_end(void) {}
