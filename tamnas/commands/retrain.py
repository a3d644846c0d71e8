"""`tamnas retrain`: front members or the LEGO net trained alone, scored on the test images.

Each net has its folder retrain/NAME, NAME the arch's key (`KEY.finetune`
when initialised from the supernet), with the recipe that trained it
(recipe.json): resuming under another recipe is refused, `--no-resume`
starts that net afresh. retrain/summary.csv is rebuilt from every folder's
scores.json, so two retrains of different archs may run at once.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import pandas as pd
import torch

from tamnas import distributed as dist
from tamnas.analysis.rank_fidelity import CHANCE_MARGIN, near_chance
from tamnas.commands import ON_WEIGHTS, Call, add_arch_argument, check_arch_argument, command
from tamnas.config import Config
from tamnas.files import (
    atomic_write_json,
    atomic_write_text,
    file_digest,
    read_json,
    save_checkpoint,
)
from tamnas.rundir import RunDir, is_fresh, move_aside, stamp, writing
from tamnas.session import Session, open_run, say

SUMMARY_COLUMNS = ("name", "arch", "init", "recipe", "epochs", "params", "inherited_clean_err",
                   "inherited_adv_err", "retrained_clean_err", "retrained_adv_err")
EXTRA_COLUMNS = ("n_test", "near_chance", "selector")


def recipe_id(recipe: dict) -> str:
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:8]


def _prepare_folder(session: Session, name: str, recipe: dict, resume: bool) -> Path:
    """retrain/NAME ready for this recipe: stale or --no-resume folders moved aside first."""
    run, out = session.run, session.run.retrain_dir(name)
    old = read_json(out / "recipe.json", "delete that folder and retrain again") \
        if (out / "recipe.json").exists() else None
    stale = out.exists() and not is_fresh(out, session.fingerprint)
    if out.exists() and resume and not stale and old is not None and old != recipe:
        changed = sorted(k for k in recipe if old.get(k) != recipe.get(k))
        raise ValueError(f"{out} was trained with another recipe (different {', '.join(changed)});"
                         f" pass --no-resume to train {name} afresh, or restore those settings")
    if out.exists() and (stale or not resume):
        moved = move_aside(run, (f"retrain/{name}",)) if dist.is_main() else None
        dist.barrier()
        why = "trained for another supernet checkpoint" if stale else "--no-resume"
        say(f"note: retrain/{name}: {why}; moved it to {moved}")
    if dist.is_main():
        atomic_write_json(out / "recipe.json", recipe)
        stamp(out, session.fingerprint)
    return out


def retrain_one(session: Session, arch, name: str, init: str, resume: bool,
                selector: str | None = None) -> dict:
    """Retrain one arch in retrain/NAME; its summary row (with the `selector` that chose it)."""
    from tamnas.train import retrain as train_standalone
    from tamnas.train import standalone_recipe

    cfg, quiet = session.cfg, session.quiet
    recipe = {**standalone_recipe(cfg, arch, cfg.seed), "init": init}
    out = _prepare_folder(session, name, recipe, resume)
    init_state = session.evaluator.calibrated_state(arch) if init == "supernet" else None
    say(f"retrain: {name} ({'-'.join(map(str, arch))}) from {init} -> {out}", quiet)
    net = train_standalone(cfg, session.space, arch, out, session.device, init_state=init_state,
                           data=session.data, resume=resume, quiet=quiet)
    if dist.is_main():
        save_checkpoint(out / "model.pt", net.state_dict(), kind="standalone_weights")
    inherited = session.evaluator.evaluate([arch])[0]
    test, per_class = session.test_results(net)
    num_classes = session.data.info.num_classes
    if near_chance([test["clean_err"]], num_classes)[0]:
        say(f"warning: {name}: {100 * test['clean_err']:.1f}% clean test error is within "
            f"{100 * CHANCE_MARGIN:.0f} points of chance ({100 * (1 - 1 / num_classes):.0f}%): it "
            "learned nothing useful; train it longer (retrain.epochs)")
    row = {"name": name, "arch": "-".join(map(str, arch)), "init": init,
           "recipe": recipe_id(recipe), "epochs": cfg.retrain.epochs,
           "params": inherited["params"], "inherited_clean_err": inherited["clean_err"],
           "inherited_adv_err": inherited["adv_err"], "retrained_clean_err": test["clean_err"],
           "retrained_adv_err": test["adv_err"], "n_test": test["n"],
           "near_chance": bool(near_chance([test["clean_err"]], num_classes)[0]),
           "selector": selector}
    if dist.is_main():
        atomic_write_json(out / "scores.json", stamp(row, session.fingerprint))
        per_class.insert(0, "weights", f"retrained:{file_digest(out / 'model.pt')}")
        atomic_write_text(session.run.per_class(name),
                          per_class.to_csv(index=False, float_format="%.10g"))
    return row


def summary_table(run: RunDir) -> pd.DataFrame:
    """One row per retrained net, from every retrain/NAME/scores.json."""
    rows = []
    for name in run.retrained_names():
        path = run.retrain_dir(name) / "scores.json"
        blob = read_json(path, f"delete it and retrain {name} again")
        if isinstance(blob, dict):
            rows.append({k: blob.get(k) for k in (*SUMMARY_COLUMNS, *EXTRA_COLUMNS)})
    return pd.DataFrame(rows, columns=[*SUMMARY_COLUMNS, *EXTRA_COLUMNS])


def retrain(cfg: Config, run_dir: str | Path, *, arch: str = "lego", init: str = "scratch",
            all_front: bool = False, device: torch.device, quiet: bool = False,
            resume: bool = True, partial: bool = False) -> pd.DataFrame:
    """Retrain archs as standalone nets; the summary over every retrained net of the run."""
    from tamnas.analysis.rank_fidelity import kendall_tau, spearman_rho

    run = open_run(run_dir)
    session = Session.open(cfg, run, device, quiet=quiet, partial=partial)
    if all_front:
        session.require_search()
        specs = [f"front:{k}" for k in range(len(session.front()))]
    else:
        specs = [arch]
    targets = [(*session.resolve_arch(spec), spec) for spec in specs]  # all checked before work
    for a, key, spec in targets:
        name = key if init == "scratch" else f"{key}.finetune"  # both may live side by side
        with writing(run.root, "tamnas retrain", f"retrain/{name}", enabled=dist.is_main()):
            retrain_one(session, a, name, init, resume, selector=spec)
    table = summary_table(run)
    if dist.is_main():
        atomic_write_text(run.retrain_summary, table.to_csv(index=False))
    if len(table) >= 2 and dist.is_main():
        corr = {}
        for which in ("clean", "adv"):
            x, y = table[f"inherited_{which}_err"], table[f"retrained_{which}_err"]
            corr[f"kendall_tau_{which}"] = kendall_tau(x, y)
            corr[f"spearman_rho_{which}"] = spearman_rho(x, y)
        atomic_write_json(run.retrain_correlation, corr)
        say("retrain: " + ", ".join(f"{k} {v:.3f}" for k, v in corr.items()))
    say(table.to_string(index=False))
    return table


def _arguments(p: argparse.ArgumentParser) -> None:
    add_arch_argument(p)
    p.add_argument("--init", choices=("scratch", "supernet"), default="scratch",
                   help="scratch: fresh weights (the paper's main protocol); supernet: start from "
                        "the inherited weights (fine-tuning)")
    p.add_argument("--all-front", action="store_true",
                   help="retrain every front member (not with --arch)")
    p.set_defaults(arch=None)  # so that an --arch given beside --all-front is seen


def _check(args: argparse.Namespace) -> None:
    check_arch_argument(args)
    if args.all_front and args.arch is not None:
        raise ValueError(f"--all-front retrains every front member; --arch {args.arch} would be "
                         "ignored: give one of them")


@command("retrain", "train a front member or the LEGO net as a standalone network", "run",
         arguments=_arguments, options=ON_WEIGHTS, check=_check)
def main(call: Call) -> pd.DataFrame:
    return retrain(call.cfg, call.args.run, arch=call.args.arch or "lego", init=call.args.init,
                   all_front=call.args.all_front, device=call.device, quiet=call.quiet,
                   resume=call.resume, partial=call.args.partial_supernet)
