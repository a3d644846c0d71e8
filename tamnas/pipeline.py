"""The one place where space, data, training, evaluator, strategy and analysis meet.

Each CLI command is one function here. A stage whose outputs are complete is
skipped, a partial one resumes; `run_all` chains the main job.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from tamnas import distributed as dist
from tamnas.checkpoint import (
    NOT_TRAINING_KEYS,
    TRAINING_SECTIONS,
    RunDir,
    RunLock,
    atomic_write_json,
    check_fresh,
    is_fresh,
    load_checkpoint,
    move_results_aside,
    record_training_settings,
    recorded_training_settings,
    stamp,
    supernet_fingerprint,
    training_settings,
)
from tamnas.config import Config, load_run_config, save_config

log = logging.getLogger("tamnas")



def _say(message: str, quiet: bool = False) -> None:
    if dist.is_main() and not quiet:
        print(message, flush=True)


def _settings_diff(saved: dict, now: dict) -> list[str]:
    """Differences between two `training_settings` dicts, as `section.key: old -> new`."""
    diff = [f"seed: {saved.get('seed')!r} -> {now['seed']!r}"] if saved.get("seed") != now["seed"] \
        else []
    for s in TRAINING_SECTIONS:
        old = saved.get(s, {})
        diff += [f"{s}.{k}: {old.get(k)!r} -> {v!r}" for k, v in now[s].items()
                 if k not in NOT_TRAINING_KEYS and old.get(k) != v]
    return diff


_HELD: dict[Path, list] = {}


@contextlib.contextmanager
def writing(root: str | Path, command: str = "tamnas") -> Iterator[None]:
    """Hold the run directory's lock while a command writes (re-entrant within one process)."""
    root = Path(root).expanduser()
    if root.exists() and not root.is_dir():
        raise ValueError(f"{root} is a file, not a run directory; choose another --out")
    key = root.resolve()
    if not dist.is_main() or key in _HELD:  # rank 0 holds it for the job; nested stages share it
        yield
        return
    root.mkdir(parents=True, exist_ok=True)
    lock = RunLock(root, command).acquire()
    _HELD[key] = [lock]
    try:
        yield
    finally:
        del _HELD[key]
        lock.release()


def preflight(cfg: Config) -> None:
    """Everything checkable before the first epoch: the space builds, the ranges hold archs."""
    from tamnas.supernets import build_space

    space = build_space(cfg)
    lo, hi = space.params_bounds()
    for key, r in (("train.params_range_phase1", cfg.train.params_range_phase1),
                   ("train.params_range_phase2", cfg.train.params_range_phase2),
                   ("search.params_range", cfg.search.params_range)):
        if r[1] > 0 and (r[1] < lo or r[0] > hi):
            raise ValueError(f"{key}: {list(r)} holds no arch of this space, whose archs have "
                             f"{lo:,}-{hi:,} params; choose a range that overlaps it")


def prepare_run(cfg: Config, out: str | Path, resume: bool, quiet: bool = False) -> RunDir:
    """Create the run directory and write the resolved config; refuse to mix settings on resume.

    `resume=False` moves the results already there into `previous/N/` rather than
    overwriting them, so a new run starts clean and nothing stale survives.
    """
    run = RunDir(out)
    if run.config.exists() and resume and run.supernet_checkpoint.exists():
        saved = recorded_training_settings(run)
        diff = _settings_diff(saved, training_settings(cfg)) if saved is not None else []
        if diff:
            raise ValueError(f"{run.root} holds a run with other training settings ({diff[0]}"
                             f"{' ...' if len(diff) > 1 else ''}); pass --no-resume to start over "
                             "or choose another --out")
    if dist.is_main():
        run.ensure()
        if not resume:
            moved = move_results_aside(run)
            if moved is not None:
                _say(f"note: --no-resume: moved the previous results of {run.root} to {moved}")
        if not run.supernet_checkpoint.exists():
            run.supernet_dir.mkdir(parents=True, exist_ok=True)
            record_training_settings(run, cfg)
        save_config(cfg, run.config)
    dist.barrier()
    return run


