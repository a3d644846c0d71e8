"""One-command GPU check: quickstart on the device vs a CPU reference, paper-width epoch and evaluator speed.

    python benchmarks/device_check.py                              # on CUDA, about 8 minutes
    python benchmarks/device_check.py --device cpu --only quickstart   # the CPU reference
    python benchmarks/device_check.py --device cpu --tiny          # a seconds-long smoke run

Parts (each can be picked with --only):
(a) quickstart: `tamnas run quickstart` through the CLI on the device; its
    supernet training curve (clean / adversarial training accuracy) and its
    front are compared with the CPU reference JSON written by this script with
    --device cpu (benchmarks/results/device_check_cpu.json). Two runs on
    different hardware round differently, so the curves are compared as
    estimates: the mean accuracy over the last epochs, and the best clean and
    PGD error on the front, each within 4 standard errors of a difference of
    two binomial estimates.
(b) one supernet epoch at paper width (preset cifar10-tamnas, TRADES-YOPO-5-3,
    batch 512, 50,000 CIFAR-shaped images: CIFAR-10 when its files are in
    data.root, random images otherwise), in fp32 and bf16 (train.precision),
    images resident on the device; if an epoch would take longer than
    --epoch-seconds, the batches timed so far are extrapolated (and marked so).
(c) the evaluator at the paper's settings (PGD-10, 2,000 validation images,
    2,000 BatchNorm images): archs per second, random supernet weights.
(d) peak device memory (torch.cuda.max_memory_allocated) of each part.
(e) latency: a latency table of the quickstart and fashion spaces at batch 1
    and 32 built on the device, checked against whole standalone nets
    (benchmarks/latency_check.py: each call timed with CUDA events after a
    synchronisation; RMSE %, share within +-10 %, tau vs the repeat ceiling,
    params and a constant beside them).
Every timing is bracketed by torch.cuda.synchronize. Writes
benchmarks/results/device_check_<device>.json and prints a markdown table
(append it to benchmarks/RESULTS.md).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import tamnas
from tamnas.adversarial import build_objective
from tamnas.attacks import Attack
from tamnas.data import ImageTensorDataset, make_loader, resident
from tamnas.rundir import RunDir
from tamnas.sampling import SamplingSchedule
from tamnas.search.evaluator import Evaluator

RESULTS = Path(__file__).parent / "results"
PAPER_PRESET = "cifar10-tamnas"
PAPER_IMAGES = 50_000
CURVE_WINDOW = 10          # last epochs whose mean training accuracy is compared
Z_LIMIT = 4.0

# --tiny: the same code paths at sizes a CPU runs in seconds
TINY_QUICKSTART = {"train.phase1_epochs": 1, "train.phase2_epochs": 1, "train.batches_per_epoch": 2,
                   "search.pop_size": 4, "search.n_offsprings": 4, "search.generations": 1,
                   "search.bn_images": 32, "search.eval_images": 40, "data.ood_size": 20,
                   "output.top_k": 1, "output.eval_eps": [0.05], "output.eval_steps": [2]}
TINY_PAPER = {"space.stage_layers": [1, 1, 1], "space.stage_channels": [16, 32, 64],
              "space.stem_channels": 8, "space.head_channels": 64, "space.fc_channels": 32,
              "space.head": "compact", "train.params_range_phase1": [0, 0], "train.yopo_m": 2,
              "train.yopo_n": 1}


# -- timing helpers ------------------------------------------------------------------------------
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def _peak_mib(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    torch.cuda.synchronize(device)
    return round(torch.cuda.max_memory_allocated(device) / 2**20, 1)


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


# -- (a) quickstart against the CPU reference ----------------------------------------------------
def run_quickstart(device: torch.device, tiny: bool, workdir: Path) -> dict:
    """`tamnas run quickstart` in a fresh process; its curve and front, and the wall time."""
    out = workdir / f"quickstart-{device.type}"
    cmd = [sys.executable, "-m", "tamnas", "run", "quickstart", "--out", str(out), "--device",
           str(device), "--quiet", "--no-resume"]
    for key, value in (TINY_QUICKSTART.items() if tiny else ()):
        cmd += ["--set", f"{key}={json.dumps(value)}"]
    tic = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - tic
    with open(RunDir(out).supernet_log, newline="") as f:
        rows = list(csv.DictReader(f))
    cfg = tamnas.load_config("quickstart", TINY_QUICKSTART if tiny else {})
    curve = {"epoch": [int(r["epoch"]) for r in rows],
             "clean_acc": [float(r["clean_acc"]) for r in rows],
             "adv_acc": [float(r["adv_acc"]) for r in rows],
             "images_per_epoch": [int(r["batches"]) * cfg.data.batch_size for r in rows],
             "seconds": [float(r["seconds"]) for r in rows]}
    front = json.loads(RunDir(out).front.read_text())["front"]
    scores = [p["scores"] for p in front]
    return {"seconds": round(seconds, 1), "curve": curve,
            "front": [{"arch": p["arch"], **{k: p["scores"][k] for k in
                                             ("clean_err", "adv_err", "params", "n_eval")}}
                      for p in front],
            "best_clean_err": min(s["clean_err"] for s in scores),
            "best_adv_err": min(s["adv_err"] for s in scores), "n_eval": scores[0]["n_eval"]}


def _z(a: float, b: float, n_a: int, n_b: int) -> float:
    """|a - b| in standard errors of a difference of two binomial proportions."""
    se = math.sqrt(a * (1 - a) / n_a + b * (1 - b) / n_b)
    return abs(a - b) / max(se, 1.0 / min(n_a, n_b))


def compare_quickstart(run: dict, ref: dict) -> dict:
    """The device run against the CPU reference, each compared quantity as a z-score."""
    out = {}
    for key in ("clean_acc", "adv_acc"):
        k = min(CURVE_WINDOW, len(run["curve"][key]), len(ref["curve"][key]))
        a = float(np.mean(run["curve"][key][-k:]))
        b = float(np.mean(ref["curve"][key][-k:]))
        n_a = sum(run["curve"]["images_per_epoch"][-k:])
        n_b = sum(ref["curve"]["images_per_epoch"][-k:])
        out[f"last{k}_{key}"] = {"device": round(a, 4), "cpu": round(b, 4),
                                 "z": round(_z(a, b, n_a, n_b), 2)}
    for key in ("best_clean_err", "best_adv_err"):
        out[key] = {"device": run[key], "cpu": ref[key],
                    "z": round(_z(run[key], ref[key], run["n_eval"], ref["n_eval"]), 2)}
    out["within_noise"] = all(v["z"] <= Z_LIMIT for v in out.values() if isinstance(v, dict))
    return out


# -- (b) one paper-width supernet epoch ----------------------------------------------------------
def paper_images(cfg, n: int, seed: int) -> tuple[ImageTensorDataset, str]:
    """n CIFAR-10 training images when its files are in data.root, else random CIFAR-shaped ones."""
    try:
        from tamnas.data import load_torchvision

        images, labels = load_torchvision("cifar10", cfg.data.root, "train", download=False)
        source = "CIFAR-10"
    except FileNotFoundError:
        gen = torch.Generator().manual_seed(seed)
        images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=gen)
        labels = torch.randint(0, 10, (n,), generator=gen)
        source = "random"
    images, labels = images[:n], labels[:n]
    return ImageTensorDataset(images, labels, 32, augment=True, seed=seed), source


def time_paper_epoch(device: torch.device, precision: str, tiny: bool, epoch_seconds: float,
                     seed: int = 0) -> dict:
    overrides = {"train.precision": precision, **(TINY_PAPER if tiny else {})}
    cfg = tamnas.load_config(PAPER_PRESET, overrides)
    batch = 8 if tiny else cfg.data.batch_size
    n_images = 4 * batch if tiny else PAPER_IMAGES
    space = tamnas.build_space(cfg)
    torch.manual_seed(seed)
    supernet = space.build_supernet().to(device)
    if device.type == "cuda" and cfg.train.channels_last:
        supernet.to(memory_format=torch.channels_last)
    fmt = torch.channels_last if device.type == "cuda" and cfg.train.channels_last \
        else torch.preserve_format
    objective = build_objective(cfg.train, generator=torch.Generator().manual_seed(seed))
    optimizer = torch.optim.SGD(supernet.parameters(), lr=cfg.train.lr, momentum=cfg.train.momentum,
                                weight_decay=cfg.train.weight_decay)
    schedule = SamplingSchedule(space, cfg.train, tuple(cfg.space.ratios))
    rng = np.random.default_rng(seed)
    data, source = paper_images(cfg, n_images, seed)
    data = resident(data, device)
    batches = n_images // batch
    loader = make_loader(data, batch, shuffle=True, seed=seed, drop_last=True)
    _reset_peak(device)
    done, elapsed, warm = 0, 0.0, False
    for x, y in loader:
        path = supernet.path(schedule.sample(rng, 0))
        x, y = x.to(device, memory_format=fmt), y.to(device)
        _sync(device)
        tic = time.perf_counter()
        objective.step(path, x, y, optimizer=optimizer)
        _sync(device)
        if not warm:               # the first step pays for kernel selection and allocation
            warm = True
            continue
        elapsed += time.perf_counter() - tic
        done += 1
        if elapsed > epoch_seconds:
            break
    per_batch = elapsed / max(done, 1)
    return {"precision": precision, "images": source, "batch": batch, "batches_per_epoch": batches,
            "batches_timed": done, "extrapolated": done < batches - 1,
            "epoch_seconds": round(per_batch * batches, 2),
            "images_per_second": round(batch / per_batch, 1),
            "peak_memory_mib": _peak_mib(device)}


# -- (c) the evaluator at the paper's settings ---------------------------------------------------
def time_evaluator(device: torch.device, tiny: bool, n_archs: int, seed: int = 0) -> dict:
    cfg = tamnas.load_config(PAPER_PRESET, TINY_PAPER if tiny else {})
    n_val = 16 if tiny else cfg.search.eval_images
    n_bn = 16 if tiny else cfg.search.bn_images
    space = tamnas.build_space(cfg)
    torch.manual_seed(seed)
    supernet = space.build_supernet().to(device).eval()
    gen = torch.Generator().manual_seed(seed)
    bn_x = torch.rand(n_bn, 3, 32, 32, generator=gen)
    val_x = torch.rand(n_val, 3, 32, 32, generator=gen)
    val_y = torch.randint(0, 10, (n_val,), generator=gen)
    attack = Attack.from_config(cfg.attack)
    evaluator = Evaluator(space, supernet, bn_images=bn_x, val_images=val_x, val_labels=val_y,
                          attack=attack, device=device, batch_size=cfg.data.eval_batch_size,
                          seed=seed)
    rng = np.random.default_rng(seed)
    archs = [space.sample(rng) for _ in range(n_archs + 1)]
    evaluator.score(archs[0])                       # warm-up
    _reset_peak(device)
    _sync(device)
    tic = time.perf_counter()
    for a in archs[1:]:
        evaluator.score(a)
    _sync(device)
    seconds = time.perf_counter() - tic
    return {"archs": n_archs, "val_images": n_val, "bn_images": n_bn, "pgd_steps": attack.steps,
            "seconds": round(seconds, 2), "archs_per_second": round(n_archs / seconds, 3),
            "peak_memory_mib": _peak_mib(device)}


# -- driver --------------------------------------------------------------------------------------
def run(args) -> dict:
    device = torch.device(args.device)
    result = {"device": str(device), "device_name": _device_name(device), "torch": torch.__version__,
              "tiny": args.tiny, "parts": {}}
    parts = args.only or ["quickstart", "paper_epoch", "evaluator", "latency"]
    with tempfile.TemporaryDirectory() as tmp:
        if "quickstart" in parts:
            _reset_peak(device)
            qs = run_quickstart(device, args.tiny, Path(tmp))
            ref_path = Path(args.reference)
            if ref_path.resolve() == Path(args.out).resolve():
                pass                                  # this run writes the reference
            elif ref_path.exists():
                ref = json.loads(ref_path.read_text())["parts"]["quickstart"]
                qs["against_cpu"] = compare_quickstart(qs, ref)
            else:
                qs["against_cpu"] = f"no CPU reference at {ref_path}"
            result["parts"]["quickstart"] = qs
            _say(args, f"quickstart: {qs['seconds']} s")
    if "paper_epoch" in parts:
        result["parts"]["paper_epoch"] = [time_paper_epoch(device, p, args.tiny, args.epoch_seconds)
                                          for p in ("fp32", "bf16")]
        _say(args, "paper epoch: " + ", ".join(f"{r['precision']} {r['epoch_seconds']} s"
                                               for r in result["parts"]["paper_epoch"]))
    if "evaluator" in parts:
        result["parts"]["evaluator"] = time_evaluator(device, args.tiny, args.archs)
        _say(args, f"evaluator: {result['parts']['evaluator']['archs_per_second']} archs/s")
    if "latency" in parts:
        result["parts"]["latency"] = time_latency(device, args.tiny)
        _say(args, "latency: " + ", ".join(
            f"{r['preset']} b{r['batch']} {r['statistic']} tau {r['table_tau']:.2f}"
            for r in result["parts"]["latency"]))
    return result


def time_latency(device: torch.device, tiny: bool) -> list[dict]:
    """Part (e): latency_check.measure on this device (torch backend; CUDA events on a GPU)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("latency_check",
                                                  Path(__file__).with_name("latency_check.py"))
    latency_check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(latency_check)
    presets, batches, archs = (["quickstart"], [1], 4) if tiny else (["quickstart", "fashion"],
                                                                      [1, 32], 20)
    _reset_peak(device)
    return [row for preset in presets for batch in batches
            for row in latency_check.measure(preset, batch, "torch", str(device), archs, tiny)]


