#!/usr/bin/env python3
"""The random-weight real-shape checkpoint of tools/gen_real_shape_models.py (same config, weights,
preprocessor/generation config and tokenizer), without the F32/BF16 reference passes that `gen`
adds for the parity check: a benchmark needs only the model, and the 8B F32 reference alone would
take most of a GPU run. Run on the GPU machine.
  gen_bench_model.py SIZE MODEL_DIR"""
import os
import shutil
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tools"))
import gen_real_shape_models as g  # noqa: E402


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in g.SIZES:
        print(__doc__)
        return 2
    size, mdir = sys.argv[1], sys.argv[2]
    t0 = time.time()
    tmp = mdir.rstrip("/") + ".partial"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    g.write_model(size, tmp)
    shutil.rmtree(mdir, ignore_errors=True)
    os.replace(tmp, mdir)  # a half-written model never looks finished
    print("%s model written to %s in %.1f s" % (size, mdir, time.time() - t0), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
