"""`tamnas compare`: at a size budget, is a front member worth more than what no search gives?

Per budget four groups are trained standalone with the run's retrain recipe
for `--seeds` seeds (`analysis.compare_groups` chooses them): the best front
members, random archs matched to their sizes, the picks of `--search-seeds`
random searches with the run's number of evaluations (one pick per search,
each search its own seed), and the plain net at the budget. All
are scored on the same test images under the same attack (one fixed random
start), and `analysis.compare` turns the per-image results into differences
with intervals and a verdict. Every training has its folder
compare/train/KEY-sSEED (recipe.json, checkpoint, scores.json, wrong.npz);
finished ones are read back, so a killed compare continues where it stopped.
Under torchrun the trainings are shared out over the ranks (each trains its
nets alone) and rank 0 writes the results: `torchrun --nproc_per_node 2 -m
tamnas compare ...` halves the wall time on two cores.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import io
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from tamnas import distributed as dist
from tamnas.analysis.compare_groups import Member, front_picks, matched_archs, random_search_pick
from tamnas.analysis.selector import BUDGET_HELP, budget_label, parse_budget
from tamnas.commands import ON_WEIGHTS, Call, command
from tamnas.config import Config
from tamnas.files import atomic_write_bytes, atomic_write_json, read_json, save_checkpoint
from tamnas.session import Session, open_run, require_finished, say

DIR_NAME = "compare"


def check_request(budgets: list[str], seeds: int, picks: int, random_archs: int,
                  searches: int = 1) -> None:
    """The command-line numbers and budgets, checked before any work starts."""
    if not budgets:
        raise ValueError(f"give at least one --budget, e.g. --budget \"params<=2000\" "
                         f"({BUDGET_HELP})")
    for text in budgets:
        parse_budget(text)
    if seeds < 1 or picks < 1 or random_archs < 0 or searches < 1:
        raise ValueError(f"--seeds {seeds}, --picks {picks}, --random-archs {random_archs}, "
                         f"--search-seeds {searches}: seeds, picks and search seeds must be at "
                         "least 1, random archs at least 0")


def run_front(session: Session) -> pd.DataFrame:
    """The front of the run's own strategy (the archs another strategy visited left out)."""
    session.require_search()
    return session.front()


def search_evaluations(session: Session) -> int:
    """How many archs the search that made the front scored (the archs its strategy visited)."""
    from tamnas.search.archive import visited_by

    frame = session.archive.frame()
    visited = int(visited_by(frame, session.cfg.search.strategy).sum())
    return visited or len(frame)  # an archive older than strategy records: all of it


def random_search_frame(session: Session, n_evals: int, root: Path, quiet: bool,
                        index: int = 0) -> tuple[pd.DataFrame, str]:
    """The first `n_evals` archs random search number `index` scored on the run's weights, and
    where they came from. Search 0 is the run's own random search when one ran there (seed
    `seed`), else one run now into `root`; search k > 0 is always run here, with seed
    `seed + k`, so the searches are independent draws of what a random search finds."""
    from tamnas.search.archive import Archive, visited_by
    from tamnas.search.evaluator import Evaluator
    from tamnas.search.strategy import get_strategy

    if index == 0:
        frame = session.archive.frame()
        own = frame[visited_by(frame, "random") & (frame["weights"] == session.fingerprint)]
        if len(own) >= n_evals:
            return own.sort_values("order").head(n_evals), "the run's random search"
    if (root / "archive.json").is_file() and Archive.load(root).fingerprint not in (
            None, session.fingerprint):
        from tamnas.rundir import move_aside

        if dist.is_main():
            moved = move_aside(session.run, (f"{DIR_NAME}/{root.name}",))
            say(f"note: {root} was scored on another supernet checkpoint; moved it to {moved}",
                quiet)
        dist.barrier()  # every rank sees the old search gone before the new one starts
    cfg = copy.deepcopy(session.cfg)
    cfg.search.strategy = "random"
    archive = Archive(session.space.name, session.space.n_genes, session.fingerprint)
    evaluator = Evaluator.from_config(cfg, session.space, session.supernet, session.data,
                                      session.device, archive=archive)
    say(f"compare: random search {index + 1} with {n_evals} evaluations -> {root}", quiet)
    get_strategy("random")(session.space, evaluator, cfg, root, seed=cfg.seed + index,
                           quiet=quiet).run()
    frame = archive.frame()
    return frame.sort_values("order").head(n_evals), f"a random search run by compare ({root})"