def _say(args, message: str) -> None:
    if not args.quiet:
        print(message, flush=True)


def table(result: dict) -> str:
    p = result["parts"]
    lines = [(f"Device: **{result['device_name']}** (`{result['device']}`), PyTorch "
              f"{result['torch']}{', --tiny sizes' if result['tiny'] else ''}"),
             "| check | value | peak memory (MiB) |", "| --- | --- | ---: |"]
    if "quickstart" in p:
        qs = p["quickstart"]
        lines.append(f"| quickstart, `tamnas run` wall time | {qs['seconds']} s | |")
        cmp = qs.get("against_cpu")
        if isinstance(cmp, dict):
            for key, v in cmp.items():
                if isinstance(v, dict):
                    lines.append(f"| quickstart {key}: device / CPU (z) | {v['device']} / {v['cpu']} "
                                 f"({v['z']}) | |")
            lines.append(f"| quickstart within binomial noise of CPU | "
                         f"{'yes' if cmp['within_noise'] else 'NO'} | |")
        elif cmp:
            lines.append(f"| quickstart against CPU | {cmp} | |")
    for r in p.get("paper_epoch", []):
        mem = "" if r["peak_memory_mib"] is None else r["peak_memory_mib"]
        note = f", extrapolated from {r['batches_timed']} batches" if r["extrapolated"] else ""
        lines.append(f"| paper-width supernet epoch, {r['precision']}, batch {r['batch']} x "
                     f"{r['batches_per_epoch']} ({r['images']} images) | {r['epoch_seconds']} s "
                     f"({r['images_per_second']} img/s{note}) | {mem} |")
    for r in p.get("latency", []):
        lines.append(f"| latency, {r['preset']} batch {r['batch']} ({r['statistic']}): table RMSE % / "
                     f"tau (+ correction), ceiling tau, params tau | {r['table_rmse_pct']:.1f} / "
                     f"{r['table_tau']:.2f} ({r['table_corrected_rmse_pct']:.1f} / "
                     f"{r['table_corrected_tau']:.2f}), {r['ceiling_tau']:.2f}, "
                     f"{r['params_tau']:.2f} | |")
    if "evaluator" in p:
        e = p["evaluator"]
        mem = "" if e["peak_memory_mib"] is None else e["peak_memory_mib"]
        lines.append(f"| evaluator, PGD-{e['pgd_steps']}, {e['val_images']} val + {e['bn_images']} "
                     f"BN images | {e['archs_per_second']} archs/s | {mem} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--tiny", action="store_true", help="the same checks at seconds-long sizes")
    p.add_argument("--only", nargs="*", choices=("quickstart", "paper_epoch", "evaluator", "latency"))
    p.add_argument("--epoch-seconds", type=float, default=75.0,
                   help="time at most this long per precision, then extrapolate to the epoch")
    p.add_argument("--archs", type=int, default=8, help="archs the evaluator scores (timed)")
    p.add_argument("--reference", default=str(RESULTS / "device_check_cpu.json"),
                   help="the CPU run's JSON that part (a) compares with (--device cpu writes it)")
    p.add_argument("--out", default="", help="JSON path (default: results/device_check_<device>.json)")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    if args.tiny:
        args.archs = min(args.archs, 2)
    name = f"device_check_{torch.device(args.device).type}{'_tiny' if args.tiny else ''}.json"
    args.out = args.out or str(RESULTS / name)
    result = run(args)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    if not args.quiet:
        print(table(result))
        print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