def open_run(cfg: Config, run_dir: str | Path) -> RunDir:
    """A run directory to read; writes nothing (see `record_config`)."""
    run = RunDir(run_dir)
    if not run.config.exists():
        raise FileNotFoundError(f"{run_dir} is not a tamnas run directory (no config.toml)")
    return run


def record_config(cfg: Config, run: RunDir) -> None:
    """Keep a writing stage's --set overrides on record, once they have proved usable."""
    if dist.is_main() and load_run_config(run.config).to_dict() != cfg.to_dict():
        save_config(cfg, run.config)


# --- stages -----------------------------------------------------------------------------
def space_info(cfg: Config, n_samples: int = 500) -> str:
    from tamnas.supernets import build_space
    from tamnas.supernets.info import format_space_info
    from tamnas.supernets.info import space_info as _info
    from tamnas.train import SamplingSchedule

    space = build_space(cfg)
    schedule = SamplingSchedule(space, cfg.train, tuple(cfg.space.ratios))
    return format_space_info(_info(space, np.random.default_rng(cfg.seed), n_samples=n_samples,
                                   schedule=schedule))


def supernet_epochs_done(run: RunDir) -> int:
    if not run.supernet_checkpoint.exists():
        return 0
    return int(load_checkpoint(run.supernet_checkpoint, kind="supernet")["epoch"])


def train_stage(cfg: Config, out: str | Path, *, device: torch.device, quiet: bool = False,
                resume: bool = True, data=None) -> RunDir:
    from tamnas.data import load_data
    from tamnas.train import train_supernet

    preflight(cfg)
    data = data if data is not None else load_data(cfg.data, cfg.seed)  # before any file exists
    with writing(out, "tamnas train-supernet"):
        run = prepare_run(cfg, out, resume, quiet)
        total = cfg.train.phase1_epochs + cfg.train.phase2_epochs
        done = supernet_epochs_done(run) if resume else 0
        if total == 0:  # no one-shot stage (the DARTS presets): the MGDA search trains the weights
            if not run.supernet_checkpoint.exists():
                _initial_supernet(cfg, run)
            _say("supernet: no one-shot training (train.phase1/2_epochs = 0); the search trains "
                 "the weights from their initial values", quiet)
            return run
        if done >= total:
            _say(f"supernet: complete ({done} epochs) in {run.supernet_checkpoint}", quiet)
            return run
        _say(f"supernet: training epochs {done + 1}-{total} on {device} -> {run.supernet_dir}",
             quiet)
        train_supernet(cfg, run, device, data=data, resume=resume, quiet=quiet)
    return run


def _initial_supernet(cfg: Config, run: RunDir) -> None:
    """The supernet checkpoint at epoch 0: seeded initial weights for a search that trains them."""
    from tamnas.checkpoint import save_checkpoint
    from tamnas.supernets import build_space

    torch.manual_seed(cfg.seed)
    net = build_space(cfg).build_supernet()
    if dist.is_main():
        save_checkpoint(run.supernet_checkpoint, {"model": net.state_dict(), "epoch": 0},
                        kind="supernet")
    dist.barrier()


