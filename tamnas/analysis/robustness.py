"""The eps x steps robustness grid (paper 004, Tables II-XIII), its self-checks, AutoAttack, files.

The grid has one row per eps and the columns `clean`, `fgsm` and `pgd-K`
for each PGD step count K, holding accuracies in [0, 1] in memory; files and
the terminal show error rates, as the search and the report do. Every PGD
cell draws its random starts from a generator of its own, seeded by (seed,
eps, steps), so a cell gives the same number alone or in any grid, and grids
of one net evaluated at different times merge (`merge_grids`). The paper does not
state its PGD step size; we follow Madry et al. and use step = 2.5 * eps /
steps by default (`step_size_rule="2.5*eps/steps"`): the total travel,
2.5 eps, exceeds the ball's width of 2 eps for every step count, so a random
start can still reach any corner. A number instead fixes one step size for
every cell.

The self-checks catch gradient masking and broken
attacks: at eps = 0 every attack equals clean accuracy; accuracy never rises
with eps nor with steps; PGD never beats FGSM at the same eps; no attack
beats clean accuracy. PGD starts from a random point, so some images flip
by chance: each comparison allows the random-start noise of its two
accuracies (`noise_tolerance`, a binomial standard error), at least one image.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import torch
from torch import nn

from tamnas.errors import MissingExtraError
from tamnas.files import atomic_write_json, atomic_write_text, read_json

DEFAULT_RULE = "2.5*eps/steps"
DEFAULT_TOL = 0.005
_RULE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*\*\s*eps\s*/\s*steps\s*$")
_BALL_SLACK = 1e-5


def step_size(eps: float, steps: int, rule: str | float = DEFAULT_RULE) -> float:
    """PGD step size for one grid cell: `rule` is "<k>*eps/steps" or a fixed number."""
    if isinstance(rule, (int, float)) and not isinstance(rule, bool):
        if not rule >= 0:
            raise ValueError(f"step_size_rule {rule!r} must be >= 0")
        return float(rule)
    match = _RULE.match(str(rule))
    if not match:
        raise ValueError(f"step_size_rule {rule!r} is not understood; use '2.5*eps/steps' "
                         "(any factor) or a fixed number")
    return float(match.group(1)) * float(eps) / int(steps)


def pgd_column(steps: int) -> str:
    return f"pgd-{int(steps)}"


def _pgd_steps(table: pd.DataFrame) -> list[tuple[int, str]]:
    cols = [(int(c.split("-", 1)[1]), c) for c in table.columns
            if isinstance(c, str) and re.fullmatch(r"pgd-\d+", c)]
    return sorted(cols)


def _check_lists(eps_list: Sequence[float],
                 steps_list: Sequence[int]) -> tuple[list[float], list[int]]:
    eps = sorted({float(e) for e in eps_list})
    steps = sorted({int(s) for s in steps_list})
    if not eps or any(not 0.0 <= e <= 1.0 for e in eps):
        raise ValueError(f"eps_list {list(eps_list)} must hold values in [0, 1] "
                         "(pixel scale, e.g. 8/255)")
    if not steps or any(s < 1 for s in steps):
        raise ValueError(f"steps_list {list(steps_list)} must hold integers >= 1")
    return eps, steps


def _correct(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> int:
    with torch.no_grad():
        return int((model(x).argmax(1) == y).sum())


def _checked(x_adv: torch.Tensor, x: torch.Tensor, eps: float, name: str) -> torch.Tensor:
    """Refuse an attack output outside the eps-ball or [0, 1]: it would fake (non-)robustness."""
    dist = float((x_adv - x).abs().max()) if x.numel() else 0.0
    outside = float(x_adv.min()) < -_BALL_SLACK or float(x_adv.max()) > 1 + _BALL_SLACK
    if dist > eps + _BALL_SLACK or outside:
        raise RuntimeError(f"{name} returned an input {dist:.4g} from x (eps {eps:.4g}) or outside "
                           "[0, 1]; the attack is broken")
    return x_adv.detach()


def cell_generator(seed: int, eps: float, steps: int) -> torch.Generator:
    """The random-start generator of one PGD cell: the same whatever else the grid holds."""
    import numpy as np

    key = np.random.SeedSequence([int(seed) % 2**63, round(float(eps) * 255 * 1000), int(steps)])
    return torch.Generator().manual_seed(int(key.generate_state(1, np.uint64)[0]))


def robustness_grid(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps_list: Sequence[float],
                    steps_list: Sequence[int], step_size_rule: str | float = DEFAULT_RULE,
                    batch_size: int = 256, device: str | torch.device | None = None,
                    generator: torch.Generator | None = None, restarts: int = 1,
                    progress: bool = False, seed: int | None = None) -> pd.DataFrame:
    """Clean, FGSM and PGD accuracy for every eps (rows) and PGD step count (columns).

    The model is put in eval mode (and moved to `device` when given). Every
    cell attacks all of `x` independently, with the step size of
    `step_size_rule`; with `seed`, each PGD cell draws its random starts from
    `cell_generator(seed, eps, steps)` (the same number alone or in any grid);
    else `generator` drives every cell's starts in turn. `table.attrs` records n, the rule and restarts.
    """
    from tamnas import attacks

    eps_values, steps_values = _check_lists(eps_list, steps_list)
    if len(x) != len(y) or len(x) == 0:
        raise ValueError(f"robustness_grid: x has {len(x)} images and y {len(y)} labels; "
                         "give the same non-zero number")
    if batch_size < 1:
        raise ValueError(f"batch_size {batch_size} must be >= 1")
    for s in steps_values:
        step_size(0.0, s, step_size_rule)  # validate the rule once, before any work
    if device is not None:
        model.to(device)
    model.eval()
    dev = torch.device(device) if device is not None else next(
        (p.device for p in model.parameters()), torch.device("cpu"))

    gens = {(e, s): cell_generator(seed, e, s) for e in eps_values for s in steps_values} \
        if seed is not None else {}
    clean = 0
    fgsm = {e: 0 for e in eps_values}
    pgd = {(e, s): 0 for e in eps_values for s in steps_values}
    starts = range(0, len(x), batch_size)
    if progress:
        from tamnas.progress import progress as bar

        starts = bar(starts, desc="robustness grid", unit="batch", leave=False)
    for start in starts:
        xb = x[start:start + batch_size].to(dev)
        yb = y[start:start + batch_size].to(dev)
        clean += _correct(model, xb, yb)
        for e in eps_values:
            x_adv = _checked(attacks.fgsm(model, xb, yb, e), xb, e, "fgsm")
            fgsm[e] += _correct(model, x_adv, yb)
            for s in steps_values:
                x_adv = attacks.pgd(model, xb, yb, eps=e, steps=s,
                                    step_size=step_size(e, s, step_size_rule),
                                    restarts=restarts, generator=gens.get((e, s), generator))
                pgd[e, s] += _correct(model, _checked(x_adv, xb, e, f"pgd-{s}"), yb)

    n = len(x)
    rows = {e: {"clean": clean / n, "fgsm": fgsm[e] / n,
                **{pgd_column(s): pgd[e, s] / n for s in steps_values}} for e in eps_values}
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "eps"
    table.attrs.update({"n": n, "step_size_rule": step_size_rule if isinstance(step_size_rule, str)
                        else float(step_size_rule), "restarts": int(restarts)})
    return table


def merge_grids(old: pd.DataFrame | None, new: pd.DataFrame) -> pd.DataFrame:
    """Every cell of both grids, `new` winning where both have one (grids of one net, one
    image set and one step rule; otherwise `new` alone)."""
    keys = ("n", "step_size_rule", "restarts", "weights")
    if old is None or any(old.attrs.get(k) != new.attrs.get(k) for k in keys):
        return new
    merged = new.combine_first(old)
    cols = ["clean", "fgsm"] + [c for _, c in _pgd_steps(merged)]
    merged = merged[[c for c in cols if c in merged.columns]].sort_index()
    merged.attrs.update(new.attrs)
    return merged


def _fmt_eps(eps: float) -> str:
    """2/255 when eps is a whole number of pixel levels, else a decimal."""
    levels = eps * 255
    if abs(levels - round(levels)) < 1e-6:
        return "0" if round(levels) == 0 else f"{round(levels)}/255"
    return f"{eps:.4g}"


NOISE_Z = 2.0


def noise_tolerance(a: float, b: float | None, n: int | None, tol: float | None = None) -> float:
    """How far two accuracies on the same `n` images may differ by random starts alone.

    Under random starts image i is classified correctly with some probability
    p_i, so an accuracy's variance is sum p_i (1 - p_i) / n^2 <= p (1 - p) / n
    (the binomial variance, reached when every image is a coin flip). Two runs
    therefore differ with a standard deviation of at most
    sqrt((a (1 - a) + b (1 - b)) / n); the slack is NOISE_Z of those, and at
    least one image. `b=None` marks a deterministic partner (clean accuracy).
    An explicit `tol` wins; without `n` the slack is DEFAULT_TOL.
    """
    if tol is not None:
        return float(tol)
    if not n:
        return DEFAULT_TOL
    var = a * (1 - a) + (b * (1 - b) if b is not None else 0.0)
    return max(1.0 / n, NOISE_Z * math.sqrt(max(var, 0.0) / n))


def sanity_checks(table: pd.DataFrame, tol: float | None = None) -> list[str]:
    """Warnings for every violated expectation of a robustness grid (empty list when all hold).

    A violation does not stop anything: it signals gradient masking or a weak
    attack, so the numbers deserve distrust.
    """
    n = table.attrs.get("n")
    table = table.sort_index()
    pgd_cols = [c for _, c in _pgd_steps(table)]
    attack_cols = (["fgsm"] if "fgsm" in table.columns else []) + pgd_cols
    eps_values = [float(e) for e in table.index]
    out: list[str] = []

    def acc(e: float, col: str) -> float:
        return float(table.at[e, col])

    def rises(lower: float, higher: float, deterministic_lower: bool = False) -> tuple[bool, str]:
        """Whether `higher` exceeds `lower` by more than noise, and the slack as text."""
        t = noise_tolerance(higher, None if deterministic_lower else lower, n, tol)
        return higher > lower + t, f"(tolerance {t:.4f})"

    if "clean" in table.columns:
        for e in eps_values:
            clean = acc(e, "clean")
            for col in attack_cols:
                a = acc(e, col)
                if abs(e) < 1e-12 and abs(a - clean) > 1e-9:
                    out.append(f"{col} at eps 0 gives {a:.4f}, clean accuracy is {clean:.4f}; "
                               "an attack with no budget must change nothing")
                elif (bad := rises(clean, a, deterministic_lower=True))[0]:
                    out.append(f"{col} at eps {_fmt_eps(e)} gives {a:.4f}, above clean "
                               f"accuracy {clean:.4f} {bad[1]}")
    for col in attack_cols:
        for lo, hi in itertools.pairwise(eps_values):
            if (bad := rises(acc(lo, col), acc(hi, col)))[0]:
                out.append(f"{col} accuracy rises with eps: {acc(lo, col):.4f} at "
                           f"{_fmt_eps(lo)} -> {acc(hi, col):.4f} at {_fmt_eps(hi)} {bad[1]}; "
                           "a sign of gradient masking or a weak attack")
    for e in eps_values:
        for fewer, more in itertools.pairwise(pgd_cols):
            if (bad := rises(acc(e, fewer), acc(e, more)))[0]:
                out.append(f"accuracy rises with PGD steps at eps {_fmt_eps(e)}: {fewer} "
                           f"{acc(e, fewer):.4f} -> {more} {acc(e, more):.4f} {bad[1]}")
        for col in pgd_cols if "fgsm" in table.columns else []:
            if (bad := rises(acc(e, "fgsm"), acc(e, col)))[0]:
                out.append(f"{col} beats FGSM at eps {_fmt_eps(e)}: {acc(e, col):.4f} > "
                           f"{acc(e, 'fgsm'):.4f} {bad[1]}; PGD should be the stronger attack, "
                           "a sign of gradient masking")
    return out


def autoattack_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float,
                        device: str | torch.device | None = None, version: str = "standard",
                        batch_size: int = 256) -> float:
    """Accuracy under AutoAttack (optional extra `attacks`), the field's reference evaluation."""
    from tamnas import attacks

    if device is not None:
        model.to(device)
    model.eval()
    dev = torch.device(device) if device is not None else next(
        (p.device for p in model.parameters()), torch.device("cpu"))
    try:
        x_adv = attacks.autoattack(model, x, y, eps, version=version, device=dev)
    except MissingExtraError:
        raise
    except ImportError as err:  # any other import failure: still the one-line CLI error
        msg = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        if "tamnas[attacks]" not in msg:
            msg = f"AutoAttack needs the optional extra: pip install 'tamnas[attacks]' ({msg})"
        raise MissingExtraError(msg) from None
    x_adv = _checked(x_adv.to(x.device), x, eps, "autoattack")
    correct = 0
    for start in range(0, len(x), batch_size):
        stop = start + batch_size
        correct += _correct(model, x_adv[start:stop].to(dev), y[start:stop].to(dev))
    return correct / len(x)


