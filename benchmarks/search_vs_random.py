"""Does the search beat random? NSGA-II against random search on one trained supernet.

On a finished run (e.g. `tamnas run fashion --out runs/fm`), both strategies
search the same supernet with the same number of evaluations, from several
search seeds, into archives of their own (`search_vs_random/<strategy>-s<k>/`
inside the run, so the run's own search is left alone). Reported per seed:
the hypervolume of each inherited front (same bounds and reference point).

The standalone comparison at each parameter budget (`--budgets`, upper
bounds) is `tamnas compare`'s (this script calls it): the best front member,
random archs matched to its size, random search's pick and the plain net,
each trained with `--retrain-seeds` seeds and scored on the test split with
the same images and attack, differences with small-df intervals. Its results
are the run's compare/compare.json; search_vs_random.json (beside the jobs
file) holds the hypervolumes and a copy of compare's budgets. Before compare
existed, this script trained only the two picks, scored them on the
validation split and judged them by a two-standard-error rule (its old
`picks`/`comparison` keys are gone).

Resumable: every finished search appends one JSON line to
benchmarks/results/search_vs_random_jobs.jsonl and compare reuses finished
trainings; run the same command again and only what is missing runs.
`--shard I/N` splits the searches over N processes (one core each).

    for i in 0 1; do OMP_NUM_THREADS=1 python benchmarks/search_vs_random.py runs/fm \\
        --seeds 2 --shard $i/2 & done; wait
    OMP_NUM_THREADS=1 python benchmarks/search_vs_random.py runs/fm --seeds 2 \\
        --budgets 20000,33000 --retrain-seeds 3
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import pandas as pd
import torch

from tamnas.commands.compare import compare
from tamnas.config import load_run_config
from tamnas.rundir import RunDir
from tamnas.search.archive import Archive
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
    ap.add_argument("--random-archs", type=int, default=5, help="compare's matched random archs")
    ap.add_argument("--jobs", type=Path, default=RESULTS / "search_vs_random_jobs.jsonl")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--shard", default="0/1",
                    help="I/N: this process runs every N-th search from I; shard 0 compares")
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
    others = [job for job in searches if job not in own] if budgets and shard == 0 else []
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
    out = {"supernet": key, "budgets": budgets, "retrain_seeds": args.retrain_seeds}
    done = [r for r in _read(args.jobs) if r.get("supernet") == key]
    hv = pd.DataFrame([r for r in done if r["kind"] == "search"])
    if len(hv):
        print(hv.groupby("strategy")["hv"].agg(["mean", "std", "count"]).to_string())
        out["hv_per_strategy"] = {s: [round(v, 4) for v in hv[hv.strategy == s].hv]
                                  for s in STRATEGIES}
    out["hv_curves"] = {f"{s}-s{k}": hypervolume_curve(session, f, cfg.search.n_offsprings)
                        for (s, k), f in frames.items()}
    if budgets and shard == 0:
        blob = compare(cfg, run.root, budgets=[f"params<={b}" for b in budgets],
                       seeds=args.retrain_seeds, picks=1, random_archs=args.random_archs,
                       device=torch.device(args.device), quiet=True)
        print("\n".join(blob["lines"]))
        out["compare"] = {"file": str(run.compare_dir / "compare.json"),
                          "budgets": blob["budgets"]}
    args.jobs.with_name("search_vs_random.json").write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
