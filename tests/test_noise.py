"""The statistics of `analysis.noise` against independent computations: scipy's tests, loops over
pairs, and simulated scores with known arch, seed and image noise whose intervals must cover the
true value at their nominal rate (within a binomial tolerance on the coverage count)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from tamnas.analysis import noise, precision

NOMINAL = 0.95


def coverage_tolerance(trials: int, level: float = NOMINAL, z: float = 3.0) -> float:
    """Allowed |covered - level * trials|: z binomial standard deviations of the count."""
    return z * math.sqrt(trials * level * (1 - level))


def assert_coverage(covered: int, trials: int, level: float = NOMINAL) -> None:
    tol = coverage_tolerance(trials, level)
    assert abs(covered - level * trials) <= tol, (covered, trials, tol)


def simulate_groups(rng, trials, groups, n_images, share=0.7):
    """Error masks (trials x archs x seeds x images) of several groups on shared images.

    Each group is (mean error, archs, seeds, arch sd, seed sd). A net errs on image i when
    u < p_net, with u the image's own difficulty (shared by every net) with probability
    `share`, else a fresh uniform: each net's expected error is exactly p_net, and nets
    agree on hard images as real ones do (the pairing).
    """
    shared = rng.random((trials, 1, 1, n_images))
    out = []
    for mean, archs, seeds, arch_sd, seed_sd in groups:
        p = (mean + arch_sd * rng.normal(size=(trials, archs, 1, 1))
             + seed_sd * rng.normal(size=(trials, archs, seeds, 1)))
        own = rng.random((trials, archs, seeds, n_images))
        u = np.where(rng.random((trials, archs, seeds, n_images)) < share, shared, own)
        out.append((u < np.clip(p, 0, 1)).astype(np.float32))
    return out


# -- intervals and tests against scipy ------------------------------------------------------------
def test_t_interval_and_welch_equal_scipys():
    rng = np.random.default_rng(0)
    a, b = rng.normal(0.3, 0.02, 3), rng.normal(0.27, 0.05, 4)
    one = stats.ttest_1samp(a, 0.0).confidence_interval(0.9)
    got = noise.t_interval(a.mean(), a.std(ddof=1) / math.sqrt(3), 2, 0.9)
    assert got == pytest.approx([one.low, one.high], abs=1e-12)
    ref = stats.ttest_ind(a, b, equal_var=False)
    w = noise.welch_difference(a, b)
    assert w["p"] == pytest.approx(ref.pvalue, abs=1e-12)
    assert w["df"] == pytest.approx(ref.df, abs=1e-9)
    ci = ref.confidence_interval(0.95)
    assert w["ci"] == pytest.approx([ci.low, ci.high], abs=1e-12)
    # one value on a side: its variance is unknown, so there is no interval at all
    assert all(math.isnan(v) for v in noise.welch_difference(a[:1], b)["ci"])


def test_two_standard_errors_is_too_lenient_with_three_degrees_of_freedom():
    _, hi = noise.t_interval(0.0, 1.0, 3)
    assert hi == pytest.approx(stats.t.ppf(0.975, 3)) and hi > 3.1


def test_holm_equals_the_step_down_procedure():
    rng = np.random.default_rng(1)
    for _ in range(50):
        p = rng.random(6) ** 3
        adj = noise.holm_adjust(p)
        for alpha in (0.01, 0.05, 0.1):
            # the procedure: reject the i-th smallest while p_(i) <= alpha / (m - i)
            rejected = set()
            for i, j in enumerate(np.argsort(p)):
                if p[j] > alpha / (len(p) - i):
                    break
                rejected.add(j)
            assert {j for j in range(len(p)) if adj[j] <= alpha} == rejected
    assert np.isnan(noise.holm_adjust([0.01, np.nan])[1])
    assert noise.holm_adjust([0.01, np.nan])[0] == pytest.approx(0.01)
    assert noise.bonferroni_level(0.95, 2) == pytest.approx(0.975)


# -- group differences, images paired -------------------------------------------------------------
def _group_coverage(trials: int, seed: int, archs: int, seeds: int) -> int:
    """Simulated comparisons: `archs` archs x `seeds` seeds vs one plain arch x `seeds` seeds,
    400 shared images; arch sd 3 points, seed sd 1.5 points, true difference 2 points."""
    rng = np.random.default_rng(seed)
    covered = 0
    for start in range(0, trials, 250):       # in chunks: memory stays small
        n = min(250, trials - start)
        a, b = simulate_groups(rng, n, [(0.30, archs, seeds, 0.03, 0.015),
                                        (0.28, 1, seeds, 0.0, 0.015)], 400)
        for t in range(n):
            lo, hi = noise.group_difference(a[t], b[t])["ci"]
            covered += lo <= 0.02 <= hi
    return covered


def test_group_difference_interval_covers_the_true_difference_at_its_nominal_rate():
    assert_coverage(_group_coverage(300, 2, archs=6, seeds=3), 300)


@pytest.mark.slow
@pytest.mark.parametrize(("archs", "seeds"), [(3, 2), (5, 3), (10, 5)])
def test_group_difference_coverage_holds_over_many_trials_and_small_counts(archs, seeds):
    """3000 trials each: the binomial tolerance shrinks to about 1.2 points of coverage."""
    assert_coverage(_group_coverage(3000, 20 + archs, archs=archs, seeds=seeds), 3000)


def test_group_difference_verdict_flips_with_the_true_difference():
    rng = np.random.default_rng(3)
    trials = 200
    groups = [(0.30, 5, 3, 0.01, 0.01)]
    same = simulate_groups(rng, trials, groups * 2, 500)
    apart = simulate_groups(rng, trials, groups + [(0.15, 5, 3, 0.01, 0.01)], 500)
    same_v = [noise.interval_verdict(noise.group_difference(x, y)["ci"])
              for x, y in zip(*same)]
    apart_v = [noise.interval_verdict(noise.group_difference(x, y)["ci"])
               for x, y in zip(*apart)]
    # no difference: "within noise" at the nominal rate; 15 points against ~1 point: always above
    assert_coverage(same_v.count("within noise"), trials)
    assert apart_v == ["above"] * trials


def test_pairing_shrinks_the_image_noise_below_two_independent_binomials():
    rng = np.random.default_rng(4)
    a, b = simulate_groups(rng, 1, [(0.3, 1, 2, 0, 0.0), (0.3, 1, 2, 0, 0.0)], 2000, share=0.9)
    d = noise.group_difference(a[0], b[0])
    independent = math.sqrt(2 * 0.3 * 0.7 / 2000)
    assert d["image_se"] < 0.6 * independent
    # the image part is var over images of the per-image difference of seed means / n
    per_image = a[0].mean(axis=(0, 1)) - b[0].mean(axis=(0, 1))
    assert d["image_se"] == pytest.approx(per_image.std(ddof=1) / math.sqrt(2000), rel=1e-6)


def test_a_single_net_on_a_side_has_no_interval():
    rng = np.random.default_rng(5)
    a, b = simulate_groups(rng, 1, [(0.3, 4, 1, 0.02, 0.01), (0.3, 1, 1, 0, 0.01)], 100)
    d = noise.group_difference(a[0], b[0])
    assert not d["noise_known"] and all(math.isnan(v) for v in d["ci"])
    with pytest.raises(ValueError, match="same images"):
        noise.group_difference(a[0], b[0][..., :50])


def test_paired_bootstrap_covers_the_true_difference_with_enough_archs():
    """150 simulated comparisons of 20 archs x 3 seeds per group on 300 shared images."""
    rng = np.random.default_rng(6)
    trials = 150
    a, b = simulate_groups(rng, trials, [(0.30, 20, 3, 0.03, 0.015), (0.27, 20, 3, 0.03, 0.015)],
                           300)
    covered = 0
    for t in range(trials):
        lo, hi = noise.paired_bootstrap_difference(a[t], b[t], rng, n_boot=300)["ci"]
        covered += lo <= 0.03 <= hi
    assert_coverage(covered, trials)


def test_paired_bootstrap_shares_the_image_resample_between_groups():
    """Two identical groups differ by exactly zero in every replicate: images are paired."""
    rng = np.random.default_rng(7)
    (a,) = simulate_groups(rng, 1, [(0.3, 1, 1, 0, 0)], 200)
    d = noise.paired_bootstrap_difference(a[0], a[0], rng, n_boot=200)
    assert d["ci"] == [0.0, 0.0] and not d["seed_noise_known"]


def test_score_noise_equals_pairwise_loops():
    rng = np.random.default_rng(8)
    (w,) = simulate_groups(rng, 1, [(0.3, 5, 3, 0.05, 0.02)], 300)
    w = w[0].astype(float)
    got = noise.score_noise(w)
    means = w.mean(axis=1)
    pair = [np.var(means[i] - means[j], ddof=1) / 300 / 2
            for i in range(5) for j in range(5) if i != j]
    assert got["image"] == pytest.approx(math.sqrt(np.mean(pair)), rel=1e-9)
    nets = w.mean(axis=2)
    seed_var = np.mean([np.var(nets[i], ddof=1) for i in range(5)])
    assert got["seed"] == pytest.approx(math.sqrt(seed_var), rel=1e-9)
    assert got["total"] == pytest.approx(math.sqrt(got["image"] ** 2 + seed_var / 3), rel=1e-9)
    one = noise.score_noise(w[:, :1])
    assert math.isnan(one["seed"]) and math.isnan(one["total"]) and not one["seed_noise_known"]


# -- rank agreement, reliability, seeds needed ----------------------------------------------------
def population_tau(r: float) -> float:
    return 2 / math.pi * math.asin(r)


def test_seed_agreement_interval_covers_the_population_tau():
    """150 simulated validates: 30 archs, 2 seeds, merit sd 1, seed noise sd 0.7."""
    rng = np.random.default_rng(9)
    trials, archs, sd = 150, 30, 0.7
    true = population_tau(1 / (1 + sd ** 2))
    covered = 0
    for _ in range(trials):
        merit = rng.normal(size=archs)
        per_seed = merit + sd * rng.normal(size=(2, archs))
        lo, hi = noise.seed_agreement(per_seed, rng, 400)["ci"]
        covered += lo <= true <= hi
    assert_coverage(covered, trials)


def test_seed_agreement_is_the_mean_tau_over_seed_pairs():
    rng = np.random.default_rng(10)
    x = rng.normal(size=(3, 12))
    expected = np.mean([stats.kendalltau(x[i], x[j])[0] for i, j in ((0, 1), (0, 2), (1, 2))])
    assert noise.seed_agreement(x)["tau"] == pytest.approx(expected, abs=1e-12)
    assert math.isnan(noise.seed_agreement(x[:1])["tau"])


@pytest.mark.parametrize("seeds", [1, 3])
def test_reachable_tau_is_what_the_noise_free_merit_reaches(seeds):
    """Scores = merit + seed noise (per seed) + image noise (per arch, shared by its seeds,
    since they are scored on the same images). The tau that merit itself reaches against the
    seed mean equals reachable_tau of the two measured agreements."""
    rng = np.random.default_rng(11)
    n, seed_sd, image_sd = 6000, 0.8, 0.5
    merit = rng.normal(size=n)
    images = image_sd * rng.normal(size=(3, n))       # three image samples
    runs = merit + seed_sd * rng.normal(size=(seeds + 2, n))
    seed_tau = stats.kendalltau(runs[-1] + images[0], runs[-2] + images[0])[0]
    mean = runs[:seeds].mean(axis=0)
    image_tau = stats.kendalltau(mean + images[1], mean + images[2])[0]
    reached = stats.kendalltau(merit, mean + images[0])[0]
    # a tau over 6000 items has a sampling SE under 0.01
    assert noise.reachable_tau(seed_tau, seeds, image_tau) == pytest.approx(reached, abs=0.03)


def test_seeds_needed_is_the_smallest_count_that_reaches_the_target():
    """Against brute force over k on the exact variance parts."""
    for merit, seed_var, image_var in [(1.0, 0.5, 0.05), (1.0, 2.0, 0.1), (1.0, 4.0, 0.0),
                                       (1.0, 1.0, 0.8)]:
        seeds = 2
        # exact agreements: seeds on the same images share image noise; image samples share seeds
        seed_tau = population_tau((merit + image_var) / (merit + image_var + seed_var))
        image_tau = population_tau((merit + seed_var / seeds)
                                   / (merit + seed_var / seeds + image_var))
        target = math.sin(math.pi * noise.READABLE_TAU / 2) ** 2
        brute = next((k for k in range(1, 10_000)
                      if merit / (merit + seed_var / k + image_var) >= target), math.inf)
        assert noise.seeds_needed(seed_tau, seeds, image_tau) == brute
        assert noise.reachable_tau(seed_tau, seeds, image_tau) == pytest.approx(
            population_tau(math.sqrt(merit / (merit + seed_var / seeds + image_var))), abs=1e-9)
    assert noise.seeds_needed(0.0, 2) == math.inf
    assert math.isnan(noise.seeds_needed(math.nan, 2))
    assert noise.seeds_needed_interval([0.3, 0.6], 2) == [noise.seeds_needed(0.6, 2),
                                                         noise.seeds_needed(0.3, 2)]


def test_reachable_tau_without_images_is_the_spearman_brown_ceiling():
    from tamnas.analysis.rank_fidelity import ceiling_for_mean

    for tau in (0.1, 0.4, 0.67, 0.9):
        for k in (1, 2, 5):
            assert noise.reachable_tau(tau, k) == pytest.approx(ceiling_for_mean(tau, k),
                                                                abs=1e-12)


def test_difference_halfwidth_matches_simulated_spread():
    """The planning formula's standard error against the spread of simulated differences."""
    rng = np.random.default_rng(12)
    trials, seeds, n, seed_sd = 400, 3, 1000, 0.01
    a, b = simulate_groups(rng, trials, [(0.3, 1, seeds, 0, seed_sd)] * 2, n, share=0.8)
    diffs = a.mean(axis=(1, 2, 3)) - b.mean(axis=(1, 2, 3))
    # the variance over images of the per-image difference of seed means, averaged over trials
    disc = float(np.mean((a.mean(axis=2) - b.mean(axis=2)).var(axis=-1, ddof=1)))
    se = math.sqrt(2 * seed_sd ** 2 / seeds + disc / n)
    # the sd of 400 normal draws is within 3 * sd / sqrt(2 * 399) of the truth
    assert diffs.std(ddof=1) == pytest.approx(se, rel=3 / math.sqrt(2 * 399))
    half = precision.difference_halfwidth(seed_sd, disc, seeds, n)
    assert half == pytest.approx(stats.t.ppf(0.975, 2 * (seeds - 1)) * se, rel=1e-12)
    assert math.isnan(precision.difference_halfwidth(seed_sd, disc, 1, n))
    table = precision.precision_table(seed_sd, disc)
    assert (np.diff(table.to_numpy(), axis=0) < 0).all()   # more seeds: narrower
    assert (np.diff(table.to_numpy(), axis=1) < 0).all()   # more images: narrower