def random_search_frames(session: Session, n_evals: int, searches: int,
                         quiet: bool) -> tuple[list[pd.DataFrame], list[str]]:
    """Every random search's scored archs and source: compare/random-search for the first,
    compare/random-search-sK for search K."""
    found = [random_search_frame(session, n_evals, session.run.compare_dir /
                                 ("random-search" if k == 0 else f"random-search-s{k}"),
                                 quiet, index=k) for k in range(searches)]
    return [f for f, _ in found], [source for _, source in found]


def plan(session: Session, budgets: list[str], picks: int, random_archs: int,
         random_frames: list[pd.DataFrame], quiet: bool = False) -> dict[str, list[Member]]:
    """Every budget's members (budget label -> members); ValueError before any training.
    Each random search adds its own pick (two searches may pick the same arch: that is a
    draw of what random search finds, and counts twice). Under a latency budget the plain
    net is timed here (rank 0; the others read its width)."""
    from tamnas.analysis.compare_plain import WIDTHS_FILE, plain_member

    front = run_front(session)
    n = session.space.n_genes
    if session.space.has_cost("latency"):
        from tamnas.latency.table import with_latency  # scored before the run had its table

        random_frames = [f if "latency" in f.columns else with_latency(session.space, f)
                         for f in random_frames]
    out = {}
    for k, text in enumerate(budgets):
        constraints = parse_budget(text)
        label = budget_label(constraints)
        chosen = front_picks(front, constraints, picks, n)
        rng = np.random.default_rng([int(session.cfg.seed), 0xC0A7, k])
        members = [*chosen, *matched_archs(session.space, chosen, random_archs, constraints, rng),
                   *(random_search_pick(f, constraints, n, search=j)
                     for j, f in enumerate(random_frames))]
        if session.space.has_cost("latency"):
            members = [dataclasses.replace(m, latency_ms=session.space.cost("latency", m.arch))
                       for m in members]
        plain: Member | ValueError | None = None
        if dist.is_main():
            try:
                plain = plain_member(session, constraints, session.run.compare_dir / WIDTHS_FILE,
                                     # notes print under --quiet too: they change results
                                     lambda line: say(line, quiet and not line.startswith("note:")))
            except ValueError as err:   # raised on every rank, not just this one
                plain = err
        plain = dist.broadcast_object(plain)
        if isinstance(plain, ValueError):
            raise plain
        out[label] = members + ([plain] if plain is not None else [])
    return out


# -- one training ------------------------------------------------------------------------
def unit_recipe(cfg: Config, member: Member, seed_index: int, n_test: int) -> dict:
    from tamnas.train import standalone_recipe

    arch = member.arch if member.arch is not None else ()
    recipe = {**standalone_recipe(cfg, arch, cfg.seed + seed_index), "test_images": n_test}
    if member.width is not None:
        recipe["plain_width"] = member.width
    return recipe


def test_attack(cfg: Config):
    """The attack every compared net faces, with one fixed random start (a fresh generator)."""
    from tamnas.attacks import Attack

    attack = Attack.from_config(cfg.attack)
    if dataclasses.is_dataclass(attack) and hasattr(attack, "generator"):
        attack = dataclasses.replace(attack, generator=torch.Generator().manual_seed(cfg.seed + 41))
    return attack


def _load(folder: Path, want: dict) -> dict | None:
    try:
        scores = read_json(folder / "scores.json", "") if (folder / "scores.json").is_file() \
            else None
    except ValueError:
        return None
    if scores is None or scores.get("recipe") != want or not (folder / "wrong.npz").is_file():
        return None
    with np.load(folder / "wrong.npz") as z:
        scores["clean_wrong"], scores["adv_wrong"] = z["clean"], z["adv"]
    return scores


