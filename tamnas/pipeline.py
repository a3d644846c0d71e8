"""The one place where space, data, training, evaluator, strategy and analysis meet.

Each CLI command is one function here. A stage whose outputs are complete is
skipped, a partial one resumes; `run_all` chains the main job.
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from tamnas import distributed as dist
from tamnas.checkpoint import RunDir, atomic_write_json, load_checkpoint
from tamnas.config import Config, load_config, save_config

log = logging.getLogger("tamnas")

TRAINING_SECTIONS = ("data", "space", "train")


def _say(message: str, quiet: bool = False) -> None:
    if dist.is_main() and not quiet:
        print(message, flush=True)


def _config_diff(a: Config, b: Config, sections: Sequence[str]) -> list[str]:
    da, db = a.to_dict(), b.to_dict()
    return [f"{s}.{k}: {da[s][k]!r} -> {db[s][k]!r}" for s in sections for k in da[s]
            if da[s][k] != db[s][k] and k not in ("root", "download", "num_workers")]


def prepare_run(cfg: Config, out: str | Path, resume: bool) -> RunDir:
    """Create the run directory and write the resolved config; refuse to mix settings on resume."""
    run = RunDir(out)
    if run.config.exists() and resume and run.supernet_checkpoint.exists():
        diff = _config_diff(load_config(run.config), cfg, TRAINING_SECTIONS)
        if diff:
            raise ValueError(f"{run.root} holds a run with other training settings ({diff[0]}"
                             f"{' ...' if len(diff) > 1 else ''}); pass --no-resume to start over "
                             "or choose another --out")
    if dist.is_main():
        run.ensure()
        save_config(cfg, run.config)
    dist.barrier()
    return run


def open_run(cfg: Config, run_dir: str | Path) -> RunDir:
    run = RunDir(run_dir)
    if not run.config.exists():
        raise FileNotFoundError(f"{run_dir} is not a tamnas run directory (no config.toml)")
    if dist.is_main():
        save_config(cfg, run.config)  # keeps --set overrides of later stages on record
    return run


# --- stages -----------------------------------------------------------------------------
def space_info(cfg: Config, n_samples: int = 500) -> str:
    from tamnas.supernets import build_space
    from tamnas.supernets.info import format_space_info
    from tamnas.supernets.info import space_info as _info

    space = build_space(cfg)
    return format_space_info(_info(space, np.random.default_rng(cfg.seed), n_samples=n_samples))


def supernet_epochs_done(run: RunDir) -> int:
    if not run.supernet_checkpoint.exists():
        return 0
    return int(load_checkpoint(run.supernet_checkpoint, kind="supernet")["epoch"])


def train_stage(cfg: Config, out: str | Path, *, device: torch.device, quiet: bool = False,
                resume: bool = True, data=None) -> RunDir:
    from tamnas.train import train_supernet

    run = prepare_run(cfg, out, resume)
    total = cfg.train.phase1_epochs + cfg.train.phase2_epochs
    done = supernet_epochs_done(run) if resume else 0
    if total == 0:  # no one-shot stage (the DARTS presets): the MGDA search trains the weights
        if done == 0:
            _initial_supernet(cfg, run)
        _say("supernet: no one-shot training (train.phase1/2_epochs = 0); the search trains the "
             "weights from their initial values", quiet)
        return run
    if done >= total:
        _say(f"supernet: complete ({done} epochs) in {run.supernet_checkpoint}", quiet)
        return run
    _say(f"supernet: training epochs {done + 1}-{total} on {device} -> {run.supernet_dir}", quiet)
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
                 resume: bool = True, data=None, searched: bool = True):
        """`searched`: without a one-shot stage, the weights an MGDA search trained
        (search/supernet.pt) are the run's supernet, when present."""
        from tamnas.data import load_data
        from tamnas.search.archive import Archive
        from tamnas.search.evaluator import Evaluator
        from tamnas.train import load_trained_supernet

        self.cfg, self.run, self.device, self.quiet = cfg, run, device, quiet
        self.space, self.supernet = load_trained_supernet(cfg, run, device)
        if searched and cfg.train.phase1_epochs + cfg.train.phase2_epochs == 0:
            from tamnas.search.mgda import load_searched

            load_searched(run.root / "search", self.supernet)
        self.data = data if data is not None else load_data(cfg.data, cfg.seed)
        search_dir = run.root / "search"
        archive = Archive.load(search_dir) if resume and (search_dir / "archive.json").exists() \
            else Archive(self.space.name, self.space.n_genes)
        self.evaluator = Evaluator.from_config(cfg, self.space, self.supernet, self.data, device,
                                               archive=archive, quiet=quiet)

    @property
    def archive(self):
        return self.evaluator.archive


