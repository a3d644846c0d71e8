"""Can a preset's archs be ranked at all? The seed-to-seed ceiling without a supernet.

Draws N archs spread by parameter count exactly as `tamnas validate` does,
trains each standalone twice (the preset's retrain recipe, seeds 0 and 1),
scores both on the preset's validation images under its attack (validate's own
retrain-and-score job), and reports the spread of the standalone errors
against their binomial noise and Kendall's tau between the two seeds: the best
tau any supernet could reach on these settings. Works with any preset and
dataset (`--set` overrides as on the command line).

Every finished training appends one line to benchmarks/results/rank_ceiling_jobs.jsonl
(keyed by the recipe that made it), so a study is resumable and can span
sessions: run the same command again and it trains only what is missing (an
interrupted training resumes from its last epoch in --work). Once all jobs of
a setting are in, one summary record is appended to rank_ceiling.jsonl.
`--summary` prints the summary of what is in so far without training.

    OMP_NUM_THREADS=1 nohup python benchmarks/rank_ceiling.py --preset fashion \\
        --archs 8 --label "fashion 16px" --set retrain.epochs=10 > ceiling.log 2>&1 &
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

import tamnas
from tamnas.analysis import rank_fidelity
from tamnas.analysis.validate import Job, draw_archs
from tamnas.commands.validate import job_recipe, run_job
from tamnas.config import parse_override
from tamnas.data import load_data
from tamnas.search.evaluator import Evaluator
from tamnas.search.strategy import resolve_params_range

RESULTS = Path(__file__).parent / "results"
SEEDS = (0, 1)


def _config(preset: str, overrides: list[str]):
    return tamnas.load_config(preset, dict(parse_override(s) for s in overrides))


def setting_key(cfg) -> str:
    """What every job of one setting shares: the recipe without arch and seed."""
    want = job_recipe(cfg, Job(0, (), 0))
    want.pop("arch"), want.pop("seed")
    want["base_seed"] = cfg.seed
    return hashlib.sha1(json.dumps(want, sort_keys=True).encode()).hexdigest()[:12]


def _train_and_score(cfg, index: int, arch: tuple[int, ...], seed_index: int, work: str) -> dict:
    """One standalone training, retrained and scored by validate's own job (seed + seed_index).

    Takes the Config read once at the start, not the preset's name: a preset edited while
    a study runs must not change the jobs still to come."""
    torch.set_num_threads(1)
    space = tamnas.build_space(cfg)
    data = load_data(cfg.data, cfg.seed)
    device = torch.device("cpu")
    ctx = SimpleNamespace(cfg=cfg, space=space, data=data, device=device)
    evaluator = Evaluator.from_config(cfg, space, space.build_supernet(), data, device)
    tic = time.perf_counter()
    scores = run_job(ctx, evaluator, Job(index, arch, seed_index), Path(work), resume=True,
                      quiet=True)
    return {**{k: float(scores[k]) for k in ("clean_err", "adv_err", "clean_err_se", "adv_err_se")},
            "seconds": round(time.perf_counter() - tic, 1)}


def read_jobs(path: Path, key: str) -> dict[tuple[str, int], dict]:
    """The finished jobs of setting `key`: (arch, seed_index) -> record; torn lines skipped."""
    done = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                r = json.loads(line)
            except json.JSONDecodeError:
                continue
            if r.get("key") == key:
                done[(r["arch"], int(r["seed_index"]))] = r
    return done


def summarize(space, archs, done: dict) -> dict | None:
    """Spread against noise and the seed-to-seed tau over the archs with both seeds in."""
    both = [a for a in archs if all(("-".join(map(str, a)), s) in done for s in SEEDS)]
    if len(both) < 3:
        return None
    out = {"archs_done": len(both), "archs": len(archs),
           "params": [int(space.params(both[0])), int(space.params(both[-1]))],
           "train_seconds_per_job": round(float(np.mean([r["seconds"] for r in done.values()])), 1),
           "cpu_hours": round(sum(r["seconds"] for r in done.values()) / 3600, 2)}
    key = ["-".join(map(str, a)) for a in both]
    for which in ("clean", "adv"):
        s0 = np.array([done[(k, 0)][f"{which}_err"] for k in key])
        s1 = np.array([done[(k, 1)][f"{which}_err"] for k in key])
        se = np.array([done[(k, s)][f"{which}_err_se"] for k in key for s in SEEDS])
        spread = rank_fidelity.spread_and_noise((s0 + s1) / 2, se)
        out[which] = {
            "ceiling_tau": round(rank_fidelity.kendall_tau(s0, s1), 3),
            "size_tau": round(rank_fidelity.kendall_tau([-space.params(a) for a in both],
                                                        (s0 + s1) / 2), 3),
            **{k: round(v, 4) for k, v in spread.items()},
            "acc_range": [round(1 - max(s0.max(), s1.max()), 4),
                          round(1 - min(s0.min(), s1.min()), 4)]}
    out["per_arch"] = [{"arch": k, "params": int(space.params(a)),
                        **{f"{w}_err_s{s}": done[(k, s)][f"{w}_err"] for w in ("clean", "adv")
                           for s in SEEDS}} for k, a in zip(key, both)]
    return out


def _job_order(n: int, seed: int) -> list[int]:
    """Archs in a seeded random order, so that the archs finished so far sample the spread."""
    return [int(i) for i in np.random.default_rng([seed, 0xCE11]).permutation(n)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="quickstart")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--label", default="")
    ap.add_argument("--archs", type=int, default=16)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--jobs", type=Path, default=RESULTS / "rank_ceiling_jobs.jsonl",
                    help="one line per finished training (read back to resume)")
    ap.add_argument("--out", type=Path, default=RESULTS / "rank_ceiling.jsonl",
                    help="one summary line per finished setting")
    ap.add_argument("--work", type=Path,
                    default=Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser()
                    / "tamnas" / "rank_ceiling", help="checkpoints of unfinished trainings")
    ap.add_argument("--summary", action="store_true", help="print what is in; train nothing")
    args = ap.parse_args()
    cfg = _config(args.preset, args.overrides)
    space = tamnas.build_space(cfg)
    archs = draw_archs(space, args.archs, cfg.seed, resolve_params_range(cfg))
    key = setting_key(cfg)
    done = read_jobs(args.jobs, key)
    todo = [(i, archs[i], s) for i in _job_order(len(archs), cfg.seed) for s in SEEDS
            if ("-".join(map(str, archs[i])), s) not in done]
    print(f"rank_ceiling {key} ({args.label}): {len(done)} trainings in, {len(todo)} to go",
          flush=True)
    if args.summary:
        print(json.dumps(summarize(space, archs, done), indent=1))
        return
    work = str(args.work / key)
    args.jobs.parent.mkdir(parents=True, exist_ok=True)

    def record(i, arch, s, result):
        name = "-".join(map(str, arch))
        line = {"key": key, "label": args.label, "preset": args.preset,
                "overrides": args.overrides, "arch": name, "index": i, "seed_index": s,
                "params": int(space.params(arch)), **result}
        with open(args.jobs, "a") as f:
            f.write(json.dumps(line) + "\n")
        done[(name, s)] = line
        summary = summarize(space, archs, done)
        brief = "" if summary is None else (
            f"; {summary['archs_done']} archs: tau clean {summary['clean']['ceiling_tau']} "
            f"adv {summary['adv']['ceiling_tau']}")
        print(f"arch {i} {name} seed {s}: clean {result['clean_err']:.4f} adv "
              f"{result['adv_err']:.4f} ({result['seconds']:.0f} s){brief}", flush=True)

    tic = time.perf_counter()
    if args.workers == 1:
        for i, arch, s in todo:
            record(i, arch, s, _train_and_score(cfg, i, arch, s, work))
    else:
        with ProcessPoolExecutor(args.workers) as pool:
            futures = [(job, pool.submit(_train_and_score, cfg, *job, work)) for job in todo]
            for job, f in futures:
                record(*job, f.result())
    summary = summarize(space, archs, done)
    if todo and summary is not None and summary["archs_done"] == len(archs):
        rec = {"label": args.label, "preset": args.preset, "overrides": args.overrides,
               "key": key, "wall_seconds_this_session": round(time.perf_counter() - tic, 1),
               **summary}
        with open(args.out, "a") as f:
            f.write(json.dumps(rec) + "\n")
    print(json.dumps({k: v for k, v in (summary or {}).items() if k != "per_arch"}, indent=1))


if __name__ == "__main__":
    main()