class Context:
    """The trained supernet, its space, data and evaluator of one run, built once per command."""

    def __init__(self, cfg: Config, run: RunDir, device: torch.device, quiet: bool,
                 resume: bool = True, data=None, stale: str = "refuse", searched: bool = True):
        """`stale`: what to do with search results of another supernet checkpoint
        ("refuse" with one line, or "rebuild": move them to previous/N and start afresh).
        `searched`: without a one-shot stage, the weights an MGDA search trained
        (search/supernet.pt) are the run's supernet, when present."""
        from tamnas.data import load_data
        from tamnas.search.archive import Archive
        from tamnas.search.evaluator import Evaluator
        from tamnas.train import load_trained_supernet

        self.cfg, self.run, self.device, self.quiet = cfg, run, device, quiet
        self.space, self.supernet = load_trained_supernet(cfg, run, device)
        self.fingerprint = supernet_fingerprint(run)
        searched_weights = None   # fingerprint of search/supernet.pt when those weights are used
        if searched and cfg.train.phase1_epochs + cfg.train.phase2_epochs == 0:
            from tamnas.search.mgda import load_searched

            searched_weights = load_searched(run.root / "search", self.supernet)
        self.data = data if data is not None else load_data(cfg.data, cfg.seed)
        search_dir = run.root / "search"
        archive = None
        if resume and (search_dir / "archive.json").exists():
            archive = Archive.load(search_dir)
            if archive.fingerprint not in (None, self.fingerprint):
                if stale != "rebuild":
                    check_fresh({"supernet_fingerprint": archive.fingerprint}, self.fingerprint,
                                name=f"{search_dir / 'archive.json'}",
                                fix=f"run `tamnas search {run.root}` to score it again")
                dist.barrier()  # every rank has read the archive before rank 0 moves it
                moved = move_results_aside(run, ("search",)) if dist.is_main() else None
                dist.barrier()
                _say(f"note: the archive was scored on another supernet checkpoint; moved it "
                     f"to {moved} and scoring afresh")
                archive = None
        if archive is None:
            archive = Archive(self.space.name, self.space.n_genes)
        archive.fingerprint = self.fingerprint
        self.evaluator = Evaluator.from_config(cfg, self.space, self.supernet, self.data, device,
                                               archive=archive, quiet=quiet)
        if searched_weights is not None:   # scores made now name the weights really loaded
            self.evaluator.weights = searched_weights

    @property
    def archive(self):
        return self.evaluator.archive


def search_stage(cfg: Config, run_dir: str | Path, *, strategy: str | None = None,
                 targets: list[float] | None = None, device: torch.device, quiet: bool = False,
                 resume: bool = True, data=None) -> pd.DataFrame:
    from tamnas.analysis.stats import arch_labels
    from tamnas.search.nsga2 import format_front_table

    run = open_run(cfg, run_dir)
    preflight(cfg)
    with writing(run.root, "tamnas search"):
        recorded = cfg  # --set overrides go on record; --strategy/--targets stay one-off
        if strategy is not None or targets is not None:
            cfg = copy.deepcopy(cfg)
            cfg.search.strategy = strategy or cfg.search.strategy
            if targets is not None:
                cfg.search.mgda_targets = list(targets)
        # MGDA trains the weights itself, from the supernet checkpoint; NSGA-II scores searched ones.
        ctx = Context(cfg, run, device, quiet, resume, data, stale="rebuild",
                      searched=cfg.search.strategy != "mgda")
        if not resume and dist.is_main():
            moved = move_results_aside(run, ("search",))
            if moved is not None:
                _say(f"note: --no-resume: moved the previous search results to {moved}")
        strategy_cls = _strategy(cfg.search.strategy)
        search = strategy_cls(ctx.space, ctx.evaluator, cfg, run.search_dir, seed=cfg.seed,
                              quiet=quiet, resume=resume)
        record_config(recorded, run)
        _say(f"search: {cfg.search.strategy} over {ctx.space.name} -> {run.search_dir}", quiet)
        front = search.run()
        if dist.is_main():
            stamp(run.search_dir / "front.json", ctx.fingerprint)
    s = ctx.evaluator.stats
    _say(f"search: {len(ctx.archive)} archs in the archive, {s['evaluations']} scored now, "
         f"{s['cache_hits']} cache hits, {s['seconds']:.1f} s scoring", quiet)
    _say(format_front_table(front, cfg.search.objectives,
                            layers=arch_labels(ctx.space, front)), quiet)
    return front


def _strategy(name: str):
    if name == "nsga2":
        from tamnas.search.nsga2 import NSGA2Search

        return NSGA2Search
    from tamnas.search.mgda import MGDASearch

    return MGDASearch