def search_stage(cfg: Config, run_dir: str | Path, *, strategy: str | None = None,
                 targets: list[float] | None = None, device: torch.device, quiet: bool = False,
                 resume: bool = True, data=None) -> pd.DataFrame:
    from tamnas.search.nsga2 import format_front_table

    run = open_run(cfg, run_dir)  # records --set overrides; --strategy/--targets stay one-off
    if strategy is not None or targets is not None:
        cfg = copy.deepcopy(cfg)
        cfg.search.strategy = strategy or cfg.search.strategy
        if targets is not None:
            cfg.search.mgda_targets = list(targets)
    # MGDA trains the weights itself, from the supernet checkpoint; NSGA-II scores searched ones.
    ctx = Context(cfg, run, device, quiet, resume, data, searched=cfg.search.strategy != "mgda")
    strategy_cls = _strategy(cfg.search.strategy)
    _say(f"search: {cfg.search.strategy} over {ctx.space.name} -> {run.search_dir}", quiet)
    search = strategy_cls(ctx.space, ctx.evaluator, cfg, run.search_dir, seed=cfg.seed,
                          quiet=quiet, resume=resume)
    front = search.run()
    s = ctx.evaluator.stats
    _say(f"search: {len(ctx.archive)} archs in the archive, {s['evaluations']} scored now, "
         f"{s['cache_hits']} cache hits, {s['seconds']:.1f} s scoring", quiet)
    _say(format_front_table(front, cfg.search.objectives), quiet)
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
    return archive, (pd.read_csv(gens) if gens.exists() else None)


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
        retrained = pd.read_csv(summary)
        written += plots.plot_retrained(front, retrained, figs / "front_retrained", formats=fmts)
        if len(retrained) >= 2:
            written += plots.plot_inherited_vs_retrained(retrained, figs / "inherited_vs_retrained",
                                                         formats=fmts)
    _say(f"plot: wrote {len(written)} files to {figs}", quiet)
    return written


def lego_stage(cfg: Config, run_dir: str | Path, *, top: int | None = None,
               device: torch.device, quiet: bool = False, resume: bool = True, ctx=None) -> Path:
    from tamnas.analysis import stats
    from tamnas.analysis.lego import lego_arch

    run = open_run(cfg, run_dir)
    ctx = ctx or Context(cfg, run, device, quiet, resume)
    front = _front(cfg, ctx.archive)
    top_df = stats.top_k(front, top or cfg.output.top_k, by=cfg.output.top_by)
    arch = lego_arch(ctx.space, top_df)
    scores = ctx.evaluator.evaluate([arch], strategy="lego")[0]
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
    return export_arch(ctx.space, arch, out_dir, name, state_dict=state, scores=scores,
                       onnx=fmt == "onnx", example_input_shape=shape)


