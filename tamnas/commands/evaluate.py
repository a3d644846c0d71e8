"""`tamnas evaluate`: the eps x steps PGD grid (+ FGSM, clean, AutoAttack) of standalone nets."""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd
import torch

from tamnas import distributed as dist
from tamnas.commands import ON_WEIGHTS, Call, add_arch_argument, check_arch_argument, command
from tamnas.config import Config
from tamnas.files import atomic_write_json, atomic_write_text, load_checkpoint, read_json
from tamnas.rundir import writing
from tamnas.session import Session, open_run, say


def _arch_of_scores(session: Session, path: Path):
    blob = read_json(path, "delete it and retrain that arch again")
    try:
        genes = [int(g) for g in blob["arch"].split("-")]
    except (KeyError, TypeError, AttributeError, ValueError):
        raise ValueError(f"{path} is garbled; delete it and retrain that arch again") from None
    return session.space.validate(genes)


def evaluate(cfg: Config, run_dir: str | Path, *, arch: str | None = None, grid: bool = True,
             autoattack: bool = False, device: torch.device, quiet: bool = False,
             resume: bool = True, partial: bool = False) -> list[pd.DataFrame]:
    """Robustness grids of `arch` (default: every retrained net) on the test images."""
    run = open_run(run_dir)
    if autoattack:
        from tamnas.attacks import autoattack_class

        autoattack_class()  # a missing extra stops here, before any attack runs
    session = Session.open(cfg, run, device, quiet=quiet, partial=partial)
    if arch is None:
        names = run.retrained_names()
        if not names:
            raise FileNotFoundError(f"{run.root} has no retrained nets; "
                                    "pass --arch front:K|lego|FILE")
        targets = [(_arch_of_scores(session, run.retrain_dir(n) / "scores.json"), n)
                   for n in names]
    else:
        targets = [session.resolve_arch(arch)]
    for _, name in targets:  # refuse stale weights before any work
        if (run.retrain_dir(name) / "model.pt").exists():
            session.check_retrained(name)
    tables = []
    for a, name in targets:
        with writing(run.root, "tamnas evaluate", f"evaluate/{name}", enabled=dist.is_main()):
            tables.append(_evaluate_one(session, a, name, grid, autoattack))
    return tables


def _evaluate_one(session: Session, a, name: str, grid: bool, autoattack: bool) -> pd.DataFrame:
    """One net's grid: the cells asked for now, merged with those evaluated before on the same
    weights (retrain/NAME/robustness.*); a grid of other weights is replaced."""
    from tamnas.analysis import robustness
    from tamnas.files import file_digest

    cfg, run, device = session.cfg, session.run, session.device
    x, y = session.test_tensors()
    out = run.retrain_dir(name)
    weights = out / "model.pt"
    net = session.space.build_standalone(a)
    if weights.exists():
        net.load_state_dict(load_checkpoint(weights, kind="standalone_weights"))
        source, made_by = "retrained", f"retrained:{file_digest(weights)}"
    else:
        net.load_state_dict(session.evaluator.calibrated_state(a))
        source, made_by = "inherited", f"inherited:{session.fingerprint}"
    table = robustness.robustness_grid(
        net.to(device).eval(), x, y, eps_list=cfg.output.eval_eps if grid else [cfg.attack.eps],
        steps_list=cfg.output.eval_steps if grid else [cfg.attack.steps],
        batch_size=cfg.data.eval_batch_size, device=device, seed=cfg.seed)
    table.attrs["weights"] = made_by
    old_path = out / "robustness.csv"
    old = robustness.read_grid(old_path) if old_path.is_file() else None
    if old is not None and old.attrs.get("weights") == made_by:
        table = robustness.merge_grids(old, table)
    per_class = session.per_class_on_test(net)
    per_class.insert(0, "weights", made_by)
    if dist.is_main():
        robustness.save_grid(table, out / "robustness")
        atomic_write_text(run.per_class(name), per_class.to_csv(index=False, float_format="%.10g"))
    say(f"evaluate: {name} ({source} weights)\n{robustness.format_grid(table)}")
    for warning in robustness.sanity_checks(table):
        say(f"warning: {name}: {warning}")
    if autoattack:
        acc = robustness.autoattack_accuracy(net, x, y, cfg.attack.eps, device)
        if dist.is_main():
            atomic_write_json(out / "autoattack.json", {"eps": cfg.attack.eps, "accuracy": acc,
                                                        "error": 1 - acc, "n": len(y)})
        say(f"evaluate: {name} AutoAttack (standard, eps {cfg.attack.eps:.4f}): error "
            f"{100 * (1 - acc):.2f}% on {len(y)} test images")
    return table


def _arguments(p: argparse.ArgumentParser) -> None:
    add_arch_argument(p, default=None)
    p.add_argument("--grid", action=argparse.BooleanOptionalAction, default=True,
                   help="the output.eval_eps x output.eval_steps PGD grid (default: on); "
                        "--no-grid: the search attack only")
    p.add_argument("--autoattack", action="store_true",
                   help="also run standard AutoAttack (needs pip install 'tamnas[attacks]')")


@command("evaluate", "robustness of an exported or retrained net: PGD grid, FGSM, AutoAttack",
         "run", arguments=_arguments, options=ON_WEIGHTS, check=check_arch_argument)
def main(call: Call) -> list[pd.DataFrame]:
    return evaluate(call.cfg, call.args.run, arch=call.args.arch, grid=call.args.grid,
                    autoattack=call.args.autoattack, device=call.device, quiet=call.quiet,
                    resume=call.resume, partial=call.args.partial_supernet)
