"""Scale-out: two gloo ranks on CPU give the one-process results, write once and resume.

Each test launches its own process group: two spawned processes that get
MASTER_ADDR/MASTER_PORT/RANK/WORLD_SIZE as `torchrun` would set them and join
through `tamnas.distributed.init_from_env`, the same call the CLI makes. The
one-process reference runs in the test process itself. Workers report back
through files in the test's tmp_path; a worker on rank 1 fails loudly if it
tries to write a run file, so "only rank 0 writes" is checked, not assumed.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F
from tolerances import rounding_tolerance
from torch import nn

import tamnas
from tamnas.data import ImageTensorDataset, load_data, make_loader
from tamnas.files import load_checkpoint
from tamnas.rundir import RunDir
from tamnas.supernets.base import Gene, SearchSpace, Supernet

WORLD = 2
DEADLINE_S = 120          # a hung process group fails the test instead of hanging pytest
TIME_COLUMNS = ["eval_seconds", "seconds"]
PRELOAD = ["torch", "pandas", "sklearn.datasets", "tamnas.train", "tamnas.search.nsga2",
           "tamnas.search.evaluator", "test_distributed"]

DATA = {"data.resolution": 8, "data.val_size": 64, "data.train_limit": 96,
        "data.batch_size": 16, "data.eval_batch_size": 64}
SHUFFLE_TINY = {"space.stem_channels": 4, "space.stage_channels": [8, 16],
                "space.stage_layers": [1, 2], "space.head_channels": 16,
                "space.fc_channels": 16, "space.blocks": [0, 3, 6, 18]}


# -- launching a process group --------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _entry(rank: int, world: int, port: int, fn, args: tuple) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      LOCAL_RANK=str(rank), WORLD_SIZE=str(world))
    torch.set_num_threads(1)
    from tamnas import distributed as dist

    assert dist.init_from_env("cpu") and dist.backend() == "gloo"
    assert (dist.rank(), dist.world_size()) == (rank, world)
    if rank != 0:
        _forbid_writes(rank)
    try:
        fn(rank, *args)
    finally:
        dist.shutdown()


def _forbid_writes(rank: int) -> None:
    """Every run file goes through atomic_write_bytes or CsvLog; on rank > 0 both refuse."""
    import tamnas.files
    import tamnas.train

    def refuse(path, *args, **kwargs):
        raise AssertionError(f"rank {rank} wrote {path}; only rank 0 may write run files")

    tamnas.files.atomic_write_bytes = refuse
    tamnas.train.CsvLog._write = lambda self, rows, mode: refuse(self.path)


def launch(fn, *args, world: int = WORLD) -> list[int]:
    """Run fn(rank, *args) on `world` fresh processes in one gloo group; their exit codes."""
    ctx = mp.get_context("forkserver")   # heavy imports once, in a clean server process
    ctx.set_forkserver_preload(PRELOAD)
    port = _free_port()
    procs = [ctx.Process(target=_entry, args=(r, world, port, fn, args)) for r in range(world)]
    for p in procs:
        p.start()
    deadline = time.monotonic() + DEADLINE_S
    while any(p.is_alive() for p in procs) and time.monotonic() < deadline:
        if any(p.exitcode not in (None, 0) for p in procs):  # one died: give the rest a moment
            deadline = min(deadline, time.monotonic() + 10)
        time.sleep(0.05)
    for p in procs:
        if p.is_alive():
            p.kill()
        p.join()
    return [p.exitcode for p in procs]


def assert_ok(codes: list[int]) -> None:
    assert codes == [0] * len(codes), f"worker exit codes {codes} (tracebacks above)"


def assert_same_state(a: dict, b: dict, atol: float = 0.0) -> None:
    assert a.keys() == b.keys()
    for k, value in a.items():
        if atol:
            torch.testing.assert_close(value, b[k], atol=atol, rtol=0, msg=k)
        else:
            assert torch.equal(value, b[k]), k


# -- 0. the data each rank sees ---------------------------------------------------------------------
def test_rank_batches_together_are_the_one_process_batch():
    n, batch = 70, 16                     # 70 = 4 full batches + 6 left over
    ids = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1)
    ds = ImageTensorDataset(ids, torch.zeros(n), resolution=1)
    whole = [x.flatten().long().tolist() for x, _ in
             make_loader(ds, batch, shuffle=True, seed=5, drop_last=True)]
    shards = [[x.flatten().long().tolist() for x, _ in
               make_loader(ds, batch // WORLD, shuffle=True, seed=5, drop_last=True, rank=r,
                           world_size=WORLD)] for r in range(WORLD)]
    assert len(whole) == n // batch and all(len(s) == len(whole) for s in shards)
    for k, images in enumerate(whole):
        parts = [s[k] for s in shards]
        assert all(len(p) == batch // WORLD for p in parts)
        assert sorted(i for p in parts for i in p) == sorted(images)  # same images, no overlap
    assert whole != [sorted(b) for b in whole]                  # and the order is shuffled


# -- 1. training: two ranks == one rank on the concatenated batches ---------------------------------
class PlainSupernet(Supernet):
    """Two choice layers of three convs each and no BatchNorm (see the test's docstring)."""

    def __init__(self, in_channels: int, classes: int, width: int = 6):
        super().__init__()
        self.first_layer = nn.Conv2d(in_channels, width, 3, padding=1, bias=False)
        self.layers = nn.ModuleList(
            nn.ModuleList(nn.Conv2d(width, width, k, padding=k // 2) for k in (1, 3, 5))
            for _ in range(2))
        self.head = nn.Linear(width, classes)

    def forward_from_first(self, h: torch.Tensor, arch) -> torch.Tensor:
        h = F.relu(h)
        for choices, op in zip(self.layers, arch):
            h = F.relu(choices[op](h))
        return self.head(h.mean((2, 3)))


class PlainSpace(SearchSpace):
    name = "plain"

    def __init__(self, in_channels: int = 1, classes: int = 10):
        self.in_channels, self.classes = in_channels, classes
        self.genes = [Gene(f"layer{i}.op", "op", 3, i) for i in range(2)]

    def build_supernet(self) -> PlainSupernet:
        return PlainSupernet(self.in_channels, self.classes)


def plain_cfg():
    return tamnas.load_config("quickstart", {
        **DATA, "train.objective": "standard", "train.phase1_epochs": 1, "train.phase2_epochs": 1,
        "train.batches_per_epoch": 3, "train.lr": 0.2, "train.lr_milestones": [1]})


def _train_plain(rank: int, out: Path) -> dict:
    """train_supernet on PlainSpace (the caller points tamnas.train.build_space at it)."""
    import tamnas.train as train_module

    net = train_module.train_supernet(plain_cfg(), RunDir(out / "run"), torch.device("cpu"),
                                      quiet=True)
    torch.save(net.state_dict(), out / f"rank{rank}.pt")
    return net.state_dict()


# -- 2. search: two ranks == one rank ----------------------------------------------------------------
def search_cfg():
    return tamnas.load_config("quickstart", {
        **DATA, **SHUFFLE_TINY, "search.pop_size": 6, "search.n_offsprings": 6,
        "search.generations": 2, "search.bn_images": 32, "search.eval_images": 24,
        "attack.steps": 2, "search.ood": False})


def _search(out: Path, weights: Path) -> None:
    from tamnas.search.evaluator import Evaluator
    from tamnas.search.nsga2 import NSGA2Search

    cfg = search_cfg()
    space = tamnas.build_space(cfg)
    supernet = space.build_supernet()
    supernet.load_state_dict(torch.load(weights))
    data = load_data(cfg.data, cfg.seed)
    evaluator = Evaluator.from_config(cfg, space, supernet, data, torch.device("cpu"))
    scored, real_score = [], evaluator.score
    evaluator.score = lambda arch: scored.append(arch) or real_score(arch)
    NSGA2Search(space, evaluator, cfg, out, quiet=True).run()
    (out.parent / f"stats-{os.environ.get('RANK', 'alone')}.json").write_text(json.dumps(
        {"evaluations": evaluator.stats["evaluations"], "scored": len(scored)}))


# -- 3. kill and resume -------------------------------------------------------------------------------
def yopo_cfg():
    return tamnas.load_config("quickstart", {
        **DATA, **SHUFFLE_TINY, "train.phase1_epochs": 2, "train.phase2_epochs": 2,
        "train.batches_per_epoch": 2, "train.yopo_m": 2, "train.yopo_n": 1, "train.lr": 0.1})


KILL_AT_STEP = 2 * 2 + 1   # the second batch of epoch 2, after epoch 1's checkpoint


def _train_then_die(rank: int, out: str) -> None:
    """Train the real TRADES-YOPO supernet; rank 0 is SIGKILLed in the middle of epoch 2."""
    import tamnas.train as train_module

    real_build = train_module.build_objective

    def build_objective(*args, **kwargs):
        objective, steps = real_build(*args, **kwargs), [0]
        real_step = objective.step

        def step(*a, **kw):
            if rank == 0 and steps[0] == KILL_AT_STEP:
                os.kill(os.getpid(), signal.SIGKILL)
            steps[0] += 1
            return real_step(*a, **kw)

        objective.step = step
        return objective

    train_module.build_objective = build_objective
    train_module.train_supernet(yopo_cfg(), RunDir(out), torch.device("cpu"), quiet=True)


def _resume_and_reference(rank: int, root: Path) -> None:
    from tamnas.train import train_supernet

    for name in ("killed", "reference"):
        net = train_supernet(yopo_cfg(), RunDir(root / name), torch.device("cpu"), quiet=True)
        torch.save(net.state_dict(), root / f"{name}-rank{rank}.pt")


def _all_jobs(rank: int, root: str) -> None:
    """What the tests below need from one two-rank group (spawning costs seconds per group)."""
    import tamnas.train as train_module

    root = Path(root)
    real_build_space, train_module.build_space = train_module.build_space, lambda c: PlainSpace()
    _train_plain(rank, root / "train" / "two")
    train_module.build_space = real_build_space
    _search(root / "search" / "two" / "search", root / "search" / "supernet.pt")
    _resume_and_reference(rank, root / "resume")
    if rank == 0:
        _alone_on_rank_zero(root)


def _alone_on_rank_zero(root: Path) -> None:
    """Rank 0 works alone (as for plots) while rank 1 has left: no collective may wait."""
    from tamnas import distributed as dist

    with dist.local_only():
        seen = (dist.rank(), dist.world_size(), dist.shard([5, 6, 7]),
                dist.gather_sharded([5, 6, 7], 3), dist.broadcast_object("x"))
        dist.barrier()
    seen += (dist.is_distributed(), dist.world_size())
    (root / "alone.json").write_text(json.dumps(seen))


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory) -> dict:
    """Two process groups: one killed in the middle of training, then one for everything else."""
    root = tmp_path_factory.mktemp("dist")
    for sub in ("train/two", "search/two", "resume"):
        (root / sub).mkdir(parents=True)
    torch.manual_seed(3)
    torch.save(tamnas.build_space(search_cfg()).build_supernet().state_dict(),
               root / "search" / "supernet.pt")
    killed = root / "resume" / "killed"
    kill_codes = launch(_train_then_die, str(killed))
    at_kill = {"epoch": load_checkpoint(RunDir(killed).supernet_checkpoint, "supernet")["epoch"]
               if RunDir(killed).supernet_checkpoint.exists() else None,
               "log": list(pd.read_csv(RunDir(killed).supernet_log)["epoch"])
               if RunDir(killed).supernet_log.exists() else None}
    if RunDir(killed).root.exists():
        shutil.copytree(killed, root / "resume" / "one-rank")
    codes = launch(_all_jobs, str(root))
    return {"root": root, "kill_codes": kill_codes, "at_kill": at_kill, "codes": codes}


def test_two_ranks_train_like_one_rank_on_the_whole_batch(two_ranks, monkeypatch):
    """Two ranks of 8 images == one process of 16, through the real `train_supernet`.

    The path is production's: `train_supernet` -> `run_epochs` -> the rank-sharded
    `_train_loader` -> the objective's backward -> `GradAveragingSGD.step`, with
    a new subnet drawn every batch from the shared seed. Only the model is
    BatchNorm-free: BatchNorm in train mode normalises each rank's half batch
    on its own, which changes the gradient by more than rounding, whereas
    without it the mean loss over 16 images is exactly the average of the two
    ranks' 8-image means, so averaged gradients must give the one-process
    weights to float tolerance. The standard objective draws no random numbers.
    """
    import tamnas.train as train_module

    assert_ok(two_ranks["codes"])
    two = two_ranks["root"] / "train" / "two"
    monkeypatch.setattr(train_module, "build_space", lambda cfg: PlainSpace())
    one = _train_plain(0, two_ranks["root"] / "train")

    r0, r1 = (torch.load(two / f"rank{r}.pt") for r in range(WORLD))
    assert_same_state(r0, r1)                                   # one model on every rank
    saved = load_checkpoint(two / "run" / "supernet" / "checkpoint.pt", "supernet")
    assert saved["epoch"] == 2
    assert_same_state(saved["model"], r0)
    # two ranks sum each batch's gradient in another order: 6 SGD steps, each a sum over the
    # batch's 16 x 8 x 8 pixels, round differently at the weights' scale
    scale = max(one[k].abs().max().item() for k in one)
    tol = rounding_tolerance(scale, terms=16 * 8 * 8, depth=6)
    assert_same_state(r0, one, atol=tol)
    init = PlainSpace().build_supernet().state_dict()
    moved = max((one[k] - init[k]).abs().max().item() for k in one)
    assert moved > 100 * tol                                    # training did move the weights

    two_log = pd.read_csv(two / "run" / "supernet" / "train_log.csv")
    one_log = pd.read_csv(two_ranks["root"] / "train" / "run" / "supernet" / "train_log.csv")
    assert list(two_log["batches"]) == list(one_log["batches"]) == [3, 3]
    # an epoch's mean loss: 3 batches of 16 images, each through the net's reductions
    loss_tol = rounding_tolerance(float(one_log["loss"].abs().max()), terms=3 * 16 * 8 * 8,
                                  depth=6)
    np.testing.assert_allclose(two_log["loss"], one_log["loss"], rtol=0, atol=loss_tol)
    # accuracies are means of per-batch fractions k / 16: only the averaging rounds
    np.testing.assert_allclose(two_log["clean_acc"], one_log["clean_acc"], rtol=0,
                               atol=rounding_tolerance(1.0, terms=2 * 3, depth=2))


def test_two_rank_search_matches_one_rank_and_only_rank_zero_writes(two_ranks):
    assert_ok(two_ranks["codes"])
    root = two_ranks["root"] / "search"
    (root / "one").mkdir()
    _search(root / "one" / "search", root / "supernet.pt")

    one, two = root / "one" / "search", root / "two" / "search"
    assert sorted(p.name for p in one.iterdir()) == sorted(p.name for p in two.iterdir())
    a1, a2 = (json.loads((d / "archive.json").read_text()) for d in (one, two))
    cfg = search_cfg()
    assert len(a1["entries"]) >= cfg.search.pop_size + cfg.search.n_offsprings
    assert a1 == a2                             # same archs, same scores, same order
    assert json.loads((one / "front.json").read_text()) == \
        json.loads((two / "front.json").read_text())
    pd.testing.assert_frame_equal(pd.read_csv(one / "population.csv"),
                                  pd.read_csv(two / "population.csv"))
    g1, g2 = (pd.read_csv(d / "generations.csv").drop(columns=TIME_COLUMNS) for d in (one, two))
    pd.testing.assert_frame_equal(g1, g2)
    # Scores differ between archs, so equal archives mean the gathered order was right.
    assert len({e["scores"]["params"] for e in a1["entries"]}) > 1
    # Each rank scored its share only, and learnt every score.
    stats = [json.loads((root / "two" / f"stats-{r}.json").read_text()) for r in range(WORLD)]
    assert all(s["evaluations"] == len(a1["entries"]) for s in stats)
    assert sum(s["scored"] for s in stats) == len(a1["entries"])
    assert all(s["scored"] < len(a1["entries"]) for s in stats)


def test_local_only_lets_rank_zero_work_alone(two_ranks):
    assert_ok(two_ranks["codes"])
    seen = json.loads((two_ranks["root"] / "alone.json").read_text())
    assert seen == [0, 1, [5, 6, 7], [5, 6, 7], "x", True, WORLD]


def test_killed_two_rank_run_resumes_on_two_ranks_or_one(two_ranks):
    codes = two_ranks["kill_codes"]
    assert codes[0] == -signal.SIGKILL and codes[1] != 0    # rank 1 lost its peer
    assert two_ranks["at_kill"] == {"epoch": 2, "log": [0, 1]}
    assert_ok(two_ranks["codes"])
    root = two_ranks["root"] / "resume"
    run, reference = RunDir(root / "killed"), RunDir(root / "reference")

    resumed = [torch.load(root / f"killed-rank{r}.pt") for r in range(WORLD)]
    uninterrupted = torch.load(root / "reference-rank0.pt")
    assert_same_state(resumed[0], resumed[1])                   # ranks agree, BN buffers too
    assert_same_state(resumed[0], uninterrupted)                # as if never killed
    state = load_checkpoint(run.supernet_checkpoint, kind="supernet")
    assert state["epoch"] == 4
    assert_same_state(state["model"], resumed[0])
    log = pd.read_csv(run.supernet_log)
    assert list(log["epoch"]) == [0, 1, 2, 3]
    pd.testing.assert_frame_equal(log.drop(columns="seconds"),
                                  pd.read_csv(reference.supernet_log).drop(columns="seconds"))

    # The killed run's checkpoint also continues on one process (per-rank batch 16, not 8).
    from tamnas.train import train_supernet

    one_rank = RunDir(root / "one-rank")
    net = train_supernet(yopo_cfg(), one_rank, torch.device("cpu"), quiet=True)
    single = load_checkpoint(one_rank.supernet_checkpoint, kind="supernet")
    assert single["epoch"] == 4
    assert_same_state(single["model"], net.state_dict())
    assert list(pd.read_csv(one_rank.supernet_log)["epoch"]) == [0, 1, 2, 3]
    assert all(torch.isfinite(v).all() for v in single["model"].values() if v.is_floating_point())
    # It went on from the two-rank epoch-2 state: its first two log rows are that run's.
    pd.testing.assert_frame_equal(pd.read_csv(one_rank.supernet_log).head(2), log.head(2))
    differs = [k for k, v in single["model"].items() if v.is_floating_point()
               and not torch.equal(v, state["model"][k])]
    assert differs                                              # then it saw other batches


@pytest.mark.parametrize("world_size", ["x", "2"])
def test_init_from_env_names_what_is_missing(world_size, monkeypatch):
    from tamnas import distributed as dist

    monkeypatch.setenv("WORLD_SIZE", world_size)
    for name in ("RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ValueError, match="WORLD_SIZE"):
        dist.init_from_env("cpu")
    assert not dist.is_distributed()


def test_single_process_helpers_are_no_ops():
    from tamnas import distributed as dist

    assert not dist.is_distributed() and dist.rank() == 0 and dist.world_size() == 1
    assert dist.shard([3, 1, 2]) == [3, 1, 2] and dist.gather_sharded([3, 1], 2) == [3, 1]
    net = nn.Linear(2, 2)
    net(torch.ones(1, 2)).sum().backward()
    grad = net.weight.grad.clone()
    dist.allreduce_gradients(list(net.parameters()))
    dist.average_buffers(nn.BatchNorm1d(2))
    assert torch.equal(net.weight.grad, grad)
    assert dist.average_metrics({"loss": 3.0}, 2) == {"loss": 3.0}
