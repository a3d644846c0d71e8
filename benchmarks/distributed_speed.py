"""Wall time to score one population with one rank and with N gloo ranks (one thread each).

The evaluator shards a population's new archs over the ranks and gathers the
scores in order, so N ranks should approach an N-fold speed-up when scoring
dominates. This script scores the same archs of a supernet (random weights
drawn from the preset's seed; the work per arch does not depend on them) with
the evaluator built from the preset, once in this process and once in N
processes joined by gloo, and checks that both give the same scores. Process
start-up and data loading are outside the timed part, and each rank scores one
warm-up arch first. Prints one JSON line; writes
benchmarks/results/distributed_speed.json.

    python benchmarks/distributed_speed.py --preset quickstart --archs 16 --ranks 2
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import time
from pathlib import Path

import numpy as np
import torch
import torch.multiprocessing as mp

import tamnas
from tamnas import distributed as dist
from tamnas.data import load_data
from tamnas.search.evaluator import Evaluator


def _setup(preset: str, n_archs: int):
    """Evaluator from the preset, the population and a warm-up arch outside it."""
    cfg = tamnas.load_config(preset)
    space = tamnas.build_space(cfg)
    torch.manual_seed(cfg.seed)
    supernet = space.build_supernet().eval()
    data = load_data(cfg.data, cfg.seed)
    evaluator = Evaluator.from_config(cfg, space, supernet, data, torch.device("cpu"))
    rng = np.random.default_rng(cfg.seed)
    archs: dict = {}
    while len(archs) < n_archs + 1:
        archs[space.sample(rng)] = None
    population = list(archs)
    return evaluator, population[:-1], population[-1]


def _timed_scores(preset: str, n_archs: int) -> tuple[float, list[dict]]:
    evaluator, population, warm_up = _setup(preset, n_archs)
    evaluator.score(warm_up)
    dist.barrier()
    tic = time.perf_counter()
    scores = evaluator.evaluate(population)
    return time.perf_counter() - tic, scores


def _rank_main(rank: int, world: int, port: int, preset: str, n_archs: int, queue) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      LOCAL_RANK=str(rank), WORLD_SIZE=str(world))
    torch.set_num_threads(1)
    dist.init_from_env("cpu")
    try:
        seconds, scores = _timed_scores(preset, n_archs)
        if rank == 0:
            queue.put((seconds, scores))
    finally:
        dist.shutdown()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_ranks(preset: str, n_archs: int, world: int) -> tuple[float, list[dict], float]:
    """(timed seconds on rank 0, its scores, wall seconds including process start-up)."""
    ctx = mp.get_context("spawn")
    queue = ctx.SimpleQueue()
    port = _free_port()
    tic = time.perf_counter()
    procs = [ctx.Process(target=_rank_main, args=(r, world, port, preset, n_archs, queue))
             for r in range(world)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    wall = time.perf_counter() - tic
    if any(p.exitcode != 0 for p in procs):
        raise RuntimeError(f"a rank failed (exit codes {[p.exitcode for p in procs]})")
    seconds, scores = queue.get()
    return seconds, scores, wall


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="quickstart")
    p.add_argument("--archs", type=int, default=16)
    p.add_argument("--ranks", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(1)
    one_seconds, one_scores = _timed_scores(args.preset, args.archs)
    n_seconds, n_scores, n_wall = run_ranks(args.preset, args.archs, args.ranks)
    row = {"preset": args.preset, "archs": args.archs, "ranks": args.ranks, "backend": "gloo",
           "threads_per_rank": 1, "cpu_count": os.cpu_count(),
           "one_rank_seconds": round(one_seconds, 3),
           f"{args.ranks}_rank_seconds": round(n_seconds, 3),
           f"{args.ranks}_rank_wall_with_startup_seconds": round(n_wall, 3),
           "speedup": round(one_seconds / n_seconds, 3),
           "same_scores": one_scores == n_scores}
    out = Path(__file__).parent / "results" / "distributed_speed.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(row, indent=2) + "\n")
    print(json.dumps(row))


if __name__ == "__main__":
    main()
