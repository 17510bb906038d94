#!/usr/bin/env python3
"""transformers side of tests/gpu/bench_sizes.sh: runs bench/bench_gpu_ref.py's main() in this
process (same rows, images, token counts and timings) and adds the memory figures it does not
print: torch.cuda.max_memory_allocated / max_memory_reserved, and this process's device memory as
NVML reports it (nvmlDeviceGetComputeRunningProcesses_v3 for our pid, sampled every 20 ms by a
thread and once more at the end; when NVML does not list our pid, e.g. another PID namespace,
device used minus the figure taken before CUDA started). Prints bench_gpu_ref.py's lines, then one
JSON line {"engine": "transformers-mem", ...}.
  bench_ref_mem.py MODEL_DIR TSV [every=10] [new_tokens=0]"""
import ctypes
import json
import os
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))


class ProcInfo(ctypes.Structure):  # nvmlProcessInfo_v2_t, the _v3 call's layout
    _fields_ = [("pid", ctypes.c_uint), ("used", ctypes.c_ulonglong), ("gi", ctypes.c_uint), ("ci", ctypes.c_uint)]


class Memory(ctypes.Structure):  # nvmlMemory_t
    _fields_ = [("total", ctypes.c_ulonglong), ("free", ctypes.c_ulonglong), ("used", ctypes.c_ulonglong)]


class Meter:
    def __init__(self):
        self.lib, self.why, self.peaks, self.measure, self.baseline = None, "", {}, "none", None
        try:
            self.lib = ctypes.CDLL("libnvidia-ml.so.1")
            if self.lib.nvmlInit_v2() != 0:
                raise OSError("nvmlInit_v2 failed")
            n = ctypes.c_uint()
            self.lib.nvmlDeviceGetCount_v2(ctypes.byref(n))
            self.handles = []
            for i in range(n.value):
                h = ctypes.c_void_p()
                self.lib.nvmlDeviceGetHandleByIndex_v2(i, ctypes.byref(h))
                self.handles.append(h)
            self.baseline = [self.device_used(h) for h in self.handles]
        except (OSError, AttributeError) as e:
            self.lib, self.why = None, "NVML not available (%s)" % e

    def device_used(self, h):
        m = Memory()
        self.lib.nvmlDeviceGetMemoryInfo(h, ctypes.byref(m))
        return m.used / 2**20

    def process_used(self, h):
        cap = 256
        arr, n = (ProcInfo * cap)(), ctypes.c_uint(cap)
        if self.lib.nvmlDeviceGetComputeRunningProcesses_v3(h, ctypes.byref(n), arr) != 0:
            return None
        for i in range(min(n.value, cap)):
            if arr[i].pid == os.getpid() and arr[i].used != 2**64 - 1:
                return arr[i].used / 2**20
        return None

    def sample(self):
        if not self.lib:
            return None
        for h in self.handles:
            v = self.process_used(h)
            if v is not None:
                return self.record("nvml process", v)
        if self.handles:  # not listed: device 0 used minus the baseline
            return self.record("nvml device used minus before start", self.device_used(self.handles[0]) - self.baseline[0])
        return None

    def record(self, measure, v):
        """A peak per measure: the figures of two measures are never compared."""
        self.measure = measure
        self.peaks[measure] = max(self.peaks.get(measure, 0.0), v)
        return v

    def peak(self):
        return self.peaks.get(self.measure)


def main():
    meter = Meter()  # before CUDA starts: the baseline
    stop = threading.Event()

    def loop():
        while not stop.is_set():
            meter.sample()
            time.sleep(0.02)
    th = threading.Thread(target=loop, daemon=True)
    th.start()
    sys.path.insert(0, os.path.join(HERE, "..", "..", "bench"))
    import bench_gpu_ref
    sys.argv = ["bench_gpu_ref.py"] + sys.argv[1:]
    bench_gpu_ref.main()
    stop.set()
    th.join()
    import torch
    final = meter.sample()
    print(json.dumps({"engine": "transformers-mem", "torch_max_allocated_mib": torch.cuda.max_memory_allocated() / 2**20,
                      "torch_max_reserved_mib": torch.cuda.max_memory_reserved() / 2**20,
                      "nvml_peak_mib": meter.peak(), "nvml_final_mib": final,
                      "nvml_measure": meter.measure, "nvml_note": meter.why}), flush=True)


if __name__ == "__main__":
    main()