def _display(table: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    """Header and rows of error rates in percent ("-" for a cell not evaluated)."""
    header = ["eps"] + [str(c) for c in table.columns]
    rows = []
    for e, row in table.sort_index().iterrows():
        cells = ["-" if pd.isna(v) else f"{100 * (1 - float(v)):.2f}" for v in row.to_numpy()]
        rows.append([_fmt_eps(float(e))] + cells)
    return header, rows


def _notes(table: pd.DataFrame) -> str:
    notes = [f"{table.attrs['n']} test images"] if "n" in table.attrs else []
    if "step_size_rule" in table.attrs:
        notes.append(f"PGD step {table.attrs['step_size_rule']}")
    return "error %" + (f"; {', '.join(notes)}" if notes else "")


def format_grid(table: pd.DataFrame) -> str:
    """Aligned plain-text grid in percent, for the terminal."""
    header, rows = _display(table)
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
    lines = ["  ".join(cell.rjust(w) for cell, w in zip(r, widths)) for r in [header] + rows]
    return "\n".join(lines + [_notes(table)])


def markdown_grid(table: pd.DataFrame) -> str:
    """The grid as a GitHub Markdown table of error rates in percent, with its image count."""
    header, rows = _display(table)
    rule = ["---"] + ["---:"] * (len(header) - 1)
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(rule) + " |"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + f"\n\n{_notes(table)}\n"


ERR = "_err"


def save_grid(table: pd.DataFrame, path_base: str | Path) -> dict[str, Path]:
    """Write `<path_base>.csv` (eps, error rates as fractions: clean_err, fgsm_err, pgd-K_err),
    `<path_base>.md` (percent) and `<path_base>.json` (image count, step rule, restarts)."""
    base = Path(path_base)
    csv_path, md_path, meta = Path(f"{base}.csv"), Path(f"{base}.md"), Path(f"{base}.json")
    errors = (1 - table.sort_index()).rename(columns=lambda c: f"{c}{ERR}")
    frame = errors.reset_index()
    frame.insert(1, "eps_255", [float(e) * 255 for e in frame["eps"]])
    atomic_write_text(csv_path, frame.to_csv(index=False, float_format="%.10g"))
    atomic_write_text(md_path, markdown_grid(table))
    atomic_write_json(meta, {k: table.attrs[k] for k in ("n", "step_size_rule", "restarts",
                                                         "weights") if k in table.attrs})
    return {"csv": csv_path, "md": md_path, "json": meta}


def read_grid(path: str | Path) -> pd.DataFrame:
    """A grid written by `save_grid`, indexed by eps again (for `sanity_checks` on saved runs)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"robustness grid {path} does not exist")
    frame = pd.read_csv(path).drop(columns=["eps_255"], errors="ignore")
    if f"clean{ERR}" in frame.columns:  # error rates on file, accuracies in memory
        errs = [c for c in frame.columns if c.endswith(ERR)]
        frame[errs] = 1 - frame[errs]
        frame = frame.rename(columns={c: c[:-len(ERR)] for c in errs})
    if "eps" not in frame.columns or "clean" not in frame.columns:
        raise ValueError(f"{path} is not a robustness grid: it needs the columns eps and "
                         "clean_err")
    table = frame.set_index("eps")
    meta = Path(path).with_suffix(".json")
    if meta.is_file():
        table.attrs.update(read_json(meta, "delete it and run `tamnas evaluate` again"))
    return table


__all__ = [
    "DEFAULT_RULE",
    "autoattack_accuracy",
    "cell_generator",
    "format_grid",
    "markdown_grid",
    "merge_grids",
    "noise_tolerance",
    "pgd_column",
    "read_grid",
    "robustness_grid",
    "sanity_checks",
    "save_grid",
    "step_size",
]
