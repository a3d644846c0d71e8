"""Does the search beat random? NSGA-II against random search on one trained supernet.

On a finished run (e.g. `tamnas run fashion --out runs/fm`), both strategies
search the same supernet with the same number of evaluations, from several
search seeds, into archives of their own (`search_vs_random/<strategy>-s<k>/`
inside the run, so the run's own search is left alone). Reported per seed:
the hypervolume of each inherited front (same bounds and reference point).
Then, within each parameter budget (`--budgets`, upper bounds), the best arch
of each strategy by inherited adversarial error (pooled over its seeds) is
retrained standalone with `--retrain-seeds` seeds through validate's own
retrain-and-score job, and the two are compared against their seed spread.

Writes the picks and the per-budget verdicts to search_vs_random.json beside
the jobs file. Resumable: every finished search and training appends one JSON line to
benchmarks/results/search_vs_random_jobs.jsonl; run the same command again
and only what is missing runs. `--shard I/N` splits the searches and the
trainings over N processes (one core each); a shard waits for the others'
searches before it picks archs.

    for i in 0 1; do OMP_NUM_THREADS=1 python benchmarks/search_vs_random.py runs/fm \\
        --seeds 2 --budgets 20000,33000 --retrain-seeds 3 --shard $i/2 & done; wait
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from tamnas.analysis.validate import Job
from tamnas.commands.validate import run_job
from tamnas.config import load_run_config
from tamnas.rundir import RunDir
from tamnas.search.archive import Archive, arch_key
from tamnas.search.evaluator import Evaluator
from tamnas.search.hypervolume import Hypervolume, objective_bounds
from tamnas.search.strategy import get_strategy, resolve_params_range
from tamnas.session import Session

RESULTS = Path(__file__).parent / "results"
STRATEGIES = ("nsga2", "random")


def _read(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def _append(path: Path, record: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


def run_search(session: Session, strategy: str, seed: int, folder: Path) -> pd.DataFrame:
    """One search of `strategy` from `seed` into `folder`; the archs it scored, as a frame.

    Rows that another step added to the folder's archive (a run's LEGO net,
    when a run's own search folder is copied in) are left out.
    """
    cfg = copy.deepcopy(session.cfg)
    cfg.search.strategy, cfg.seed = strategy, seed
    archive = Archive(session.space.name, session.space.n_genes, session.fingerprint)
    evaluator = Evaluator.from_config(cfg, session.space, session.supernet, session.data,
                                      session.device, archive=archive)
    runner = get_strategy(strategy)(session.space, evaluator, cfg, folder, seed=seed, quiet=True)
    runner.run()
    frame = archive.frame()
    return frame[frame["strategy"] == strategy]


def hypervolume_curve(session: Session, frame: pd.DataFrame, every: int) -> list[float]:
    """The hypervolume of the front after every `every` evaluations, in the order they ran."""
    ordered = frame.sort_values("order")
    ends = [*range(every, len(ordered), every), len(ordered)]
    return [round(hypervolume(session, ordered.iloc[:n]), 4) for n in ends]


def hypervolume(session: Session, frame: pd.DataFrame) -> float:
    """Of the frame's inherited front; one set of bounds for every strategy and seed."""
    cfg = session.cfg
    objectives = list(cfg.search.objectives)
    low, high = objective_bounds(session.space, objectives, resolve_params_range(cfg),
                                 seed=cfg.seed)
    front = Archive(session.space.name, session.space.n_genes).front(objectives, rows=frame)
    return Hypervolume(low, high)(front[objectives].to_numpy(dtype=float))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path, help="a run directory with a finished supernet")
    ap.add_argument("--seeds", type=int, default=2, help="search seeds per strategy")
    ap.add_argument("--budgets", default="", help="comma-separated parameter upper bounds")
    ap.add_argument("--retrain-seeds", type=int, default=3)
    ap.add_argument("--jobs", type=Path, default=RESULTS / "search_vs_random_jobs.jsonl")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--shard", default="0/1", help="I/N: this process runs every N-th job from I")
    args = ap.parse_args()
    try:
        shard, n_shards = (int(v) for v in args.shard.split("/"))
    except ValueError:
        ap.error(f"--shard {args.shard!r}: write I/N, e.g. 0/2")
    if not 0 <= shard < n_shards:
        ap.error(f"--shard {args.shard}: I must be in 0..N-1")
    run = RunDir(args.run)
    cfg = load_run_config(run.config)
    session = Session.open(cfg, run, torch.device(args.device), quiet=True)
    key = session.fingerprint
    root = run.root / "search_vs_random"
    frames: dict[tuple[str, int], pd.DataFrame] = {}
    searches = [(strategy, k) for strategy in STRATEGIES for k in range(args.seeds)]
    budgets = [int(b) for b in args.budgets.split(",") if b]

    def recorded(strategy: str, k: int) -> bool:
        return any(r["kind"] == "search" and r["strategy"] == strategy and r["seed"] == k
                   for r in _read(args.jobs) if r.get("supernet") == key)

    own = [job for i, job in enumerate(searches) if i % n_shards == shard]
    others = [job for job in searches if job not in own] if budgets else []
    for strategy, k in own + others:  # its own searches first, then the others' once recorded
        while (strategy, k) not in own and not recorded(strategy, k):
            time.sleep(30)
        tic = time.perf_counter()
        frame = run_search(session, strategy, cfg.seed + 1000 * k, root / f"{strategy}-s{k}")
        frames[strategy, k] = frame  # a finished search only reloads
        hv = hypervolume(session, frame)
        if not recorded(strategy, k):
            _append(args.jobs, {"supernet": key, "kind": "search", "strategy": strategy,
                                "seed": k, "evaluations": len(frame), "hv": hv,
                                "seconds": round(time.perf_counter() - tic, 1)})
        print(f"{strategy} seed {k}: {len(frame)} archs, hv {hv:.4f}", flush=True)
    picks = []
    for budget in budgets:
        for strategy in STRATEGIES:
            pool = pd.concat([frames[strategy, k] for k in range(args.seeds)])
            pool = pool[pool["params"] <= budget].sort_values(["adv_err", "clean_err"])
            if len(pool):
                row = pool.iloc[0]
                arch = tuple(int(row[f"g{i}"]) for i in range(session.space.n_genes))
                picks.append((budget, strategy, arch, float(row["adv_err"])))
    evaluator = Evaluator.from_config(cfg, session.space, session.supernet, session.data,
                                      session.device)
    # seed-major: every pick gets its first seed before any gets a second
    trainings = sorted({(pick[2], s) for pick in picks for s in range(args.retrain_seeds)},
                       key=lambda job: (job[1], job[0]))
    for j, (arch, s) in enumerate(trainings):
        name = arch_key(arch)
        if j % n_shards != shard or any(r.get("supernet") == key and r["kind"] == "retrain"
                                        and r["arch"] == name and r["seed_index"] == s
                                        for r in _read(args.jobs)):
            continue
        res = run_job(session, evaluator, Job(0, arch, s), root / "retrain", True, True)
        _append(args.jobs, {"supernet": key, "kind": "retrain", "arch": name, "seed_index": s,
                            "params": int(session.space.params(arch)),
                            "clean_err": float(res["clean_err"]), "adv_err": float(res["adv_err"])})
    # one training per (arch, seed) serves every budget and strategy that picked the arch
    done = [r for r in _read(args.jobs) if r.get("supernet") == key]
    results = {(r["arch"], r["seed_index"]): r for r in done if r["kind"] == "retrain"}
    table = pd.DataFrame([{**results[name, s], "budget": budget, "strategy": strategy,
                           "inherited_adv_err": inherited}
                          for budget, strategy, arch, inherited in picks
                          for name in [arch_key(arch)]
                          for s in range(args.retrain_seeds) if (name, s) in results])
    summary, verdicts = summarise(table)
    if len(summary):
        print(summary.to_string())
        print(verdicts.to_string())
    hv = pd.DataFrame([r for r in done if r["kind"] == "search"])
    if len(hv):
        print(hv.groupby("strategy")["hv"].agg(["mean", "std", "count"]).to_string())
    out = {"supernet": key, "budgets": budgets, "retrain_seeds": args.retrain_seeds,
           "hv_per_strategy": {s: [round(v, 4) for v in hv[hv.strategy == s].hv]
                               for s in STRATEGIES} if len(hv) else {},
           "hv_curves": {f"{s}-s{k}": hypervolume_curve(session, f, cfg.search.n_offsprings)
                         for (s, k), f in frames.items()},
           "picks": summary.reset_index().to_dict("records"),
           "comparison": verdicts.reset_index().to_dict("records")}
    args.jobs.with_name("search_vs_random.json").write_text(json.dumps(out, indent=2) + "\n")