def resolve_arch(spec: str, ctx: Context) -> tuple[tuple[int, ...], str]:
    """`front:K` (row K of the front table), `lego`, or an arch JSON file -> (arch, name)."""
    if spec.startswith("front:"):
        front = _front(ctx.cfg, ctx.archive)
        try:
            k = int(spec.split(":", 1)[1])
            row = front.iloc[k]
        except (ValueError, IndexError):
            raise ValueError(f"--arch {spec}: the front has rows 0..{len(front) - 1}") from None
        return ctx.space.validate(int(row[f"g{i}"]) for i in range(ctx.space.n_genes)), f"front-{k}"
    path = ctx.run.exports_dir / "lego.json" if spec == "lego" else Path(spec)
    if spec == "lego" and not path.exists():
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
    ctx = Context(cfg, run, device, quiet, resume)
    a, name = resolve_arch(arch, ctx)
    if weights is None:
        retrained = (run.root / "retrain" / name / "model.pt").exists()
        weights = "retrained" if retrained else "inherited"
    paths = _export(ctx, a, name, run.exports_dir, weights=weights, fmt=fmt)
    _say("export: " + ", ".join(str(p) for p in paths.values()), quiet)
    return paths


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
    from scipy.stats import kendalltau, spearmanr

    from tamnas.checkpoint import save_checkpoint
    from tamnas.train import retrain

    run = open_run(cfg, run_dir)
    ctx = Context(cfg, run, device, quiet, resume)
    if all_front:
        front = _front(cfg, ctx.archive)
        specs = [f"front:{k}" for k in range(len(front))]
    else:
        specs = [arch]
    rows = []
    for spec in specs:
        a, name = resolve_arch(spec, ctx)
        out = run.retrain_dir(name)
        init_state = ctx.evaluator.calibrated_state(a) if init == "supernet" else None
        _say(f"retrain: {name} ({'-'.join(map(str, a))}) from {init} -> {out}", quiet)
        net = retrain(cfg, ctx.space, a, out, device, init_state=init_state, data=ctx.data,
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
            atomic_write_json(out / "scores.json", row)
        rows.append(row)
    table = _merge_summary(run, pd.DataFrame(rows))
    if len(table) >= 2 and dist.is_main():
        corr = {}
        for which in ("clean", "adv"):
            x, y = table[f"inherited_{which}_err"], table[f"retrained_{which}_err"]
            corr[f"kendall_tau_{which}"] = float(kendalltau(x, y)[0])
            corr[f"spearman_rho_{which}"] = float(spearmanr(x, y)[0])
        atomic_write_json(run.root / "retrain" / "correlation.json", corr)
        _say("retrain: " + ", ".join(f"{k} {v:.3f}" for k, v in corr.items()), quiet)
    _say(table.to_string(index=False), quiet)
    return table


def _merge_summary(run: RunDir, new: pd.DataFrame) -> pd.DataFrame:
    path = run.root / "retrain" / "summary.csv"
    old = pd.read_csv(path) if path.exists() else pd.DataFrame(columns=new.columns)
    table = pd.concat([old[~old["name"].isin(new["name"])], new], ignore_index=True)
    if dist.is_main():
        from tamnas.checkpoint import atomic_write_text

        atomic_write_text(path, table.to_csv(index=False))
    return table


def evaluate_stage(cfg: Config, run_dir: str | Path, *, arch: str | None = None, grid: bool = True,
                   autoattack: bool = False, device: torch.device, quiet: bool = False,
                   resume: bool = True) -> list[pd.DataFrame]:
    """The eps x steps PGD grid (+ FGSM, clean, AutoAttack) on the test set, with sanity checks."""
    from tamnas.analysis import robustness

    run = open_run(cfg, run_dir)
    ctx = Context(cfg, run, device, quiet, resume)
    if arch is None:
        done = sorted((run.root / "retrain").glob("*/scores.json"))
        if not done:
            raise FileNotFoundError(f"{run.root} has no retrained nets; "
                                    "pass --arch front:K|lego|FILE")
        targets = [(ctx.space.validate(int(g) for g in json.loads(p.read_text())["arch"].split("-")),
                    p.parent.name) for p in done]
    else:
        targets = [resolve_arch(arch, ctx)]
    x, y = _test_tensors(ctx)
    tables = []
    for a, name in targets:
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
        tables.append(table)
    return tables


def report_stage(cfg: Config, run_dir: str | Path, *, device: torch.device = None,
                 quiet: bool = False, resume: bool = True) -> Path:
    from tamnas.analysis.report import write_report

    run = open_run(cfg, run_dir)
    path = write_report(run.root)
    _say(f"report: {path}", quiet)
    return path


def run_all(cfg: Config, out: str | Path, *, device: torch.device, quiet: bool = False,
            resume: bool = True) -> RunDir:
    """The main job: supernet -> search -> plots -> LEGO export -> report."""
    from tamnas.data import load_data

    data = load_data(cfg.data, cfg.seed)
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
]