def _load_search(run: RunDir):
    from tamnas.search.archive import Archive

    if not (run.root / "search" / "archive.json").exists():
        raise FileNotFoundError(f"{run.root} has no search results; run `tamnas search "
                                f"{run.root}` first")
    archive = Archive.load(run.root / "search")
    gens = run.root / "search" / "generations.csv"
    fix = f"delete it and run `tamnas search {run.root}` to write it again"
    return archive, (read_table(gens, ("generation", "hv"), fix) if gens.exists() else None)


def read_table(path: Path, columns: Sequence[str], fix: str) -> pd.DataFrame:
    """A CSV the run wrote; ValueError naming the file if it is garbled or lacks `columns`."""
    try:
        df = pd.read_csv(path)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is garbled ({type(err).__name__}); {fix}") from None
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{path} is garbled (no column {', '.join(missing)}); {fix}")
    return df


def _front(cfg: Config, archive) -> pd.DataFrame:
    front = archive.front(cfg.search.objectives)
    return front.sort_values("adv_err", kind="stable").reset_index(drop=True)


def plot_stage(cfg: Config, run_dir: str | Path, *, device: torch.device = None,
               quiet: bool = False, resume: bool = True) -> list[Path]:
    from tamnas.analysis import plots, stats
    from tamnas.supernets import build_space

    run = open_run(cfg, run_dir)
    space = build_space(cfg)
    archive, gens = _load_search(run)
    df, front = archive.frame(), _front(cfg, archive)
    figs = run.figures_dir
    fmts = cfg.output.formats
    written = plots.plot_front(df, front, figs / "front", formats=fmts)
    if gens is not None and len(gens):
        written += plots.plot_hypervolume(gens, figs / "hypervolume", formats=fmts)
    top = stats.top_k(front, cfg.output.top_k, by=cfg.output.top_by)
    for kind in sorted({g.kind for g in space.genes}):
        counts = stats.layer_counts(space, top, kind)
        stats.save_table(counts, run.sub("stats") / f"{kind}_counts")
        written += plots.plot_layer_stats(counts, figs / f"layer_{kind}s", formats=fmts,
                                          title=f"{kind} choices among the top-{len(top)}")
    summary = run.root / "retrain" / "summary.csv"
    if summary.exists():
        retrained = read_table(summary, SUMMARY_COLUMNS, f"delete it and run `tamnas retrain "
                               f"{run.root}` again")
        written += plots.plot_retrained(front, retrained, figs / "front_retrained", formats=fmts)
        if len(retrained) >= 2:
            written += plots.plot_inherited_vs_retrained(retrained, figs / "inherited_vs_retrained",
                                                         formats=fmts)
    _say(f"plot: wrote {len(written)} files to {figs}", quiet)
    return written


def _has_search(ctx: Context) -> None:
    if not len(ctx.archive):
        raise FileNotFoundError(f"{ctx.run.root} has no search results; run `tamnas search "
                                f"{ctx.run.root}` first")


def lego_stage(cfg: Config, run_dir: str | Path, *, top: int | None = None,
               device: torch.device, quiet: bool = False, resume: bool = True, ctx=None) -> Path:
    from tamnas.analysis import stats
    from tamnas.analysis.lego import lego_arch

    if top is not None and top < 1:
        raise ValueError(f"--top {top}: give the number of front members to use, 1 or more")
    run = open_run(cfg, run_dir)
    with writing(run.root, "tamnas lego"):
        ctx = ctx or Context(cfg, run, device, quiet, resume)
        _has_search(ctx)
        record_config(cfg, run)
        front = _front(cfg, ctx.archive)
        top_df = stats.top_k(front, top or cfg.output.top_k, by=cfg.output.top_by)
        arch = lego_arch(ctx.space, top_df)
        scores = ctx.evaluator.evaluate([arch], strategy="lego")[0]
        if dist.is_main():
            ctx.archive.save(run.root / "search")
        paths = _export(ctx, arch, "lego", run.exports_dir, weights="inherited")
    _say(f"lego: {'-'.join(map(str, arch))}  params {scores['params']:,}  clean err "
         f"{scores['clean_err']:.3f}  adv err {scores['adv_err']:.3f} -> {paths['json']}", quiet)
    return paths["json"]


