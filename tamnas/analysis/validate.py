"""Rank fidelity of one run: the statistics of `tamnas validate`, as pure functions.

N archs are drawn spread over the space by parameter count (not from the
front); the command retrains each standalone and scores it as its inherited
self; here the scores become the summary table and correlation.json (the
statistics themselves are in `rank_fidelity`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from tamnas.analysis import rank_fidelity
from tamnas.metrics import binomial_se
from tamnas.search.archive import arch_key
from tamnas.supernets.base import Arch, SearchSpace

DIR_NAME = "validate"
MIN_ARCHS = 3           # fewer archs have no rank correlation worth a number
MIN_BOOTSTRAP = 100     # fewer resamples give no 95% interval
OBJECTIVES = ("clean", "adv")


def check_request(n_archs: int, seeds: int, bootstrap: int) -> None:
    """The command-line numbers, checked before any work starts."""
    if n_archs < MIN_ARCHS:
        raise ValueError(f"--archs {n_archs}: a rank correlation needs at least {MIN_ARCHS} archs "
                         "(20 or more give a usable interval)")
    if seeds < 1:
        raise ValueError(f"--seeds {seeds}: use 1 or more (2 or more measure the training noise "
                         "and the seeds a readable ranking needs)")
    if bootstrap < MIN_BOOTSTRAP:
        raise ValueError(f"--bootstrap {bootstrap}: use at least {MIN_BOOTSTRAP} resamples "
                         "for a 95% interval")


def draw_archs(space: SearchSpace, n: int, seed: int,
               params_range: list[int] | None = None) -> list[Arch]:
    """N distinct archs spread evenly by parameter count over the space (or `params_range`).

    Not quantiles of uniform samples: those crowd around the median size, where
    archs trained alone differ little, so no predictor could rank them.
    """
    rng = np.random.default_rng([int(seed), 0x5A11D])  # a stream of its own, apart from search's
    archs = space.spread_by_params(rng, n, bounds=params_range)
    return sorted(archs, key=lambda a: (space.params(a), a))


@dataclass(frozen=True)
class Job:
    """One standalone training: arch number `index`, training seed number `seed_index`."""

    index: int
    arch: Arch
    seed_index: int

    def folder(self, root: Path) -> Path:
        return root / f"{self.index:02d}-{arch_key(self.arch)}" / f"seed{self.seed_index}"


def summary_frame(space: SearchSpace, archs: list[Arch], inherited: list[dict],
                  results: dict[Job, dict], seeds: int) -> pd.DataFrame:
    """One row per arch: params, inherited and standalone errors (per seed and mean), their SEs."""
    rows = []
    for i, (arch, inh) in enumerate(zip(archs, inherited)):
        n = int(inh["n_eval"])
        row = {"index": i, "arch": arch_key(arch), "params": int(space.params(arch)),
               "flops": int(space.flops(arch)), "n_eval": n}
        for which in OBJECTIVES:
            row[f"inherited_{which}_err"] = float(inh[f"{which}_err"])
            row[f"inherited_{which}_err_se"] = float(inh[f"{which}_err_se"])
        for s in range(seeds):
            res = results[Job(i, arch, s)]
            for which in OBJECTIVES:
                row[f"standalone_{which}_err_s{s}"] = float(res[f"{which}_err"])
                row[f"standalone_{which}_err_s{s}_se"] = float(res[f"{which}_err_se"])
        for which in OBJECTIVES:
            mean = float(np.mean([row[f"standalone_{which}_err_s{s}"] for s in range(seeds)]))
            row[f"standalone_{which}_err"] = mean
            row[f"standalone_{which}_err_se"] = binomial_se(mean, n)  # over the same n images
        rows.append(row)
    return pd.DataFrame(rows)


def correlations(summary: pd.DataFrame, archs: list[Arch], results: dict[Job, dict],
                 seeds: int, n_boot: int, seed: int, num_classes: int | None = None) -> dict:
    """correlation.json's numbers from the summary and the per-image standalone masks."""
    col = {w: summary[f"standalone_{w}_err"].to_numpy(float) for w in OBJECTIVES}
    per_seed = {w: [summary[f"standalone_{w}_err_s{s}"].to_numpy(float) for s in range(seeds)]
                for w in OBJECTIVES}
    # (archs x seeds x images): every net on the same images, so comparisons are paired
    masks = {w: np.stack([np.stack([np.asarray(results[Job(i, a, s)][f"{w}_wrong"], float)
                                    for s in range(seeds)]) for i, a in enumerate(archs)])
             for w in OBJECTIVES}
    inherited = {w: summary[f"inherited_{w}_err"].to_numpy(float) for w in OBJECTIVES}
    rng = np.random.default_rng([int(seed), 0xB007])
    return rank_fidelity.assess(inherited, col, per_seed, masks, rng, n_boot,
                                num_classes=num_classes,
                                params=summary["params"].to_numpy(float))


NEVER = "never"   # seeds_needed when no number of seeds reaches a readable ranking


def _clean_json(value, key: str = ""):
    """NaN and infinity as null, so correlation.json is strict JSON; an infinite number of
    seeds needed is "never" (null would read as unknown)."""
    if key.startswith("seeds_needed"):
        if isinstance(value, (list, tuple)):
            return [_clean_json(v, key) for v in value]
        if isinstance(value, float) and math.isinf(value):
            return NEVER
        if isinstance(value, float) and math.isfinite(value):
            return int(value)
    if isinstance(value, dict):
        return {k: _clean_json(v, str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean_json(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def result_blob(summary: pd.DataFrame, stats: dict, *, n_archs: int, seeds: int, bootstrap: int,
                retrain_epochs: int, attack: dict, fingerprint: str) -> dict:
    """correlation.json: the request, the statistics and the verdict, as strict JSON."""
    from tamnas.files import json_safe

    return _clean_json(json_safe({
        "n_archs": n_archs, "seeds": seeds, "bootstrap": bootstrap,
        "n_eval": int(summary["n_eval"].iloc[0]), "retrain_epochs": retrain_epochs,
        "attack": attack, "supernet_fingerprint": fingerprint,
        **stats, "verdict": rank_fidelity.overall_verdict(stats)}))


def format_result(blob: dict) -> str:
    """The console lines: the verdict, then one line per objective."""
    lines = [f"validate: {blob['verdict']}"]
    lines += [f"  {blob[w]['verdict']}" for w in OBJECTIVES]
    return "\n".join(lines)


__all__ = ["Job", "check_request", "correlations", "draw_archs", "format_result", "result_blob",
           "summary_frame"]
