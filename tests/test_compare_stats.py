"""compare's statistics against independent computations and simulated groups with known truth.

The simulation: per-image correctness p = base + arch effect + seed effect + image
difficulty (shared by every net, as the test images are), Bernoulli per net and image.
The truth a group difference estimates is base_a - base_b, plus the arch effect of a
group that has a single arch (its comparison is about that arch). Over TRIALS
simulated comparisons a 95% interval must cover the truth 95% +- TOL of the time:
TOL = 3.5 binomial standard errors of a coverage rate over TRIALS trials.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from tamnas.analysis.compare import (
    Difference,
    corrected_level,
    outcome,
    paired_difference,
    verdict_line,
)

TRIALS = 300
TOL = 3.5 * math.sqrt(0.95 * 0.05 / TRIALS)


def simulate(rng, archs_a, archs_b, seeds, n, delta, arch_sd=0.02, seed_sd=0.01):
    beta = rng.uniform(-0.25, 0.25, n)
    truth, groups = delta, []
    for base, archs, sign in ((0.6 + delta, archs_a, 1), (0.6, archs_b, -1)):
        arch = rng.normal(0, arch_sd, archs)
        if archs == 1:
            truth += sign * arch[0]
        seed = rng.normal(0, seed_sd, (archs, seeds))
        p = np.clip(base + arch[:, None, None] + seed[:, :, None] + beta, 0, 1)
        groups.append(rng.random(p.shape) < p)
    return groups[0], groups[1], truth


def test_the_difference_is_the_accuracy_gap_with_a_welch_df_from_the_spreads():
    # Nets that get the first k images right: every image pattern is explained by the net's
    # accuracy, so no image noise is shared beyond the nets' own and the interval is Welch's
    # on the arch means (group a) and the seeds (group b, one arch).
    acc_a = np.array([[0.8, 0.6], [0.7, 0.5], [0.9, 0.9]])  # (archs, seeds)
    acc_b = np.array([[0.5, 0.7]])                           # one arch, two seeds
    def masks(acc):
        c = np.zeros((*acc.shape, 10), bool)
        for i, j in np.ndindex(acc.shape):
            c[i, j, : round(10 * acc[i, j])] = True
        return c
    d = paired_difference(masks(acc_a), masks(acc_b))
    assert d.diff == pytest.approx(acc_a.mean() - acc_b.mean())
    va = np.var(acc_a.mean(axis=1), ddof=1) / 3
    vb = np.var(acc_b[0], ddof=1) / 2
    assert d.se ** 2 == pytest.approx(va + vb, rel=1e-9)
    assert d.df == pytest.approx((va + vb) ** 2 / (va ** 2 / 2 + vb ** 2 / 1), rel=1e-9)
    half = stats.t.ppf(0.975, d.df) * d.se
    assert (d.low, d.high) == pytest.approx((d.diff - half, d.diff + half), rel=1e-9)


def test_one_unit_a_side_with_no_archs_or_seeds_to_spread_is_unknown():
    a = np.ones((1, 1, 50), bool)
    d = paired_difference(a, a)
    assert not d.known and outcome(d) == "unknown"
    assert "cannot tell" in verdict_line("params<=2000", {"plain": d})


def test_without_arch_and_seed_noise_the_interval_is_the_paired_t_interval():
    # every arch and seed identical: only the images vary, so the interval is the paired
    # t interval of the per-image differences (scipy's t on n - 1 df).
    rng = np.random.default_rng(2)
    base_a, base_b = rng.random(200) < 0.7, rng.random(200) < 0.6
    a = np.broadcast_to(base_a, (3, 2, 200))
    b = np.broadcast_to(base_b, (2, 2, 200))
    d = paired_difference(a, b)
    diff = base_a.astype(float) - base_b
    half = stats.t.ppf(0.975, 199) * diff.std(ddof=1) / math.sqrt(200)
    assert d.diff == pytest.approx(diff.mean())
    assert d.low == pytest.approx(diff.mean() - half, rel=1e-6)
    assert d.high == pytest.approx(diff.mean() + half, rel=1e-6)


@pytest.mark.parametrize("archs_a,archs_b,seeds", [(2, 5, 2), (1, 1, 3), (2, 1, 2), (3, 5, 3)])
def test_intervals_cover_the_truth_at_about_their_nominal_rate(archs_a, archs_b, seeds):
    rng = np.random.default_rng([archs_a, archs_b, seeds])
    hits = 0
    for _ in range(TRIALS):
        a, b, truth = simulate(rng, archs_a, archs_b, seeds, 300, 0.03)
        d = paired_difference(a, b, 0.95)
        hits += d.low <= truth <= d.high
    assert abs(hits / TRIALS - 0.95) <= TOL, hits / TRIALS


def test_the_verdict_flips_with_the_sign_and_size_of_the_difference():
    rng = np.random.default_rng(5)
    found = {}
    for delta in (-0.15, 0.0, 0.15):
        a, b, _ = simulate(rng, 3, 5, 3, 1000, delta, arch_sd=0.005, seed_sd=0.005)
        found[delta] = outcome(paired_difference(a, b))
    assert found == {-0.15: "worse", 0.0: "tie", 0.15: "better"}
    line = verdict_line("params<=2000", {"random archs": paired_difference(
        *simulate(rng, 3, 5, 3, 1000, 0.15, 0.005, 0.005)[:2])})
    assert line.startswith("at params<=2000: the search pays off against random archs PGD +")


def test_bonferroni_widens_each_interval():
    assert corrected_level(1) == pytest.approx(0.95)
    assert corrected_level(6) == pytest.approx(1 - 0.05 / 6)
    rng = np.random.default_rng(3)
    a, b, _ = simulate(rng, 2, 5, 2, 300, 0.0)
    narrow, wide = paired_difference(a, b, 0.95), paired_difference(a, b, corrected_level(6))
    assert wide.low < narrow.low and wide.high > narrow.high
    with pytest.raises(ValueError, match="at least 1"):
        corrected_level(0)


def test_a_wide_tie_is_too_noisy_to_tell_and_a_narrow_one_is_no_difference():
    narrow = Difference(0.01, -0.01, 0.03, 0.01, 10.0, 0.95)
    wide = Difference(0.01, -0.08, 0.10, 0.04, 1.0, 0.95)
    assert outcome(narrow) == outcome(wide) == "tie"
    line = verdict_line("params<=2000", {"plain": narrow, "random search": wide})
    assert "no difference beyond noise against plain PGD +1.0 [-1.0, 3.0]" in line
    assert "too few seeds or archs to tell" in line and "random search PGD +1.0 [-8.0, 10.0]" in line
    assert "--search-seeds" in line  # one random search is one arch: more searches tell


def test_groups_scored_on_different_images_are_refused():
    with pytest.raises(ValueError, match="same images"):
        paired_difference(np.ones((1, 2, 10), bool), np.ones((1, 2, 11), bool))