def _export(ctx: Context, arch, name: str, out_dir: Path, weights: str = "inherited",
            fmt: str = "torch") -> dict:
    from tamnas.analysis.export import export_arch

    state = ctx.evaluator.calibrated_state(arch)
    retrained = ctx.run.root / "retrain" / name / "model.pt"
    if weights == "retrained":
        if not retrained.exists():
            raise FileNotFoundError(f"no retrained weights for {name} ({retrained}); run "
                                    f"`tamnas retrain {ctx.run.root} --arch ...` first")
        state = load_checkpoint(retrained, kind="standalone_weights")
    scores = ctx.evaluator.evaluate([arch])[0]
    shape = (1, ctx.data.info.in_channels, ctx.cfg.data.resolution, ctx.cfg.data.resolution)
    paths = export_arch(ctx.space, arch, out_dir, name, state_dict=state, scores=scores,
                        onnx=fmt == "onnx", example_input_shape=shape)
    if dist.is_main():
        stamp(paths["json"], ctx.fingerprint)
    return paths


def resolve_arch(spec: str, ctx: Context) -> tuple[tuple[int, ...], str]:
    """`front:K` (row K of the front table), `lego`, or an arch JSON file -> (arch, name)."""
    if spec.startswith("front:"):
        _has_search(ctx)
        front = _front(ctx.cfg, ctx.archive)
        try:
            k = int(spec.split(":", 1)[1])
            if k < 0:
                raise IndexError(k)
            row = front.iloc[k]
        except (ValueError, IndexError):
            raise ValueError(f"--arch {spec}: the front has rows 0..{len(front) - 1}") from None
        return ctx.space.validate(int(row[f"g{i}"]) for i in range(ctx.space.n_genes)), f"front-{k}"
    path = ctx.run.exports_dir / "lego.json" if spec == "lego" else Path(spec)
    if spec == "lego" and not (path.exists() and is_fresh(path, ctx.fingerprint)):
        lego_stage(ctx.cfg, ctx.run.root, device=ctx.device, quiet=ctx.quiet, ctx=ctx)
    if not path.exists():
        raise FileNotFoundError(f"--arch {spec}: no such file; use front:K, lego or an arch JSON")
    from tamnas.analysis.export import read_arch_json

    space, arch, meta = read_arch_json(path)
    if space.config() != ctx.space.config():
        raise ValueError(f"--arch {spec}: {path} belongs to another space than this run's")
    return arch, meta.get("name") or path.stem


def export_stage(cfg: Config, run_dir: str | Path, *, arch: str, fmt: str = "torch",
                 weights: str | None = None, device: torch.device, quiet: bool = False,
                 resume: bool = True) -> dict:
    run = open_run(cfg, run_dir)
    with writing(run.root, "tamnas export"):
        ctx = Context(cfg, run, device, quiet, resume)
        a, name = resolve_arch(arch, ctx)
        record_config(cfg, run)
        if weights is None:
            weights = "retrained" if _retrained_fresh(ctx, name) else "inherited"
        elif weights == "retrained":
            _check_retrained(ctx, name)
        paths = _export(ctx, a, name, run.exports_dir, weights=weights, fmt=fmt)
    _say("export: " + ", ".join(str(p) for p in paths.values()), quiet)
    return paths


def _retrained_fresh(ctx: Context, name: str) -> bool:
    """True if retrain/NAME holds weights trained from this run's current supernet and front."""
    out = ctx.run.root / "retrain" / name
    return (out / "model.pt").exists() and is_fresh(out, ctx.fingerprint)