def train_unit(session: Session, member: Member, seed_index: int, folder: Path,
               test: tuple[torch.Tensor, torch.Tensor], resume: bool, quiet: bool) -> dict:
    """Train one net (resuming its checkpoint under the same recipe); score it on the test images."""
    from tamnas.attacks import error_masks
    from tamnas.supernets.plain import PlainNet
    from tamnas.train import retrain

    want = unit_recipe(session.cfg, member, seed_index, len(test[1]))
    same = (folder / "recipe.json").is_file() and read_json(folder / "recipe.json", "") == want
    cfg = copy.deepcopy(session.cfg)
    cfg.seed = session.cfg.seed + seed_index
    atomic_write_json(folder / "recipe.json", want)
    info = session.data.info
    build = None if member.width is None else (
        lambda: PlainNet(member.width, info.in_channels, info.num_classes, info.mean, info.std))
    tic = time.perf_counter()
    net = retrain(cfg, session.space, member.arch, folder, session.device, data=session.data,
                  resume=resume and same, quiet=quiet, build=build)
    save_checkpoint(folder / "model.pt", net.state_dict(), kind="standalone_weights")
    clean, adv, _ = error_masks(net, test[0], test[1], test_attack(session.cfg),
                                session.cfg.data.eval_batch_size, session.device)
    clean, adv = clean.cpu().numpy(), adv.cpu().numpy()
    buf = io.BytesIO()
    np.savez_compressed(buf, clean=clean, adv=adv)
    atomic_write_bytes(folder / "wrong.npz", buf.getvalue())
    result = {"key": member.key, "seed_index": seed_index, "params": member.params,
              "clean_acc": 1 - float(clean.mean()), "adv_acc": 1 - float(adv.mean()),
              "n_test": len(clean), "seconds": round(time.perf_counter() - tic, 1),
              "recipe": want}
    atomic_write_json(folder / "scores.json", result)
    return {**result, "clean_wrong": clean, "adv_wrong": adv}


def train_all(session: Session, members: list[Member], seeds: int, root: Path, resume: bool,
              quiet: bool, test) -> dict[tuple[str, int], dict]:
    """Every (member, seed) result, seed-major so every net gets its first seed first; under
    torchrun the trainings still to do are shared out over the ranks."""
    from tamnas.progress import counter, progress

    unique = list({m.key: m for m in members}.values())
    units = [(m, s) for s in range(seeds) for m in unique]
    results, todo = {}, []
    for m, s in units:
        want = unit_recipe(session.cfg, m, s, len(test[1]))
        found = _load(root / f"{m.key}-s{s}", want) if resume else None
        if found is not None:
            results[m.key, s] = found
        else:
            todo.append((m, s))
    dist.barrier()  # every rank has read what is done before any rank writes a new result
    ranks, quiet = dist.world_size(), quiet or not dist.is_main()
    say(f"compare: {len(units) - len(todo)} of {len(units)} trainings done already, "
        f"{len(todo)} to go ({session.cfg.retrain.epochs} epochs each"
        f"{f', on {ranks} ranks' if ranks > 1 else ''}) -> {root}", quiet)
    mine, local = dist.shard(todo), []   # shared out before local_only, which hides the ranks
    done = len(units) - len(todo)
    bar = progress(mine, desc="compare", disable=quiet, initial=done,
                   total=done + len(mine), unit="training")
    start = time.monotonic()
    with dist.local_only():   # each rank trains its nets alone: no gradient averaging
        for k, (m, s) in enumerate(bar):
            which = (f"{done + k + 1} of {len(units)}" if ranks == 1 else
                     f"{k + 1} of rank 0's {len(mine)} ({len(todo)} on {ranks} ranks)")
            say(f"compare: training {which} ({counter(k + 1, len(mine), start)} in this call): "
                f"{m.group} {m.key} seed {s}", quiet)
            local.append(train_unit(session, m, s, root / f"{m.key}-s{s}", test, resume,
                                    quiet=True))
    for (m, s), result in zip(todo, dist.gather_sharded(local, len(todo))):
        results[m.key, s] = result
    return results


