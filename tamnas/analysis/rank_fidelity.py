"""Rank fidelity of a supernet: do inherited scores order archs as standalone training does?

Pure statistics over one table of archs (inherited and standalone errors,
and the standalone nets' per-image error masks): rank correlations with
bootstrap intervals over archs, the inherited-minus-standalone gap, and
whether the ranking can be read at all. A tau means little without its
ceiling, the agreement of two standalone measurements of the same archs:
training seeds (with an interval over archs) and resamples of the evaluation
images; from both, the tau a predictor can reach and the seeds a readable
ranking needs (`analysis.noise`). The words are `fidelity_rules`'.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from tamnas.analysis import noise
from tamnas.analysis.correlation import (
    kendall_tau,
    kendall_tau_rows,
    partial_tau,
    partial_tau_rows,
    spearman_rho,
    spearman_rho_rows,
)
from tamnas.analysis.fidelity_rules import (
    CHANCE_MARGIN,
    OBJECTIVES,
    PARTLY_READABLE_CEILING,
    READABLE_CEILING,
    TRUST_WORDS,
    TRUSTED_TAU,
    objective_verdict,
    overall_verdict,
    readability,
    trust,
)


def near_chance(clean_err: Sequence[float], num_classes: int,
                margin: float = CHANCE_MARGIN) -> np.ndarray:
    """Which nets sit within `margin` of chance clean error: untrained, whatever they rank."""
    chance = 1.0 - 1.0 / int(num_classes)
    return np.asarray(clean_err, dtype=float) >= chance - margin


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
    measures how well the evaluation images alone let the archs be ranked,
    training noise left out. Resamples scatter around scores that already
    carry one sample's image noise, so this tau overstates the agreement of
    two independent image samples: `noise.image_tau_from_bootstrap` corrects it.
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
    """How far the archs' standalone errors spread, against the noise of what is compared.

    `se` holds the noise of each score (or one value for all): validate passes
    `noise.score_noise`'s, the paired image noise plus the seed noise of a mean of
    seeds. `standalone_noise` is their root mean square; `true_spread` removes it from
    the observed variance (zero when the archs differ no more than the noise does).
    Printed for the reader; no verdict rests on it.
    """
    s, e = np.asarray(standalone, dtype=float), np.asarray(se, dtype=float)
    std = float(np.std(s, ddof=1)) if len(s) > 1 else math.nan
    yardstick = float(np.sqrt(np.mean(e ** 2)))
    true_spread = float(np.sqrt(max(std ** 2 - yardstick ** 2, 0.0))) \
        if np.isfinite(yardstick) else math.nan
    return {"standalone_std": std, "standalone_range": float(np.ptp(s)),
            "standalone_noise": yardstick,
            "spread_to_noise": std / yardstick if yardstick > 0 else math.inf,
            "true_spread": true_spread}


def ceilings(s: dict, name_masks: np.ndarray, per_seed: list[np.ndarray],
              rng: np.random.Generator, n_boot: int) -> None:
    """The agreement of two standalone measurements and what it lets a predictor reach.

    Images: the tau of two independent image samples, from two bootstrap resamples of
    the evaluation images (of the seed-mean masks), corrected for the noise the
    measured scores already carry (`noise.image_tau_from_bootstrap`). Seeds (two or
    more): the mean tau over seed pairs with a bootstrap interval over archs; the reachable tau against the mean of the seeds
    (Spearman-Brown, image noise added: `noise.reachable_tau`) and the seeds a
    readable ranking needs, each with the interval that the seed tau's gives. With
    one seed the reachable tau is the images' bound alone.
    """
    seeds = len(per_seed)
    boot = bootstrap_ceiling(name_masks.mean(axis=1), rng, n_boot)
    s["ceiling_bootstrap"], s["ceiling_bootstrap_ci"] = boot["tau"], boot["ci"]
    s["ceiling_images"] = noise.image_tau_from_bootstrap(boot["tau"])
    s["seeds"] = seeds
    if seeds >= 2:
        agree = noise.seed_agreement(np.stack(per_seed), rng, n_boot)
        s["ceiling_seeds"], s["ceiling_seeds_ci"] = agree["tau"], agree["ci"]
        s["ceiling"], s["ceiling_source"] = agree["tau"], "seeds"
        image_tau = s["ceiling_images"] if np.isfinite(s["ceiling_images"]) else None
        s["ceiling_for_mean"] = noise.reachable_tau(agree["tau"], seeds, image_tau)
        s["ceiling_for_mean_ci"] = [noise.reachable_tau(t, seeds, image_tau) for t in agree["ci"]]
        s["seeds_needed"] = noise.seeds_needed(agree["tau"], seeds, image_tau)
        s["seeds_needed_ci"] = noise.seeds_needed_interval(agree["ci"], seeds, image_tau)
    else:
        s["ceiling_seeds"], s["ceiling_seeds_ci"] = None, [None, None]
        s["ceiling"], s["ceiling_source"] = s["ceiling_images"], "images"
        # one training: an upper bound that leaves the training noise out
        s["ceiling_for_mean"] = noise.reachable_tau(1.0, 1, s["ceiling_images"])
        s["ceiling_for_mean_ci"] = [None, None]
        s["seeds_needed"], s["seeds_needed_ci"] = math.nan, [math.nan, math.nan]


def assess(inherited: dict[str, np.ndarray], standalone: dict[str, np.ndarray],
           per_seed: dict[str, list[np.ndarray]], masks: dict[str, np.ndarray],
           rng: np.random.Generator, n_boot: int, num_classes: int | None = None,
           params: Sequence[float] | None = None) -> dict:
    """Every number of correlation.json for the objectives "clean" and "adv".

    inherited/standalone: per objective, one value per arch (standalone = mean over
    seeds); per_seed: per objective, one array per seed; masks: per objective,
    (archs x seeds x images) standalone error masks on the shared evaluation images.
    With `num_classes`, standalone nets near chance make the ranking "unjudgeable". With
    `params`, the size-controlled (partial) tau, its interval and its seed ceiling too.
    """
    untrained = 0
    if num_classes is not None:
        untrained = int(near_chance(standalone["clean"], num_classes).sum())
    out: dict = {}
    for name in OBJECTIVES:
        x, y = np.asarray(inherited[name], float), np.asarray(standalone[name], float)
        seeds = per_seed[name]
        s: dict = {"kendall_tau": kendall_tau(x, y), "spearman_rho": spearman_rho(x, y),
                   "kendall_tau_per_seed": [kendall_tau(x, ys) for ys in seeds],
                   "mean_gap": float(np.mean(x - y))}
        s.update(bootstrap_over_archs(x, y, rng, n_boot, params))
        if params is not None:
            s["partial_tau"] = partial_tau(x, y, params)
            pairs = [partial_tau(seeds[i], seeds[j], params) for i in range(len(seeds))
                     for j in range(i + 1, len(seeds))]
            pairs = [p for p in pairs if np.isfinite(p)]
            s["partial_ceiling"] = float(np.mean(pairs)) if pairs else None
        parts = noise.score_noise(masks[name])
        s["image_noise"], s["seed_noise"] = parts["image"], parts["seed"]
        # the noise of what is compared: one arch's seed-mean score against another's, images
        # paired; with one seed only the image part is known
        yardstick = parts["total"] if parts["seed_noise_known"] else parts["image"]
        s.update(spread_and_noise(y, [yardstick]))
        ceilings(s, np.asarray(masks[name], float), seeds, rng, n_boot)
        if len(seeds) >= 2:
            per_seed_taus = [t for t in s["kendall_tau_per_seed"] if np.isfinite(t)]
            s["kendall_tau_per_seed_mean"] = (float(np.mean(per_seed_taus)) if per_seed_taus
                                              else math.nan)
        s["readable"] = readability(s["ceiling_for_mean"], len(seeds) >= 2)
        if num_classes is not None:
            s["chance_err"], s["n_archs"] = 1.0 - 1.0 / num_classes, len(x)
            s["untrained"] = untrained
            if untrained:
                s["readable"] = "no"
        s["trust"] = trust(s["kendall_tau"], s["kendall_tau_ci"], s["readable"])
        s["verdict"] = objective_verdict(name, s)
        out[name] = s
    return out



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


__all__ = ["CHANCE_MARGIN", "OBJECTIVES", "PARTLY_READABLE_CEILING", "READABLE_CEILING",
           "TRUSTED_TAU", "TRUST_WORDS", "assess", "bootstrap_ceiling", "bootstrap_over_archs",
           "ceiling_for_mean", "ceilings", "kendall_tau", "kendall_tau_rows", "min_tau_archs", "near_chance",
           "objective_verdict", "overall_verdict", "partial_tau", "partial_tau_rows",
           "readability", "spearman_rho", "spearman_rho_rows", "spread_and_noise", "tau_summary",
           "trust"]