def _check_retrained(ctx: Context, name: str) -> None:
    out = ctx.run.root / "retrain" / name
    if not (out / "model.pt").exists():
        raise FileNotFoundError(f"no retrained weights for {name} ({out / 'model.pt'}); run "
                                f"`tamnas retrain {ctx.run.root} --arch ...` first")
    check_fresh(out, ctx.fingerprint, name=str(out),
                fix=f"retrain it again with `tamnas retrain {ctx.run.root} --arch ...`")


def _test_tensors(ctx: Context, n: int | None = None):
    from tamnas.data import stack

    return stack(ctx.data.test, n, generator_seed=ctx.cfg.seed + 21)


def _scores_on_test(ctx: Context, net, attack=None) -> dict:
    from tamnas.attacks import Attack

    attack = attack or Attack.from_config(ctx.cfg.attack)
    x, y = _test_tensors(ctx)
    net = net.to(ctx.device).eval()
    wrong = adv_wrong = 0
    for xb, yb in zip(x.split(ctx.cfg.data.eval_batch_size), y.split(ctx.cfg.data.eval_batch_size)):
        xb, yb = xb.to(ctx.device), yb.to(ctx.device)
        with torch.inference_mode():
            wrong += int((net(xb).argmax(1) != yb).sum())
        x_adv = attack(net, xb, yb)
        with torch.inference_mode():
            adv_wrong += int((net(x_adv).argmax(1) != yb).sum())
    return {"clean_err": wrong / len(y), "adv_err": adv_wrong / len(y)}


def retrain_stage(cfg: Config, run_dir: str | Path, *, arch: str = "lego", init: str = "scratch",
                  all_front: bool = False, device: torch.device, quiet: bool = False,
                  resume: bool = True) -> pd.DataFrame:
    """Retrain archs as standalone nets; test-set scores next to their inherited scores."""
    from tamnas.analysis.rank_fidelity import kendall_tau, spearman_rho

    run = open_run(cfg, run_dir)
    with writing(run.root, "tamnas retrain"):
        ctx = Context(cfg, run, device, quiet, resume)
        if all_front:
            _has_search(ctx)
            front = _front(cfg, ctx.archive)
            specs = [f"front:{k}" for k in range(len(front))]
        else:
            specs = [arch]
        targets = [resolve_arch(spec, ctx) for spec in specs]  # every spec checked before training
        record_config(cfg, run)
        rows = []
        for a, name in targets:
            rows.append(_retrain_one(ctx, a, name, init, resume))
        table = _merge_summary(run, pd.DataFrame(rows))
        if len(table) >= 2 and dist.is_main():
            corr = {}
            for which in ("clean", "adv"):
                x, y = table[f"inherited_{which}_err"], table[f"retrained_{which}_err"]
                corr[f"kendall_tau_{which}"] = kendall_tau(x, y)
                corr[f"spearman_rho_{which}"] = spearman_rho(x, y)
            atomic_write_json(run.root / "retrain" / "correlation.json", corr)
            _say("retrain: " + ", ".join(f"{k} {v:.3f}" for k, v in corr.items()), quiet)
    _say(table.to_string(index=False), quiet)
    return table


def _retrain_one(ctx: Context, a, name: str, init: str, resume: bool) -> dict:
    """Retrain one arch in retrain/NAME; a folder left by another supernet starts over."""
    from tamnas.checkpoint import save_checkpoint
    from tamnas.train import retrain

    run, quiet = ctx.run, ctx.quiet
    out = run.root / "retrain" / name
    if out.exists() and not is_fresh(out, ctx.fingerprint):
        moved = move_results_aside(run, (f"retrain/{name}",)) if dist.is_main() else None
        dist.barrier()
        _say(f"note: retrain/{name} was trained for another supernet checkpoint; moved it to "
             f"{moved}")
    out = run.retrain_dir(name)
    if dist.is_main():
        stamp(out, ctx.fingerprint)
    init_state = ctx.evaluator.calibrated_state(a) if init == "supernet" else None
    _say(f"retrain: {name} ({'-'.join(map(str, a))}) from {init} -> {out}", quiet)
    net = retrain(ctx.cfg, ctx.space, a, out, ctx.device, init_state=init_state, data=ctx.data,
                  resume=resume, quiet=quiet)
    if dist.is_main():
        save_checkpoint(out / "model.pt", net.state_dict(), kind="standalone_weights")
    inherited = ctx.evaluator.evaluate([a])[0]
    test = _scores_on_test(ctx, net)
    row = {"name": name, "arch": "-".join(map(str, a)), "init": init,
           "params": inherited["params"], "inherited_clean_err": inherited["clean_err"],
           "inherited_adv_err": inherited["adv_err"], "retrained_clean_err": test["clean_err"],
           "retrained_adv_err": test["adv_err"]}
    if dist.is_main():
        atomic_write_json(out / "scores.json", stamp(row, ctx.fingerprint))
    return row


