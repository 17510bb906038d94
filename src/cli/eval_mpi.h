/* The MPI calls `qvl eval` makes as one rank of `mpirun -np N` (Open MPI). eval_mpi.c implements
 * them when the build found MPI; eval_mpi_none.c otherwise (each then fails, saying so). Texts travel
 * as bytes through MPI collectives: no launcher or protocol of qvl's own. */
#ifndef QVL_CLI_EVAL_MPI_H
#define QVL_CLI_EVAL_MPI_H
#include <stddef.h>

/* 1 when this qvl was built with MPI. */
int eval_mpi_built(void);
/* 1 when the environment says this process is a rank started by mpirun (Open MPI, PMIx or PMI). */
int eval_mpi_launched(void);
/* MPI_Init; this rank, the ranks, and this rank's place among the ranks of its machine. -1 + error. */
int eval_mpi_start(int *rank, int *size, int *local_rank, int *local_size);
/* Every rank calls it with its text; rank 0 gets all texts (texts[r] malloc'd, NUL-terminated, the
 * array too; the caller frees). -1 + error. */
int eval_mpi_gather(const char *text, char ***texts);
/* Every rank calls it; rank 0's *text (malloc'd) is copied to all: others get a malloc'd copy. */
int eval_mpi_bcast(char **text);
/* MPI_Finalize (once). */
void eval_mpi_end(void);

#endif
