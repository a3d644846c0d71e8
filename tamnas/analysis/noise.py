"""The noise of what is compared: intervals, tests and projections for scores of trained nets.

A score here is an error rate of a standalone net: one training seed of one
arch, measured on a fixed set of evaluation images. Three things make it
noisy: which archs stand for a group, which seed trained each net, and which
images measured it. Images are shared by every net scored on the same split,
so differences are paired over them (a hard image is hard for both sides),
and their noise is that of the per-image difference, not of two independent
binomial counts. Masks are arrays (archs x seeds x images) with 1 where a net
errs. With one seed the seed noise is unknown: the functions here say so
(NaN, `seed_noise_known`) instead of reading it as zero.

Reliability language (validate): a noisy score is true merit + noise; its
reliability R is the share of its variance that is merit. Two measurements
that agree with Kendall tau have R = sin(pi tau / 2) (Greiner's relation for
normal scores); the mean of k seeds has R_k = k r / (1 + (k - 1) r)
(Spearman-Brown); noise components add, so 1 - R = (1 - R_seeds) + (1 -
R_images); a predictor can reach at most tau = 2/pi asin(sqrt(R)).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from tamnas.analysis.correlation import kendall_tau_rows

LEVEL = 0.95
READABLE_TAU = 0.7   # a ranking is readable when a perfect predictor could reach this tau


# -- intervals, tests, corrections ----------------------------------------------------------------
def t_interval(estimate: float, se: float, df: float, level: float = LEVEL) -> list[float]:
    """estimate -/+ t_{df} se: the interval of a mean-like estimate with `df` degrees of freedom.

    With 2-4 degrees of freedom t is 2.8-4.3, not 2: a "two standard errors" rule would claim
    far more than it knows.
    """
    from scipy.stats import t

    if not (np.isfinite(estimate) and np.isfinite(se) and df > 0):
        return [math.nan, math.nan]
    half = float(t.ppf(0.5 + level / 2, df)) * float(se)
    return [float(estimate) - half, float(estimate) + half]


def t_pvalue(estimate: float, se: float, df: float) -> float:
    """Two-sided p-value of estimate / se against a t distribution with `df` degrees of freedom."""
    from scipy.stats import t

    if not (np.isfinite(estimate) and np.isfinite(se) and df > 0) or se <= 0:
        return math.nan
    return float(2 * t.sf(abs(estimate) / se, df))


def welch_satterthwaite(variances: Sequence[float], dfs: Sequence[float]) -> float:
    """Degrees of freedom of a sum of independent variance terms v_i, each with df_i.

    (sum v)^2 / sum(v^2 / df); a term with df = inf (a known variance) adds no uncertainty.
    """
    v, d = np.asarray(variances, float), np.asarray(dfs, float)
    keep = v > 0
    if not keep.any():
        return math.inf
    v, d = v[keep], d[keep]
    denom = float(np.sum(np.where(np.isinf(d), 0.0, v ** 2 / np.where(np.isinf(d), 1.0, d))))
    return math.inf if denom == 0 else float(v.sum() ** 2 / denom)


def welch_difference(a: Sequence[float], b: Sequence[float], level: float = LEVEL) -> dict:
    """Welch's interval and test for mean(a) - mean(b) (independent samples, unequal variances).

    Each side needs two or more values; otherwise its variance is unknown and the
    interval is NaN (never a zero-width interval).
    """
    a, b = np.asarray(a, float), np.asarray(b, float)
    diff = float(a.mean() - b.mean()) if len(a) and len(b) else math.nan
    if len(a) < 2 or len(b) < 2:
        return {"diff": diff, "se": math.nan, "df": math.nan, "ci": [math.nan, math.nan],
                "p": math.nan}
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = float(np.sqrt(va + vb))
    df = welch_satterthwaite([va, vb], [len(a) - 1, len(b) - 1])
    return {"diff": diff, "se": se, "df": df, "ci": t_interval(diff, se, df, level),
            "p": t_pvalue(diff, se, df)}


def bonferroni_level(level: float, tests: int) -> float:
    """The per-test confidence level that keeps `level` for all `tests` intervals at once."""
    if tests < 1:
        raise ValueError(f"bonferroni_level: {tests} tests; need at least one")
    return 1.0 - (1.0 - float(level)) / int(tests)


def holm_adjust(pvalues: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values (family-wise error control, any dependence).

    Sort ascending, multiply the i-th smallest by (m - i), take running maxima, cap at 1;
    NaN p-values stay NaN and do not count as tests.
    """
    p = np.asarray(pvalues, float)
    out = np.full_like(p, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    m = len(ok)
    if not m:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    adjusted = np.maximum.accumulate(p[order] * (m - np.arange(m)))
    out[order] = np.minimum(adjusted, 1.0)
    return out


def interval_verdict(ci: Sequence[float]) -> str:
    """"above" when the whole interval is above 0, "below" when below, else "within noise"."""
    lo, hi = (float(v) for v in ci)
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return "unknown"
    return "above" if lo > 0 else "below" if hi < 0 else "within noise"


# -- groups of trained nets, images paired --------------------------------------------------------
def _masks(wrong) -> np.ndarray:
    w = np.asarray(wrong, dtype=float)
    if w.ndim == 2:
        w = w[:, None, :]           # one seed
    if w.ndim != 3 or 0 in w.shape:
        raise ValueError(f"error masks must be (archs x seeds x images), got shape {w.shape}")
    return w


def group_difference(a_wrong, b_wrong, level: float = LEVEL) -> dict:
    """Mean error of group a minus group b, images paired, with a t interval.

    Each group is (archs x seeds x images) masks on the SAME images. The units of a
    group are its archs (seed-mean masks), or its seeds for a group of one arch. The
    variance of the difference has two parts: the spread of each group's unit scores
    over its units (archs, seeds and each net's own image noise; over the number of
    units), and the image noise the two groups share, which no unit spread shows:
    var over images of the per-image difference of the group means, over the number
    of images, less the units' own image noise already counted in the first part.
    Degrees of freedom by Welch-Satterthwaite. A side with a single net (one arch,
    one seed) has an unknown variance: the interval is then NaN and `noise_known`
    is False.
    """
    a, b = _masks(a_wrong), _masks(b_wrong)
    if a.shape[2] != b.shape[2]:
        raise ValueError(f"group_difference: the groups were scored on {a.shape[2]} and "
                         f"{b.shape[2]} images; pairing needs the same images")
    n = a.shape[2]
    terms, dfs, own = [], [], 0.0
    known = True
    for w in (a, b):
        units = w.mean(axis=1) if w.shape[0] > 1 else w[0]     # (units, images) masks
        if len(units) < 2:
            known = False
            continue
        scores = units.mean(axis=1)
        terms.append(scores.var(ddof=1) / len(units))
        dfs.append(len(units) - 1)
        if n > 1:   # each unit's own image noise, as it enters the group mean
            own += float((units - units.mean(axis=0)).var(axis=1, ddof=1).mean()) \
                / n / (len(units) - 1)
    per_image = a.mean(axis=(0, 1)) - b.mean(axis=(0, 1))
    image_var = float(per_image.var(ddof=1) / n) if n > 1 else 0.0
    diff = float(per_image.mean())
    out = {"diff": diff, "image_se": math.sqrt(image_var), "noise_known": known,
           "n_archs": [a.shape[0], b.shape[0]], "n_seeds": [a.shape[1], b.shape[1]],
           "n_images": n}
    if not known:
        return out | {"se": math.nan, "df": math.nan, "ci": [math.nan, math.nan], "p": math.nan}
    shared = max(image_var - own, 0.0)
    se = math.sqrt(sum(terms) + shared)
    df = welch_satterthwaite(terms + [shared], dfs + [n - 1])
    return out | {"se": se, "df": df, "ci": t_interval(diff, se, df, level),
                  "p": t_pvalue(diff, se, df)}


def image_weights(n_images: int, rng: np.random.Generator, n_boot: int) -> np.ndarray:
    """(n_boot x n_images) weights of image resamples: counts of a draw with replacement / n.

    One row serves every group of a comparison, so the images stay paired.
    """
    counts = rng.multinomial(n_images, np.full(n_images, 1.0 / n_images), size=n_boot)
    return counts / float(n_images)


def _group_replicates(w: np.ndarray, weights: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Bootstrap replicates of a group's mean error: archs resampled, then seeds within each
    arch, then images with the shared `weights`."""
    archs, seeds, n = w.shape
    boot = weights.shape[0]
    per_net = (w.reshape(archs * seeds, n) @ weights.T).T.reshape(boot, archs, seeds)
    ai = rng.integers(archs, size=(boot, archs, 1))
    si = rng.integers(seeds, size=(boot, archs, seeds))
    return per_net[np.arange(boot)[:, None, None], ai, si].mean(axis=(1, 2))


def paired_bootstrap_difference(a_wrong, b_wrong, rng: np.random.Generator, n_boot: int = 2000,
                                level: float = LEVEL) -> dict:
    """Percentile interval of mean error a - b from a bootstrap over archs x seeds x images.

    Archs are resampled within each group, seeds within each arch, and images once per
    replicate for both groups (paired). With few archs or seeds a percentile bootstrap
    is narrower than the truth (it cannot see variance it never sampled); `group_difference`'s
    t interval is the one to decide with at 2-5 units per group.
    """
    a, b = _masks(a_wrong), _masks(b_wrong)
    if a.shape[2] != b.shape[2]:
        raise ValueError(f"paired_bootstrap_difference: {a.shape[2]} vs {b.shape[2]} images; "
                         "pairing needs the same images")
    weights = image_weights(a.shape[2], rng, n_boot)
    reps = _group_replicates(a, weights, rng) - _group_replicates(b, weights, rng)
    tail = 50 * (1 - level)
    lo, hi = (float(v) for v in np.percentile(reps, [tail, 100 - tail]))
    return {"diff": float(a.mean() - b.mean()), "ci": [lo, hi], "se": float(reps.std(ddof=1)),
            "seed_noise_known": a.shape[1] > 1 and b.shape[1] > 1}


def score_noise(wrong) -> dict:
    """The noise of one arch's seed-mean error, as it enters a comparison with another arch.

    `image`: paired image noise, sqrt(mean over arch pairs of var_images(w_i - w_j) / n / 2)
    (per score, so that two scores differ by sqrt(2) of it); `seed`: the seed standard
    deviation of one net's error (mean within-arch variance over seeds), NaN with one seed;
    `total`: sqrt(image^2 + seed^2 / seeds), NaN when the seed part is unknown.
    """
    w = _masks(wrong)
    archs, seeds, n = w.shape
    per_image = w.mean(axis=1)                      # (archs, images), seed means
    if archs > 1 and n > 1:
        cov = np.cov(per_image)
        diag = np.diag(cov)
        pair_var = diag[:, None] + diag[None, :] - 2 * cov
        image = math.sqrt(max(float(pair_var[~np.eye(archs, dtype=bool)].mean()) / n / 2, 0.0))
    else:
        image = math.nan
    nets = w.mean(axis=2)
    seed = float(np.sqrt(nets.var(axis=1, ddof=1).mean())) if seeds > 1 else math.nan
    total = math.sqrt(image ** 2 + seed ** 2 / seeds) if np.isfinite(seed) else math.nan
    return {"image": image, "seed": seed, "total": total, "seeds": seeds,
            "seed_noise_known": seeds > 1}


# -- rank agreement: seed ceiling, reliability, seeds needed --------------------------------------
def reliability(tau: float) -> float:
    """Pearson reliability r = sin(pi tau / 2) of two measurements that agree with Kendall tau."""
    return math.sin(math.pi * float(tau) / 2) if np.isfinite(tau) else math.nan


def tau_of_reliability(r: float) -> float:
    """The tau a perfect predictor reaches against a measurement of reliability r."""
    if not np.isfinite(r):
        return math.nan
    return 2 / math.pi * math.asin(math.sqrt(min(max(float(r), 0.0), 1.0)))


def spearman_brown(r: float, k: float) -> float:
    """Reliability of the mean of k measurements, each of reliability r."""
    if not np.isfinite(r) or k < 1:
        return math.nan
    if r <= 0:
        return 0.0
    return k * r / (1 + (k - 1) * r)


def seed_agreement_rows(per_seed: np.ndarray) -> np.ndarray:
    """Mean Kendall tau over all seed pairs, per row of a (rows x seeds x archs) array."""
    x = np.asarray(per_seed, float)
    seeds = x.shape[1]
    pairs = [(i, j) for i in range(seeds) for j in range(i + 1, seeds)]
    if not pairs:
        return np.full(x.shape[0], np.nan)
    taus = np.stack([kendall_tau_rows(x[:, i], x[:, j]) for i, j in pairs])
    finite = np.isfinite(taus)
    count = finite.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(finite, taus, 0.0).sum(axis=0) / count
    return np.where(count > 0, mean, np.nan)


def seed_agreement(per_seed, rng: np.random.Generator | None = None, n_boot: int = 0,
                   level: float = LEVEL) -> dict:
    """How well two trainings of the same archs agree: the mean tau over seed pairs.

    `per_seed` is (seeds x archs), one score per arch and training seed. With `rng`
    and `n_boot`, a percentile interval from resampling archs (the sample of archs is
    the main uncertainty of a tau over 10-30 archs). NaN with fewer than two seeds.
    """
    x = np.asarray(per_seed, float)
    if x.ndim != 2:
        raise ValueError(f"seed_agreement: per_seed must be (seeds x archs), got shape {x.shape}")
    tau = float(seed_agreement_rows(x[None])[0])
    out = {"tau": tau, "ci": [math.nan, math.nan], "seeds": x.shape[0]}
    if rng is not None and n_boot and x.shape[0] >= 2 and np.isfinite(tau):
        idx = rng.integers(x.shape[1], size=(n_boot, x.shape[1]))
        reps = seed_agreement_rows(np.transpose(x[:, idx], (1, 0, 2)))
        reps = reps[np.isfinite(reps)]
        if len(reps):
            tail = 50 * (1 - level)
            lo, hi = (float(v) for v in np.percentile(reps, [tail, 100 - tail]))
            out["ci"] = [min(lo, tau), max(hi, tau)]
    return out


def image_tau_from_bootstrap(boot_tau: float) -> float:
    """The tau of two independent image samples, from the tau of two bootstrap resamples.

    Resamples scatter around the measured scores, which already carry one sample's image
    noise s^2 on top of the merit variance V: their reliability is (V + s^2) / (V + 2 s^2),
    not V / (V + s^2). Solving gives R = 2 - 1 / R_boot (0 when the resamples agree no
    better than noise around noise), returned on the tau scale, 2/pi asin(R).
    """
    r_boot = reliability(boot_tau)
    if not np.isfinite(r_boot):
        return math.nan
    r = 0.0 if r_boot <= 0.5 else 2.0 - 1.0 / r_boot
    return 2 / math.pi * math.asin(min(r, 1.0))


def reachable_tau(seed_tau: float, seeds: int, image_tau: float | None = None) -> float:
    """The highest tau any predictor reaches against the mean of `seeds` standalone trainings.

    Seed noise: Spearman-Brown on r = sin(pi seed_tau / 2). Image noise (optional): the tau
    of two independent image samples (`image_tau`), reliability sin(pi image_tau / 2). The
    noise parts add: R = R_seeds + R_images - 1. Without `image_tau` this is
    `rank_fidelity.ceiling_for_mean`.
    """
    r_seeds = spearman_brown(reliability(seed_tau), seeds)
    r_images = 1.0 if image_tau is None else reliability(image_tau)
    return tau_of_reliability(r_seeds + r_images - 1)


def seeds_needed(seed_tau: float, seeds: int = 1, image_tau: float | None = None,
                 target: float = READABLE_TAU) -> float:
    """Fewest training seeds whose mean a predictor could rank with `target` tau.

    From the reliability parts measured at `seeds` seeds (see `reachable_tau`): in units
    of the score variance there, merit V = R, seed noise a = seeds (1 - R_seeds) per
    seed, image noise b = 1 - R_images; k seeds give V / (V + a / k + b). inf when no
    number of seeds reaches the target (the images' noise alone keeps it below, or
    the seeds do not agree at all); NaN when seed_tau is unknown.
    """
    if not np.isfinite(seed_tau):
        return math.nan
    r_seeds = spearman_brown(reliability(seed_tau), seeds)
    r_images = 1.0 if image_tau is None else reliability(image_tau)
    merit = r_seeds + r_images - 1
    if merit <= 0:
        return math.inf
    a, b = seeds * (1 - r_seeds), 1 - r_images
    want = math.sin(math.pi * target / 2) ** 2
    room = merit / want - merit - b      # the seed noise a / k that still reaches the target
    if room <= 0:
        return math.inf
    return float(max(1, math.ceil(a / room - 1e-12)))


def seeds_needed_interval(tau_ci: Sequence[float], seeds: int, image_tau: float | None = None,
                          target: float = READABLE_TAU) -> list[float]:
    """`seeds_needed` at the ends of an interval of the seed tau (a higher tau needs fewer)."""
    lo, hi = tau_ci
    return [seeds_needed(hi, seeds, image_tau, target), seeds_needed(lo, seeds, image_tau, target)]


__all__ = ["LEVEL", "READABLE_TAU", "bonferroni_level", "group_difference",
           "holm_adjust", "image_tau_from_bootstrap", "image_weights", "interval_verdict", "paired_bootstrap_difference",
           "reachable_tau", "reliability", "score_noise", "seed_agreement",
           "seed_agreement_rows", "seeds_needed", "seeds_needed_interval",
           "spearman_brown", "t_interval", "t_pvalue", "tau_of_reliability",
           "welch_difference", "welch_satterthwaite"]