def compare(cfg: Config, run_dir: str | Path, *, budgets: list[str], seeds: int = 2,
            picks: int = 2, random_archs: int = 5, searches: int = 1,
            test_images: int | None = None,
            device: torch.device, quiet: bool = False, resume: bool = True,
            partial: bool = False) -> dict | None:
    """Train and compare the groups at every budget; compare.json's contents (rank 0)."""
    from tamnas.analysis.compare_report import compute_cost, summarise, write_outputs
    from tamnas.analysis.report import write_report
    from tamnas.rundir import move_aside, writing

    check_request(budgets, seeds, picks, random_archs, searches)
    run = open_run(run_dir)
    if not partial:
        require_finished(cfg, run)
    with writing(run.root, "tamnas compare", DIR_NAME, enabled=dist.is_main()):
        session = Session.open(cfg, run, device, quiet=quiet, partial=partial)
        front = run_front(session)
        for text in budgets:  # every budget refused before anything is written
            front_picks(front, parse_budget(text), picks, session.space.n_genes)
        if not resume and run.compare_dir.exists() and dist.is_main():
            say(f"note: --no-resume: moved the old comparison to {move_aside(run, (DIR_NAME,))}",
                quiet)
        dist.barrier()
        n_evals = search_evaluations(session)
        random_frames, sources = random_search_frames(session, n_evals, searches, quiet)
        groups = plan(session, budgets, picks, random_archs, random_frames, quiet)
        test = session.test_tensors(test_images)
        members = [m for ms in groups.values() for m in ms]
        results = train_all(session, members, seeds, run.compare_dir / "train", resume, quiet,
                            test)
        if not dist.is_main():
            return None
        settings = {"seeds": seeds, "picks": picks, "random_archs": random_archs,
                    "test_images": len(test[1]), "retrain_epochs": cfg.retrain.epochs,
                    "attack": cfg.to_dict()["attack"], "search_evaluations": n_evals,
                    "search_seeds": searches, "random_search": "; ".join(sources),
                    "random_search_evaluations": min(len(f) for f in random_frames),
                    "supernet_fingerprint": session.fingerprint}
        blob = summarise(groups, results, seeds, settings, compute_cost(run, cfg))
        write_outputs(run, blob, groups, results, cfg.output.formats)
        write_report(run)
    say("\n".join(blob["lines"]), quiet)
    return blob


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--budget", action="append", default=[], metavar="BUDGET",
                   help=f"a size budget, quoted ({BUDGET_HELP}); repeat for several")
    p.add_argument("--seeds", type=int, default=2, metavar="S",
                   help="training seeds per net (default: 2; 3 or more narrow the intervals)")
    p.add_argument("--picks", type=int, default=2, metavar="P",
                   help="front members per budget, best by inherited PGD error (default: 2)")
    p.add_argument("--random-archs", type=int, default=5, metavar="R",
                   help="random archs per budget, matched to the picks' params +-5%% "
                        "(default: 5)")
    p.add_argument("--search-seeds", type=int, default=1, metavar="K",
                   help="random searches of the search's size, each with its own seed; each "
                        "one's best arch under a budget joins the random-search group (default: "
                        "1; with 3 or more that comparison gets an interval over searches)")
    p.add_argument("--test-images", type=int, default=None, metavar="N",
                   help="score on the first N test images of the run's fixed draw (default: all)")


@command("compare", "does the search pay off? front picks against random archs, random search "
         "and a plain net at a size budget", "run", arguments=_arguments, options=ON_WEIGHTS,
         check=lambda a: check_request(a.budget, a.seeds, a.picks, a.random_archs,
                                       a.search_seeds))
def main(call: Call) -> dict:
    a = call.args
    return compare(call.cfg, a.run, budgets=a.budget, seeds=a.seeds, picks=a.picks,
                   random_archs=a.random_archs, searches=a.search_seeds,
                   test_images=a.test_images, device=call.device,
                   quiet=call.quiet, resume=call.resume, partial=a.partial_supernet)