SUMMARY_COLUMNS = ("name", "arch", "init", "params", "inherited_clean_err", "inherited_adv_err",
                   "retrained_clean_err", "retrained_adv_err")


def _merge_summary(run: RunDir, new: pd.DataFrame) -> pd.DataFrame:
    path = run.root / "retrain" / "summary.csv"
    old = read_table(path, SUMMARY_COLUMNS, "delete it and retrain again") if path.exists() \
        else pd.DataFrame(columns=new.columns)
    table = pd.concat([old[~old["name"].isin(new["name"])], new], ignore_index=True)
    if dist.is_main():
        from tamnas.checkpoint import atomic_write_text

        atomic_write_text(path, table.to_csv(index=False))
    return table


def evaluate_stage(cfg: Config, run_dir: str | Path, *, arch: str | None = None, grid: bool = True,
                   autoattack: bool = False, device: torch.device, quiet: bool = False,
                   resume: bool = True) -> list[pd.DataFrame]:
    """The eps x steps PGD grid (+ FGSM, clean, AutoAttack) on the test set, with sanity checks."""
    run = open_run(cfg, run_dir)
    with writing(run.root, "tamnas evaluate"):
        ctx = Context(cfg, run, device, quiet, resume)
        if arch is None:
            done = sorted((run.root / "retrain").glob("*/scores.json"))
            if not done:
                raise FileNotFoundError(f"{run.root} has no retrained nets; "
                                        "pass --arch front:K|lego|FILE")
            targets = [(_arch_of_scores(ctx, p), p.parent.name) for p in done]
        else:
            targets = [resolve_arch(arch, ctx)]
        for _, name in targets:  # refuse stale weights before any work
            if (run.root / "retrain" / name / "model.pt").exists():
                _check_retrained(ctx, name)
        record_config(cfg, run)
        return [_evaluate_one(ctx, a, name, grid, autoattack) for a, name in targets]


def _arch_of_scores(ctx: Context, path: Path):
    try:
        blob = json.loads(path.read_text(encoding="utf-8"))
        genes = [int(g) for g in blob["arch"].split("-")]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, AttributeError,
            ValueError):
        raise ValueError(f"{path} is garbled; delete it and retrain that arch again") from None
    return ctx.space.validate(genes)


def _evaluate_one(ctx: Context, a, name: str, grid: bool, autoattack: bool) -> pd.DataFrame:
    from tamnas.analysis import robustness

    cfg, run, device, quiet = ctx.cfg, ctx.run, ctx.device, ctx.quiet
    x, y = _test_tensors(ctx)
    weights = run.root / "retrain" / name / "model.pt"
    net = ctx.space.build_standalone(a)
    if weights.exists():
        net.load_state_dict(load_checkpoint(weights, kind="standalone_weights"))
        source = "retrained"
    else:
        net.load_state_dict(ctx.evaluator.calibrated_state(a))
        source = "inherited"
    out = run.retrain_dir(name)
    table = robustness.robustness_grid(
        net.to(device).eval(), x, y, eps_list=cfg.output.eval_eps if grid else [cfg.attack.eps],
        steps_list=cfg.output.eval_steps if grid else [cfg.attack.steps],
        batch_size=cfg.data.eval_batch_size, device=device,
        generator=torch.Generator().manual_seed(cfg.seed))
    if dist.is_main():
        robustness.save_grid(table, out / "robustness")
    _say(f"evaluate: {name} ({source} weights, {len(y)} test images)\n"
         f"{robustness.format_grid(table)}", quiet)
    for warning in robustness.sanity_checks(table):
        _say(f"warning: {name}: {warning}")
    if autoattack:
        acc = robustness.autoattack_accuracy(net, x, y, cfg.attack.eps, device)
        if dist.is_main():
            atomic_write_json(out / "autoattack.json", {"eps": cfg.attack.eps, "accuracy": acc})
        _say(f"evaluate: {name} AutoAttack (standard, eps {cfg.attack.eps:.4f}): {acc:.4f}",
             quiet)
    return table


