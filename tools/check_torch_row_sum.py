#!/usr/bin/env python3
"""Checks qvl's emulation of torch's CPU float32 row sum (src/backend/cpu/ops.c qvl_cpu_torch_sum, used
by the CPU RMSNorm so that FP8 activation codes at exact ties follow transformers: docs/model.md 7.4)
against the torch of this host. Rows: x[i] = float32((h(i) / 2^32 - 0.5) * (1 + i % 13)) with
h(i) = i * 2654435761 mod 2^32; the expected values are qvl's (x.sum(-1) and x.pow(2).sum(-1) of one
contiguous row). Needs torch only: python3 tools/check_torch_row_sum.py. Prints one line per row and a
summary; exit status 1 when a value differs."""
import sys

import torch

QVL = [(32, 0, '0x1.4cd716p+2'), (32, 1, '0x1.e6a44ep+6'), (128, 0, '0x1.42ac2p+3'), (128, 1, '0x1.30258ep+9'), (1000, 0, '0x1.84aacp-1'), (1000, 1, '0x1.47cc26p+12'), (1024, 0, '-0x1.6a8d7p+3'), (1024, 1, '0x1.50d53ap+12'), (2048, 0, '-0x1.249028p+5'), (2048, 1, '0x1.4e0162p+13'), (2560, 0, '-0x1.29c4a4p+5'), (2560, 1, '0x1.a50db4p+13'), (4096, 0, '-0x1.b6c01p+4'), (4096, 1, '0x1.50b96ep+14'), (8192, 0, '0x1.5f501cp+5'), (8192, 1, '0x1.5040aap+15'), (16384, 0, '-0x1.602ef4p+3'), (16384, 1, '0x1.4fcd16p+16')]


def row(n):
    v = [(((i * 2654435761) % 2 ** 32) / 2 ** 32 - 0.5) * (1 + i % 13) for i in range(n)]
    return torch.tensor(v, dtype=torch.float64).to(torch.float32)[None]  # one rounding, as (float) in C


def main():
    torch.set_num_threads(1)
    print("torch", torch.__version__, "cpu capability", torch.backends.cpu.get_cpu_capability())
    bad = 0
    for n, sq, want in QVL:
        x = row(n)
        got = (x.pow(2) if sq else x).sum(-1)[0].item()
        ok = got == float.fromhex(want)
        bad += not ok
        print("n=%-5d %s torch %-22s qvl %-22s %s" % (n, "sum(x^2)" if sq else "sum(x)  ", got.hex(),
                                                     float.fromhex(want).hex(), "ok" if ok else "DIFFERENT"))
    print("%d of %d rows identical" % (len(QVL) - bad, len(QVL)))
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
