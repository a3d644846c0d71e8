#!/usr/bin/env python3
"""Time tamnas latency probes with ONNX Runtime on this device and write a result file.

Needs only Python 3, numpy and onnxruntime (no torch, no tamnas). Run it in
the probes folder on the target device:

    python3 time_probes.py [--threads 1] [--repeats 100] [--warmup 10] [--budget 2]

then bring result.json back and run `tamnas latency import RUN result.json`.
"""

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

FORMAT = "tamnas-latency-probes-result/1"


def cpu_name():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("model name", "Hardware", "Model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown cpu"


def time_probe(path, shape, args):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = args.threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 3
    sess = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    x = np.random.default_rng(0).random(shape, dtype=np.float32)
    for _ in range(args.warmup):
        sess.run(None, {name: x})
    times, start = [], time.perf_counter()
    while len(times) < args.repeats and (time.perf_counter() - start < args.budget or len(times) < 5):
        t0 = time.perf_counter()
        sess.run(None, {name: x})
        times.append((time.perf_counter() - t0) * 1e3)
    t = np.asarray(times)
    return {"median": float(np.median(t)), "p90": float(np.percentile(t, 90)),
            "min": float(np.min(t)), "count": len(t)}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=100)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--budget", type=float, default=2.0, help="seconds per probe at most")
    p.add_argument("--out", default="result.json")
    args = p.parse_args()
    here = Path(__file__).resolve().parent
    manifest = json.loads((here / "manifest.json").read_text())
    entries = {}
    for i, probe in enumerate(manifest["probes"]):
        entries[probe["signature"]] = time_probe(here / probe["file"], probe["shape"], args)
        print(f"[{i + 1}/{len(manifest['probes'])}] {probe['signature']}: "
              f"{entries[probe['signature']]['median']:.3f} ms", flush=True)
    result = {"format": FORMAT, "space": manifest["space"], "batch": manifest["batch"],
              "device": {"device": "cpu", "name": cpu_name(), "threads": args.threads,
                         "torch": None, "dtype": "float32", "backend": "onnxruntime",
                         "onnxruntime": ort.__version__, "machine": platform.machine(),
                         "os": platform.system()},
              "settings": {"batch": manifest["batch"], "repeats": args.repeats,
                           "warmup": args.warmup, "budget_s": args.budget,
                           "threads": args.threads, "backend": "onnxruntime", "device": "cpu"},
              "entries": entries}
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
