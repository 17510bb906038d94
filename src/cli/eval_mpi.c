/* eval_mpi.h with Open MPI (compiled only when the build finds it: see the Makefile). */
#include <mpi.h>
#include <stdlib.h>
#include <string.h>

#include "cli/eval_mpi.h"
#include "util/error.h"

static int started, ended;

int eval_mpi_built(void) { return 1; }

int eval_mpi_launched(void) {
    return getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMIX_RANK") || getenv("PMI_RANK");
}

int eval_mpi_start(int *rank, int *size, int *local_rank, int *local_size) {
    if (!started && MPI_Init(NULL, NULL) != MPI_SUCCESS) return qvl_errorf("mpirun: MPI_Init failed");
    started = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, rank);
    MPI_Comm_size(MPI_COMM_WORLD, size);
    /* The ranks that share this machine (and its GPUs). */
    MPI_Comm node;
    if (MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, *rank, MPI_INFO_NULL, &node) != MPI_SUCCESS)
        return qvl_errorf("mpirun: MPI_Comm_split_type failed");
    MPI_Comm_rank(node, local_rank);
    MPI_Comm_size(node, local_size);
    MPI_Comm_free(&node);
    return 0;
}

int eval_mpi_gather(const char *text, char ***texts) {
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    size_t len = strlen(text);
    if (len > (size_t)1 << 30) return qvl_errorf("mpirun: a rank's results are over 1 GiB");
    int n = (int)len;
    int *lens = rank == 0 ? calloc((size_t)size, sizeof *lens) : NULL;
    int *offs = rank == 0 ? calloc((size_t)size, sizeof *offs) : NULL;
    if (rank == 0 && (!lens || !offs)) abort();   /* the other ranks are already in the collective */
    MPI_Gather(&n, 1, MPI_INT, lens, 1, MPI_INT, 0, MPI_COMM_WORLD);
    char *all = NULL;
    if (rank == 0) {
        long long total = 0;
        for (int r = 0; r < size; r++) {
            offs[r] = (int)total;
            total += lens[r];
        }
        if (total > 0x7fffffff) abort();
        all = malloc((size_t)total + 1);
        if (!all) abort();
    }
    MPI_Gatherv(text, n, MPI_CHAR, all, lens, offs, MPI_CHAR, 0, MPI_COMM_WORLD);
    if (rank == 0) {
        char **out = calloc((size_t)size, sizeof *out);
        if (!out) abort();
        for (int r = 0; r < size; r++) {
            out[r] = malloc((size_t)lens[r] + 1);
            if (!out[r]) abort();
            memcpy(out[r], all + offs[r], (size_t)lens[r]);
            out[r][lens[r]] = 0;
        }
        *texts = out;
    }
    free(all);
    free(lens);
    free(offs);
    return 0;
}

int eval_mpi_bcast(char **text) {
    int rank;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    int n = rank == 0 ? (int)strlen(*text) : 0;
    MPI_Bcast(&n, 1, MPI_INT, 0, MPI_COMM_WORLD);
    if (rank != 0) {
        *text = malloc((size_t)n + 1);
        if (!*text) abort();
        (*text)[n] = 0;
    }
    MPI_Bcast(*text, n, MPI_CHAR, 0, MPI_COMM_WORLD);
    return 0;
}

void eval_mpi_end(void) {
    if (started && !ended) MPI_Finalize();
    ended = 1;
}