def summarise(table: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per pick: its standalone errors over the seeds; per budget: NSGA-II's pick against random's.

    A difference in mean standalone error counts only beyond two standard
    errors of that difference (the seeds' spread, sqrt(s1^2/n1 + s2^2/n2));
    within it the budget is a tie, and with one seed a side it is unknown.
    """
    if not len(table):
        return pd.DataFrame(), pd.DataFrame()
    summary = table.groupby(["budget", "strategy", "arch"]).agg(
        params=("params", "first"), inherited_adv_err=("inherited_adv_err", "first"),
        adv_err=("adv_err", "mean"), adv_err_std=("adv_err", "std"),
        clean_err=("clean_err", "mean"), clean_err_std=("clean_err", "std"),
        seeds=("adv_err", "size"))
    rows = []
    for budget, group in summary.groupby(level="budget"):
        by = {s: g.iloc[0] for s, g in group.groupby(level="strategy")}
        if set(by) != set(STRATEGIES):
            continue
        a, b = by["nsga2"], by["random"]
        row = {"budget": budget}
        for err in ("adv_err", "clean_err"):
            diff = a[err] - b[err]
            se = float(np.sqrt(a[f"{err}_std"] ** 2 / a.seeds + b[f"{err}_std"] ** 2 / b.seeds))
            winner = ("unknown" if np.isnan(se) else "tie" if abs(diff) <= 2 * se
                      else "nsga2" if diff < 0 else "random")
            row |= {f"{err}_diff": diff, f"{err}_diff_se": se, f"{err}_winner": winner}
        rows.append(row)
    return summary, pd.DataFrame(rows).set_index("budget") if rows else pd.DataFrame()


if __name__ == "__main__":
    main()
