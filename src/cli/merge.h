/* The one code path that turns shard results into a run's outputs: `qvl merge` and rank 0 of
 * `mpirun ... qvl eval` both call it. */
#ifndef QVL_CLI_MERGE_H
#define QVL_CLI_MERGE_H
#include "eval/dataset.h"
#include "eval/shard.h"

/* Merges the shards (see qvl_shard_merge), writes the results JSONL to out and the summary JSON to
 * summary (both atomically), and prints the report with the per-<label> lines on stdout. data is
 * the data path as the user gave it. Returns 0, or -1 + error (nothing written). */
int merge_write_outputs(const qvl_dataset *ds, const char *data, const qvl_shard_input *in, int n_in,
                        const char *label, const char *out, const char *summary);

#endif
