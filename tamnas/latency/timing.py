"""Timing one module at one input shape: eager PyTorch (CPU or CUDA) or ONNX Runtime.

Every timing is per call at a fixed batch, after warm-up, with threads
pinned; it stops after `repeats` calls or, for a slow unit, once `budget_s`
seconds are spent (never before `MIN_REPEATS`). CUDA calls are timed with
CUDA events after a synchronisation, so queued work is not mistaken for
done work. Whole nets (`latency check`) go through the same functions.

`clock="cpu"` (one thread, CPU only) times each call by the CPU time of the
calling thread instead of the wall clock: the time the call spent running,
not the time it waited while other jobs held the core. On a dedicated
device the two agree for one thread; on a shared machine only the CPU
clock measures the net rather than the queue (a call longer than a
scheduler slice is preempted almost surely, a short one rarely, so wall
times of whole nets and of their parts disagree there).
"""

from __future__ import annotations

import inspect
import io
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from tamnas.errors import require

BACKENDS = ("torch", "onnxruntime")
CLOCKS = ("wall", "cpu")
MIN_REPEATS = 5


@dataclass(frozen=True)
class TimingSettings:
    batch: int = 1
    repeats: int = 100
    warmup: int = 10
    budget_s: float = 2.0
    threads: int = 1
    backend: str = "torch"
    device: str = "cpu"
    clock: str = "wall"

    def check(self) -> TimingSettings:
        if self.backend not in BACKENDS:
            raise ValueError(f"--backend {self.backend!r} is unknown; choose {', '.join(BACKENDS)}")
        if self.backend == "onnxruntime" and self.device != "cpu":
            raise ValueError("--backend onnxruntime times on the CPU here; use --device cpu")
        if min(self.batch, self.repeats, self.threads) < 1 or self.warmup < 0 or self.budget_s <= 0:
            raise ValueError("latency timing: batch, repeats and threads must be >= 1, warm-up >= 0 "
                             "and the budget > 0")
        if self.clock not in CLOCKS:
            raise ValueError(f"--clock {self.clock!r} is unknown; choose {', '.join(CLOCKS)}")
        if self.clock == "cpu" and (self.threads != 1 or self.device != "cpu"):
            raise ValueError("--clock cpu times one thread on the CPU; use --threads 1 --device cpu")
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(f"--device {self.device}: CUDA is not available here; use --device cpu")
        return self

    def record(self) -> dict:
        return {"batch": self.batch, "repeats": self.repeats, "warmup": self.warmup,
                "budget_s": self.budget_s, "threads": self.threads, "backend": self.backend,
                "device": self.device, "clock": self.clock}


@contextmanager
def pinned_threads(threads: int):
    """torch's intra-op threads set to `threads` for the block, restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _loop(call, settings: TimingSettings, clock) -> np.ndarray:
    for _ in range(settings.warmup):
        call()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < settings.repeats and (time.perf_counter() - start < settings.budget_s
                                             or len(times) < MIN_REPEATS):
        times.append(clock(call))
    return np.asarray(times, dtype=np.float64)


def _cpu_clock(call) -> float:
    t0 = time.perf_counter()
    call()
    return (time.perf_counter() - t0) * 1e3


def _thread_clock(call) -> float:
    t0 = time.thread_time_ns()
    call()
    return (time.thread_time_ns() - t0) * 1e-6


def _cuda_clock(call) -> float:
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize()
    start.record()
    call()
    end.record()
    torch.cuda.synchronize()
    return float(start.elapsed_time(end))


def onnx_bytes(module: nn.Module, shape: tuple[int, ...]) -> bytes:
    """The module as an ONNX model (TorchScript exporter, as `tamnas export` writes them)."""
    from tamnas.analysis.export import ONNX_OPSET

    require("onnx", "onnx", feature="ONNX latency timing")
    kwargs = {"input_names": ["input"], "output_names": ["output"], "opset_version": ONNX_OPSET}
    if "dynamo" in inspect.signature(torch.onnx.export).parameters:  # torch >= 2.5
        kwargs["dynamo"] = False
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", UserWarning)   # shape-inference notes of the exporter
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        torch.onnx.export(module.eval(), (torch.zeros(shape),), buf, **kwargs)
    return buf.getvalue()


def ort_session(model: bytes, threads: int):
    """An ONNX Runtime CPU session with `threads` intra-op threads, sequential execution."""
    ort = require("onnxruntime", "onnx", feature="--backend onnxruntime")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = int(threads)
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 3
    return ort.InferenceSession(model, sess_options=opts, providers=["CPUExecutionProvider"])


def time_module(module: nn.Module, shape: tuple[int, ...], settings: TimingSettings,
                seed: int = 0) -> np.ndarray:
    """Per-call times (ms) of `module` on a random input of `(batch, *shape)`."""
    full = (settings.batch, *shape)
    x = torch.rand(full, generator=torch.Generator().manual_seed(seed))
    module = module.eval()
    with pinned_threads(settings.threads):
        if settings.backend == "onnxruntime":
            sess = ort_session(onnx_bytes(module, full), settings.threads)
            name, feed = sess.get_inputs()[0].name, x.numpy()
            clock = _thread_clock if settings.clock == "cpu" else _cpu_clock
            return _loop(lambda: sess.run(None, {name: feed}), settings, clock)
        device = torch.device(settings.device)
        module, x = module.to(device), x.to(device)
        clock = _cuda_clock if device.type == "cuda" else \
            _thread_clock if settings.clock == "cpu" else _cpu_clock
        with torch.inference_mode():
            return _loop(lambda: module(x), settings, clock)


def summarise(times: np.ndarray) -> dict:
    """The statistics a table stores per entry: median, p90, min (ms) and count."""
    return {"median": float(np.median(times)), "p90": float(np.percentile(times, 90)),
            "min": float(np.min(times)), "count": len(times)}


__all__ = ["BACKENDS", "CLOCKS", "MIN_REPEATS", "TimingSettings", "onnx_bytes", "ort_session",
           "pinned_threads", "summarise", "time_module"]
