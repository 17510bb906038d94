/* Scale-out of `qvl eval` (docs/cli.md): `--shard i/N`, and the ranks of `mpirun -np N qvl eval`.
 * cmd_eval calls these at its steps; without --shard and outside mpirun they change nothing.
 *
 * Under mpirun each rank takes the share of its rank, the GPU of its local rank (unless --device
 * cuda:K; with CUDA_VISIBLE_DEVICES listing several GPUs, the local rank picks among them; listing
 * one, every rank shares it), runs into its own results file (<out stem>.shard-<r>-of-<N>.jsonl,
 * its own resume log), and rank 0 gathers the ranks' results over MPI and writes --out, --summary
 * and the report through the code path of `qvl merge`. Ranks whose settings differ are refused. */
#ifndef QVL_CLI_EVAL_SCALE_H
#define QVL_CLI_EVAL_SCALE_H
#include <cjson/cJSON.h>

#include "cli/opts.h"
#include "eval/dataset.h"
#include "eval/report.h"
#include "model/config.h"

/* First step: --shard (may be NULL), --device (cuda:K is chosen here and becomes "cuda"), --threads
 * (under mpirun, 0 becomes the cores shared among the machine's ranks); starts MPI when this process
 * is an mpirun rank. Returns 0, or an exit code (the error printed). */
int eval_scale_begin(const char *shard_arg, const char **device, int *threads);
/* Replaces the selection (*sel, *n: the samples after --offset/--limit, starting at position
 * `first` of ds) by this process's share, balanced by predicted cost. -1 + error. */
int eval_scale_select(const char *model, const qvl_config *cfg, const common_opts *c, const char *on_overflow,
                      int max_new_tokens, const qvl_dataset *ds, long first, const qvl_sample **sel, long *n);
/* Results and summary paths (malloc'd, replaced in place): under mpirun, *out and *summary are the
 * merged ones and the rank's own are derived from *out; with --shard the default --out names the shard. */
int eval_scale_paths(char **out, char **summary, int out_given, int summary_given);
/* Adds the "shard" setting; under mpirun, checks every rank has the same settings. -1 + error. */
int eval_scale_settings(cJSON *settings);
/* 1 under mpirun: a rank prints no report of its own (rank 0 prints the merged one). */
int eval_scale_quiet(void);
/* Adds the shard's run facts ("shard_run") to its summary. */
void eval_scale_annotate(cJSON *summary, const qvl_report_input *in);
/* Last step, with the exit code so far: under mpirun, rank 0 gathers every rank's results and
 * writes the merged outputs. Returns the exit code. */
int eval_scale_finish(const qvl_dataset *ds, const char *data, int rc);

#endif