def test_image_tau_from_bootstrap_undoes_the_resamples_own_noise():
    """Normal scores: resamples of one measured sample agree more than two independent samples;
    the correction recovers the independent samples' tau."""
    rng = np.random.default_rng(13)
    n, noise_sd = 6000, 1.0
    merit = rng.normal(size=n)
    measured = merit + noise_sd * rng.normal(size=n)
    resamples = measured + noise_sd * rng.normal(size=(2, n))
    independent = merit + noise_sd * rng.normal(size=(2, n))
    boot = stats.kendalltau(*resamples)[0]
    truth = stats.kendalltau(*independent)[0]
    assert boot > truth + 0.1                      # the bias is real...
    # ...and the correction removes it (taus over 6000 items: sampling SE under 0.01)
    assert noise.image_tau_from_bootstrap(boot) == pytest.approx(truth, abs=0.03)
    assert noise.image_tau_from_bootstrap(0.2) == 0.0      # noise around noise: no agreement


def test_corrected_bootstrap_ceiling_matches_fresh_images_on_error_masks():
    """400 archs whose errors differ by about their image noise on 300 images: the corrected
    bootstrap ceiling of one image set against the tau of two fresh image sets."""
    from tamnas.analysis.rank_fidelity import bootstrap_ceiling

    rng = np.random.default_rng(14)
    archs, n = 400, 300
    p = 0.3 + 0.02 * rng.normal(size=(archs, 1))

    def draw():
        return (rng.random((archs, n)) < p).astype(float)
    boot = bootstrap_ceiling(draw(), rng, 40)["tau"]
    fresh = np.mean([stats.kendalltau(draw().mean(1), draw().mean(1))[0] for _ in range(5)])
    # SE of the bootstrap median from one image set ~0.03, of the mean of 5 fresh taus ~0.015
    assert noise.image_tau_from_bootstrap(boot) == pytest.approx(fresh, abs=0.1)
    assert boot > fresh + 0.1
