"""Rank fidelity of a supernet: do inherited scores order archs as standalone training does?

Pure statistics over one table of archs (inherited and standalone errors
with their binomial standard errors): rank correlations with bootstrap
intervals over archs, the inherited-minus-standalone gap, and whether the
ranking can be read at all. A tau means little without its ceiling, the
agreement of two standalone measurements of the same archs: measured from
two training seeds, or estimated by resampling the evaluation images.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from tamnas.analysis.correlation import (
    kendall_tau,
    kendall_tau_rows,
    partial_tau,
    partial_tau_rows,
    spearman_rho,
    spearman_rho_rows,
)

# A ranking is readable when a tau against the standalone reference can reach 0.7
# (`ceiling_for_mean`); a tau of 0.5 on it is a front that can be trusted in order.
READABLE_CEILING = 0.7
PARTLY_READABLE_CEILING = 0.4
TRUSTED_TAU = 0.5
# Spread (std over archs) of the standalone scores in units of their standard error: pure noise
# gives about 1; below 1.5 the differences are mostly noise, from 2 on they stand out of it.
NOISE_SPREAD_TO_NOISE = 1.5
MIN_SPREAD_TO_NOISE = 2.0
OBJECTIVES = {"clean": "clean error", "adv": "adversarial error"}
CHANCE_MARGIN = 0.05   # a net within this of chance error (1 - 1/classes) learned nothing useful


def near_chance(clean_err: Sequence[float], num_classes: int,
                margin: float = CHANCE_MARGIN) -> np.ndarray:
    """Which nets sit within `margin` of chance clean error: untrained, whatever they rank."""
    chance = 1.0 - 1.0 / int(num_classes)
    return np.asarray(clean_err, dtype=float) >= chance - margin


TRUST_WORDS = {"yes": "the front's order can be trusted",
               "roughly": "the front's order is only a rough guide",
               "no": "the front's order cannot be trusted",
               "undecided": "too few archs to tell whether the front's order can be trusted "
                            "(use more --archs)",
               "unknown": "the front's order cannot be checked"}


def _interval(values: np.ndarray, point: float | None = None) -> list[float | None]:
    """Percentile 95% interval of the finite bootstrap values (None when there are none),
    widened to hold `point` (the estimate on all the data), which a skewed or nearly constant
    bootstrap distribution can leave outside its own percentiles."""
    values = values[np.isfinite(values)]
    if not len(values):
        return [None, None]
    lo, hi = (float(v) for v in np.percentile(values, [2.5, 97.5]))
    if point is not None and np.isfinite(point):
        lo, hi = min(lo, float(point)), max(hi, float(point))
    return [lo, hi]


def bootstrap_over_archs(inherited: Sequence[float], standalone: Sequence[float],
                         rng: np.random.Generator, n_boot: int,
                         params: Sequence[float] | None = None) -> dict[str, list]:
    """95% intervals of tau, rho, the mean gap (and the size-controlled tau when `params` are
    given), resampling archs with replacement."""
    x, y = np.asarray(inherited, dtype=float), np.asarray(standalone, dtype=float)
    idx = rng.integers(len(x), size=(n_boot, len(x)))
    out = {}
    if params is not None:
        z = np.asarray(params, dtype=float)
        out["partial_tau_ci"] = _interval(partial_tau_rows(x[idx], y[idx], z[idx]),
                                          partial_tau(x, y, z))
    return out | {
        "kendall_tau_ci": _interval(kendall_tau_rows(x[idx], y[idx]), kendall_tau(x, y)),
        "spearman_rho_ci": _interval(spearman_rho_rows(x[idx], y[idx]), spearman_rho(x, y)),
        "mean_gap_ci": _interval((x[idx] - y[idx]).mean(axis=1), float(np.mean(x - y)))}


def bootstrap_ceiling(wrong: np.ndarray, rng: np.random.Generator, n_boot: int) -> dict:
    """Tau between the archs' errors on two independent resamples of the evaluation images.

    `wrong` is (archs x images), 1 where an arch's standalone net errs. It
    measures how well the evaluation images alone let the archs be ranked;
    the noise of training is not in it, so it is an upper bound on the
    seed-to-seed ceiling.
    """
    wrong = np.asarray(wrong, dtype=float)
    n = wrong.shape[1]
    first = np.stack([wrong[:, rng.integers(n, size=n)].mean(axis=1) for _ in range(n_boot)])
    second = np.stack([wrong[:, rng.integers(n, size=n)].mean(axis=1) for _ in range(n_boot)])
    taus = kendall_tau_rows(first, second)
    finite = taus[np.isfinite(taus)]
    # the median, not the mean: it lies inside the percentile interval however skewed
    return {"tau": float(np.median(finite)) if len(finite) else math.nan, "ci": _interval(taus)}


def ceiling_for_mean(seed_tau: float, seeds: int) -> float:
    """The highest tau any predictor can reach against the mean of `seeds` standalone trainings.

    Two trainings of the same archs agree with `seed_tau`; for normal scores that is a
    correlation r = sin(pi tau / 2) (Greiner's relation), the mean of k trainings has
    reliability k r / (1 + (k - 1) r) (Spearman-Brown), and no predictor correlates with
    a measurement more than the square root of its reliability (the noise-free score
    does exactly that). Back on the tau scale, that bounds the tau validate reports,
    which is taken against the mean of the seeds: higher than `seed_tau`, since the mean
    is less noisy than one training and the predictor need not be noisy at all.
    """
    if not np.isfinite(seed_tau) or seeds < 1:
        return math.nan
    r = math.sin(math.pi * seed_tau / 2)
    if r <= 0:
        return 0.0
    reliability = seeds * r / (1 + (seeds - 1) * r)
    return 2 / math.pi * math.asin(math.sqrt(reliability))


def spread_and_noise(standalone: Sequence[float], se: Sequence[float]) -> dict[str, float]:
    """How far the archs' standalone errors spread, against the noise of one measurement.

    `noise` is the root-mean-square binomial standard error; `true_spread`
    removes that noise from the observed variance (zero when the archs
    differ no more than the noise does).
    """
    s, e = np.asarray(standalone, dtype=float), np.asarray(se, dtype=float)
    std = float(np.std(s, ddof=1)) if len(s) > 1 else math.nan
    noise = float(np.sqrt(np.mean(e ** 2)))
    true_spread = float(np.sqrt(max(std ** 2 - noise ** 2, 0.0)))
    return {"standalone_std": std, "standalone_range": float(np.ptp(s)),
            "standalone_noise": noise,
            "spread_to_noise": std / noise if noise > 0 else math.inf,
            "true_spread": true_spread}


def readability(ceiling: float, spread_to_noise: float) -> str:
    """"yes", "partly" or "no": can any predictor rank these archs, given their own noise?"""
    if not np.isfinite(ceiling) or ceiling < PARTLY_READABLE_CEILING \
            or spread_to_noise < NOISE_SPREAD_TO_NOISE:
        return "no"
    if ceiling >= READABLE_CEILING and spread_to_noise >= MIN_SPREAD_TO_NOISE:
        return "yes"
    return "partly"


def trust(tau: float, tau_ci: Sequence[float | None], readable: str) -> str:
    """Does the front's order follow the standalone order? One of TRUST_WORDS' keys.

    "undecided" when the interval spans both no agreement and the trusted
    level: too few archs to tell.
    """
    if readable == "no" or not np.isfinite(tau):
        return "unknown"
    lo, hi = tau_ci
    if lo is not None and lo > 0:
        return "yes" if tau >= TRUSTED_TAU else "roughly"
    if hi is not None and hi < TRUSTED_TAU:
        return "no"
    return "undecided"


def objective_verdict(name: str, s: dict) -> str:
    """One plain sentence on one objective (clean or adversarial error)."""
    label = OBJECTIVES[name]
    if not np.isfinite(s["ceiling"]):
        ceiling_txt = "ceiling unknown"
    elif s["ceiling_source"] == "seeds":
        ceiling_txt = (f"two training seeds agree with tau {s['ceiling']:.2f}, so a tau against "
                       f"their mean can reach {s['ceiling_for_mean']:.2f}")
    else:
        ceiling_txt = f"ceiling tau {s['ceiling']:.2f} (image bootstrap, an upper bound)"
    spread = (f"standalone errors spread {100 * s['standalone_std']:.1f} points (std) against "
              f"{100 * s['standalone_noise']:.1f} points of noise")
    tau = s["kendall_tau"]
    lo, hi = s["kendall_tau_ci"]
    tau_txt = (f"tau {tau:.2f} [{lo:.2f}, {hi:.2f}]" if np.isfinite(tau) and lo is not None
               else "tau n/a")
    gap = f"inherited errors {100 * s['mean_gap']:+.1f} points against standalone"
    if s.get("untrained"):
        return (f"{label.capitalize()}: the ranking cannot be judged: {s['untrained']} of "
                f"{s['n_archs']} standalone nets are within {100 * CHANCE_MARGIN:.0f} points of "
                f"chance ({100 * s['chance_err']:.0f}% clean error), so they learned nothing to "
                "rank; train them longer (retrain.epochs) and validate again.")
    if s["readable"] == "no":
        return (f"{label.capitalize()}: the ranking cannot be read ({spread}, {ceiling_txt}); even "
                f"standalone measurements do not agree on the order, so no tau here means "
                f"anything ({tau_txt}; {gap}).")
    trust_txt = TRUST_WORDS[s["trust"]]
    readable = "can be read" if s["readable"] == "yes" else "can only partly be read"
    per_seed = ""
    if s["ceiling_source"] == "seeds" and np.isfinite(s.get("kendall_tau_per_seed_mean", np.nan)):
        per_seed = (f"; against one seed at a time inherited scores reach tau "
                    f"{s['kendall_tau_per_seed_mean']:.2f}, one seed against the other "
                    f"{s['ceiling']:.2f}")
    size = ""
    ptau, pci = s.get("partial_tau", np.nan), s.get("partial_tau_ci", [None, None])
    if np.isfinite(ptau) and pci[0] is not None:
        pc = s.get("partial_ceiling")
        size = (f" With size held fixed, tau {ptau:.2f} [{pci[0]:.2f}, {pci[1]:.2f}]"
                + (f" (two seeds: {pc:.2f})" if pc is not None and np.isfinite(pc) else "")
                + ": how well it orders archs of similar size.")
    return (f"{label.capitalize()}: the ranking {readable} ({spread}; {ceiling_txt}); inherited "
            f"vs standalone {tau_txt}: {trust_txt} ({gap}{per_seed}).{size}")


def assess(inherited: dict[str, np.ndarray], standalone: dict[str, np.ndarray],
           standalone_se: dict[str, np.ndarray], per_seed: dict[str, list[np.ndarray]],
           wrong: dict[str, np.ndarray], rng: np.random.Generator, n_boot: int,
           num_classes: int | None = None, params: Sequence[float] | None = None) -> dict:
    """Every number of correlation.json for the objectives "clean" and "adv".

    inherited/standalone/standalone_se: per objective, one value per arch
    (standalone = mean over seeds); per_seed: per objective, one array per
    seed; wrong: per objective, (archs x images) standalone error masks.
    With `num_classes`, standalone nets near chance make the ranking "unjudgeable". With
    `params`, the size-controlled (partial) tau, its interval and its seed ceiling too.
    """
    untrained = 0
    if num_classes is not None:
        untrained = int(near_chance(standalone["clean"], num_classes).sum())
    out: dict = {}
    for name in OBJECTIVES:
        x, y = np.asarray(inherited[name], float), np.asarray(standalone[name], float)
        s: dict = {"kendall_tau": kendall_tau(x, y), "spearman_rho": spearman_rho(x, y),
                   "kendall_tau_per_seed": [kendall_tau(x, ys) for ys in per_seed[name]],
                   "mean_gap": float(np.mean(x - y))}
        s.update(bootstrap_over_archs(x, y, rng, n_boot, params))
        if params is not None:
            s["partial_tau"] = partial_tau(x, y, params)
            seeds_ = per_seed[name]
            s["partial_ceiling"] = (partial_tau(seeds_[0], seeds_[1], params)
                                    if len(seeds_) >= 2 else None)
        s.update(spread_and_noise(y, standalone_se[name]))
        boot = bootstrap_ceiling(wrong[name], rng, n_boot)
        s["ceiling_bootstrap"], s["ceiling_bootstrap_ci"] = boot["tau"], boot["ci"]
        seeds = per_seed[name]
        s["ceiling_seeds"] = kendall_tau(seeds[0], seeds[1]) if len(seeds) >= 2 else None
        if s["ceiling_seeds"] is not None:
            s["ceiling"], s["ceiling_source"] = s["ceiling_seeds"], "seeds"
            # the reported tau is against the mean of the seeds: its own, higher bound
            s["ceiling_for_mean"] = ceiling_for_mean(s["ceiling_seeds"], len(seeds))
            per_seed_taus = [t for t in s["kendall_tau_per_seed"] if np.isfinite(t)]
            s["kendall_tau_per_seed_mean"] = (float(np.mean(per_seed_taus)) if per_seed_taus
                                              else math.nan)
        else:
            s["ceiling"], s["ceiling_source"] = s["ceiling_bootstrap"], "bootstrap"
            s["ceiling_for_mean"] = s["ceiling"]  # one training: already an upper bound
        s["readable"] = readability(s["ceiling_for_mean"], s["spread_to_noise"])
        if num_classes is not None:
            s["chance_err"], s["n_archs"] = 1.0 - 1.0 / num_classes, len(x)
            s["untrained"] = untrained
            if untrained:
                s["readable"] = "no"
        s["trust"] = trust(s["kendall_tau"], s["kendall_tau_ci"], s["readable"])
        s["verdict"] = objective_verdict(name, s)
        out[name] = s
    return out


def overall_verdict(result: dict) -> str:
    """The headline: can the ranking be read, and how far can the front be trusted."""
    levels = {name: result[name]["readable"] for name in OBJECTIVES}
    trusts = {name: result[name]["trust"] for name in OBJECTIVES}
    untrained = result["clean"].get("untrained", 0)
    if untrained:
        return (f"The ranking cannot be judged: {untrained} of {result['clean']['n_archs']} "
                f"standalone nets are within {100 * CHANCE_MARGIN:.0f} points of chance clean "
                "error, so the standalone side of the comparison learned nothing; train them "
                "longer (retrain.epochs) before judging the front.")
    if all(v == "no" for v in levels.values()):
        return ("The ranking cannot be read: the standalone scores of these archs differ by about "
                "their own noise, so neither this supernet nor any other predictor can be checked "
                "here. Spread the archs' scores (harder data, a wider space) or shrink the noise "
                "(more evaluation images) before trusting or distrusting the front.")
    words = {"yes": "trusted", "roughly": "rough guide", "no": "not trusted",
             "undecided": "undecided", "unknown": "not readable"}
    parts = [f"{label}: {words[trusts[name]]}" for name, label in OBJECTIVES.items()]
    trusted = [n for n in OBJECTIVES if trusts[n] == "yes"]
    if len(trusted) == len(OBJECTIVES):
        head = ("The front can be trusted in order: inherited scores rank archs as standalone "
                "training does")
    elif trusted:
        head = "The front can be trusted in part"
    elif any(t == "roughly" for t in trusts.values()):
        head = ("The front is a rough guide only: inherited scores agree with standalone "
                "training weakly")
    elif any(t == "undecided" for t in trusts.values()):
        head = ("Too few archs to judge the front: the 95% intervals of tau span both no "
                "agreement and good agreement; run with more --archs (20 or more)")
    else:
        head = ("The front cannot be trusted: inherited scores do not rank archs as standalone "
                "training does")
    gaps = " and ".join(f"{100 * result[n]['mean_gap']:+.1f} ({'clean' if n == 'clean' else 'adv'})"
                        for n in OBJECTIVES)
    return (f"{head} ({'; '.join(parts)}). Inherited minus standalone error: {gaps} points on "
            "average.")


# --- a tau from a handful of archs (tamnas retrain's front members) ------------------------
TAU_BOOTSTRAP = 2000    # resamples of the archs for the tau interval
TAU_SEED = 0            # the interval of one table is the same every time it is drawn
TAU_LEVEL = 0.05        # a tau is worth reading when a perfect ranking would beat chance at this


def min_tau_archs(level: float = TAU_LEVEL) -> int:
    """Fewest archs for which a perfect ranking beats chance (two-sided exact test) at `level`.

    Under chance all n! orders are equally likely; tau = +1 or -1 each has
    probability 1/n!, so a perfect ranking is significant when 2/n! < level
    (5 archs at 5%). With fewer archs no tau, however large, says anything.
    """
    n, orders = 1, 1
    while 2.0 / orders >= level:
        n += 1
        orders *= n
    return n


def tau_summary(inherited: Sequence[float], other: Sequence[float]) -> dict:
    """Kendall tau of two error lists, n, and a 95% bootstrap interval over archs when readable."""
    x, y = np.asarray(inherited, dtype=float), np.asarray(other, dtype=float)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    out = {"tau": kendall_tau(x, y), "n": len(x), "ci": [None, None],
           "readable": len(x) >= min_tau_archs()}
    if out["readable"] and np.isfinite(out["tau"]):
        rng = np.random.default_rng(TAU_SEED)
        out["ci"] = bootstrap_over_archs(x, y, rng, TAU_BOOTSTRAP)["kendall_tau_ci"]
    return out


__all__ = ["CHANCE_MARGIN", "assess", "bootstrap_ceiling", "bootstrap_over_archs",
           "ceiling_for_mean", "kendall_tau", "kendall_tau_rows", "min_tau_archs", "near_chance",
           "objective_verdict", "overall_verdict", "partial_tau", "partial_tau_rows",
           "readability", "spearman_rho", "spearman_rho_rows", "spread_and_noise", "tau_summary",
           "trust"]