def report_stage(cfg: Config, run_dir: str | Path, *, device: torch.device = None,
                 quiet: bool = False, resume: bool = True) -> Path:
    from tamnas.analysis.report import write_report

    run = open_run(cfg, run_dir)
    path = write_report(run.root)
    _say(f"report: {path}", quiet)
    return path


def validate_stage(cfg: Config, run_dir: str | Path, *, n_archs: int = 10, seeds: int = 1,
                   bootstrap: int = 1000, device: torch.device, quiet: bool = False,
                   resume: bool = True) -> dict | None:
    """Rank fidelity: archs spread by params, retrained standalone, against their inherited scores."""
    from tamnas.analysis.validate import check_request, format_result, validate_run

    check_request(n_archs, seeds, bootstrap)
    run = RunDir(run_dir)
    total = cfg.train.phase1_epochs + cfg.train.phase2_epochs
    done = supernet_epochs_done(run)
    if done < total:
        what = "no trained supernet" if done == 0 else f"a supernet trained {done} of {total} epochs"
        raise ValueError(f"{run.root} has {what}; finish it with `tamnas train-supernet` (same "
                         "preset and --out) before validating")
    run = open_run(cfg, run_dir)
    with writing(run.root, "tamnas validate"):
        ctx = Context(cfg, run, device, quiet, resume)
        record_config(cfg, run)
        _say(f"validate: {n_archs} archs x {seeds} seed(s), {cfg.retrain.epochs} retrain epochs "
             f"each -> {run.root / 'validate'}", quiet)
        result = validate_run(ctx, n_archs=n_archs, seeds=seeds, bootstrap=bootstrap,
                              resume=resume, quiet=quiet)
        if dist.is_main():
            report_stage(cfg, run.root, quiet=True)
    if dist.is_main():
        _say(format_result(result), quiet)
    return result


def run_all(cfg: Config, out: str | Path, *, device: torch.device, quiet: bool = False,
            resume: bool = True) -> RunDir:
    """The main job: supernet -> search -> plots -> LEGO export -> report."""
    from tamnas.data import load_data

    preflight(cfg)
    data = load_data(cfg.data, cfg.seed)  # a missing dataset stops here, before --out exists
    with writing(out, "tamnas run"):
        run = train_stage(cfg, out, device=device, quiet=quiet, resume=resume, data=data)
        search_stage(cfg, run.root, device=device, quiet=quiet, resume=resume, data=data)
        if dist.is_main():
            with dist.local_only():  # the other ranks are done: no collective may wait for them
                ctx = Context(cfg, run, device, quiet, True, data)
                lego_stage(cfg, run.root, device=device, quiet=quiet, ctx=ctx)
                plot_stage(cfg, run.root, quiet=quiet)
                report_stage(cfg, run.root, quiet=quiet)
    return run


__all__ = [
    "evaluate_stage",
    "export_stage",
    "lego_stage",
    "plot_stage",
    "report_stage",
    "resolve_arch",
    "retrain_stage",
    "run_all",
    "search_stage",
    "space_info",
    "train_stage",
    "validate_stage",
]
