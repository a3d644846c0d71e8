"""`tamnas validate` on a tiny digits run: archs spread by params, standalone nets scored like
their inherited selves, correlations that scipy agrees with, resume, and one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from cli_configs import on_cpu, set_args
from scipy.stats import kendalltau, spearmanr

import tamnas
from tamnas.analysis import noise, rank_fidelity
from tamnas.analysis.validate import draw_archs
from tamnas.cli import main
from tamnas.data import load_data
from tamnas.files import load_checkpoint
from tamnas.rundir import RunDir, supernet_fingerprint
from tamnas.search.archive import parse_key
from tamnas.search.evaluator import Evaluator
from tamnas.train import load_trained_supernet

TINY = set_args(search__bn_images="64", search__eval_images="60", retrain__epochs="1")
N_ARCHS = 4


def cli(*argv: str) -> int:
    return main(on_cpu(*argv))


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("validate") / "run"
    assert cli("train-supernet", "quickstart", "--out", str(out), *TINY) == 0
    assert cli("validate", str(out), "--archs", str(N_ARCHS), "--seeds", "2",
               "--bootstrap", "100") == 0
    return out


def test_validate_writes_its_table_figure_correlations_and_report_section(run_dir):
    summary = pd.read_csv(run_dir / "validate" / "summary.csv")
    assert len(summary) == N_ARCHS and summary["arch"].is_unique
    assert list(summary["params"]) == sorted(summary["params"])  # quantiles of params, in order
    for which in ("clean", "adv"):
        for col in (f"inherited_{which}_err", f"standalone_{which}_err_s0",
                    f"standalone_{which}_err_s1", f"standalone_{which}_err"):
            p, se = summary[col], summary[f"{col}_se"]
            assert ((0 <= p) & (p <= 1)).all()
            np.testing.assert_allclose(se, np.sqrt(p * (1 - p) / summary["n_eval"]), rtol=1e-12)
    for fmt in ("png", "svg"):
        assert (run_dir / "figures" / f"validate.{fmt}").stat().st_size > 0
    corr = json.loads((run_dir / "validate" / "correlation.json").read_text())
    assert corr["supernet_fingerprint"] == supernet_fingerprint(run_dir)
    assert corr["n_archs"] == N_ARCHS and corr["seeds"] == 2
    report = (run_dir / "report.md").read_text()
    section = report.split("## Rank fidelity")[1]
    assert corr["verdict"] in section and "![validate](figures/validate.png)" in report
    assert corr["clean"]["readable"] in ("yes", "partly", "no")


def test_validate_correlations_agree_with_scipy_on_the_summary_columns(run_dir):
    summary = pd.read_csv(run_dir / "validate" / "summary.csv")
    corr = json.loads((run_dir / "validate" / "correlation.json").read_text())
    checked = 0
    for which in ("clean", "adv"):
        s = corr[which]
        x, y = summary[f"inherited_{which}_err"], summary[f"standalone_{which}_err"]
        for key, fn in (("kendall_tau", kendalltau), ("spearman_rho", spearmanr)):
            expected = fn(x, y)[0] if x.nunique() > 1 and y.nunique() > 1 else None
            if expected is None or not np.isfinite(expected):
                assert s[key] is None
            else:
                assert s[key] == pytest.approx(expected, abs=1e-12)
                checked += 1
                lo, hi = s[f"{key}_ci"]
                assert -1 <= lo <= hi <= 1
        assert s["mean_gap"] == pytest.approx(float((x - y).mean()), abs=1e-12)
        s0, s1 = summary[f"standalone_{which}_err_s0"], summary[f"standalone_{which}_err_s1"]
        assert s["ceiling_source"] == "seeds"
        if s0.nunique() > 1 and s1.nunique() > 1:
            assert s["ceiling"] == pytest.approx(kendalltau(s0, s1)[0], abs=1e-12)
            lo, hi = s["ceiling_seeds_ci"]
            assert -1 <= lo <= s["ceiling"] <= hi <= 1
            images = s["ceiling_images"]
            assert s["ceiling_for_mean"] == pytest.approx(
                noise.reachable_tau(s["ceiling"], 2, images), abs=1e-12)
            needed = noise.seeds_needed(s["ceiling"], 2, images)
            assert s["seeds_needed"] == ("never" if needed == float("inf") else needed)
            if not s.get("untrained"):
                assert s["readable"] == rank_fidelity.readability(s["ceiling_for_mean"], True)
        assert s["standalone_std"] == pytest.approx(float(y.std(ddof=1)), abs=1e-12)
        assert s["standalone_range"] == pytest.approx(float(y.max() - y.min()), abs=1e-12)
    assert checked  # the tiny run's scores are not all tied


def test_standalone_scores_come_from_the_evaluators_images(run_dir):
    """model.pt of each standalone net errs on the search's validation images as summary.csv says."""
    cfg = tamnas.load_config(run_dir / "config.toml")
    space, supernet = load_trained_supernet(cfg, RunDir(run_dir), torch.device("cpu"))
    evaluator = Evaluator.from_config(cfg, space, supernet, load_data(cfg.data, cfg.seed),
                                      torch.device("cpu"))
    summary = pd.read_csv(run_dir / "validate" / "summary.csv")
    for _, row in summary.iterrows():
        arch = parse_key(row["arch"])
        net = space.build_standalone(arch)
        folder = run_dir / "validate" / f"{int(row['index']):02d}-{row['arch']}" / "seed0"
        net.load_state_dict(load_checkpoint(folder / "model.pt", kind="standalone_weights"))
        with torch.no_grad():
            wrong = int((net.eval()(evaluator.val_x).argmax(1) != evaluator.val_y).sum())
        assert wrong / len(evaluator.val_y) == pytest.approx(row["standalone_clean_err_s0"],
                                                             abs=1e-12)
        assert evaluator.score(arch)["clean_err"] == pytest.approx(row["inherited_clean_err"],
                                                                   abs=1e-12)


def test_resume_skips_finished_archs_and_a_killed_one_continues_from_its_checkpoint(run_dir):
    root = run_dir / "validate"
    jobs = sorted(root.glob("*/seed*/scores.json"))
    assert len(jobs) == 2 * N_ARCHS
    before = {p: p.stat().st_mtime_ns for p in jobs}
    summary = (root / "summary.csv").read_text()
    killed = jobs[0].parent
    log = (killed / "train_log.csv").read_text()
    jobs[0].unlink()  # killed after its last checkpoint, before scoring
    assert cli("validate", str(run_dir), "--archs", str(N_ARCHS), "--seeds", "2",
               "--bootstrap", "100") == 0
    for p in jobs[1:]:
        assert p.stat().st_mtime_ns == before[p], p  # finished: not touched
    assert jobs[0].exists()
    assert (killed / "train_log.csv").read_text() == log  # resumed: no epoch trained again
    assert (root / "summary.csv").read_text() == summary


def test_validate_user_errors_are_one_line_exit_2(run_dir, tmp_path, capsys):
    cases = [(["validate", str(run_dir), "--archs", "2"], "at least 3"),
             (["validate", str(run_dir), "--seeds", "0"], "--seeds 0"),
             (["validate", str(run_dir), "--bootstrap", "10"], "--bootstrap 10"),
             (["validate", str(tmp_path / "nowhere")], "not a tamnas run directory")]
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "config.toml").write_text((run_dir / "config.toml").read_text())
    cases.append((["validate", str(bare)], "no trained supernet"))
    for argv, message in cases:
        capsys.readouterr()
        assert cli(*argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, err


def test_archs_are_spread_by_params_and_fixed_by_the_seed():
    cfg = tamnas.load_config("quickstart")
    space = tamnas.build_space(cfg)
    archs = draw_archs(space, 6, seed=3)
    assert archs == draw_archs(space, 6, seed=3) and archs != draw_archs(space, 6, seed=4)
    params = [space.params(a) for a in archs]
    assert len(set(archs)) == 6 and params == sorted(params)
    lo, hi = space.params_bounds()
    # evenly over the whole reachable range: the extremes lie in its outer tenths
    assert params[0] < lo + 0.1 * (hi - lo) and params[-1] > hi - 0.1 * (hi - lo)


def test_image_bootstrap_ceiling_separates_distinct_archs_from_equal_ones():
    rng = np.random.default_rng(0)
    n = 400
    distinct = np.stack([rng.random(n) < p for p in (0.05, 0.3, 0.6, 0.9)])
    equal = np.stack([rng.random(n) < 0.3 for _ in range(4)])
    high = rank_fidelity.bootstrap_ceiling(distinct, np.random.default_rng(1), 200)["tau"]
    low = rank_fidelity.bootstrap_ceiling(equal, np.random.default_rng(1), 200)["tau"]
    # error gaps of 25+ points against a standard error of about 2.3: the order never changes
    assert high == pytest.approx(1.0, abs=1e-12)
    assert low < 0.7
    assert rank_fidelity.readability(0.9) == "yes"
    assert rank_fidelity.readability(0.5) == "partly"
    assert rank_fidelity.readability(0.3) == "no"
    # one seed: the images' bound can still say no, never yes
    assert rank_fidelity.readability(0.9, seed_noise_known=False) == "unknown"
    assert rank_fidelity.readability(0.3, seed_noise_known=False) == "no"


def test_any_number_of_seeds_from_one_is_accepted():
    from tamnas.analysis.validate import check_request

    for seeds in (1, 2, 3, 7):
        check_request(5, seeds, 100)
    with pytest.raises(ValueError, match="--seeds 0"):
        check_request(5, 0, 100)


# -- two ranks --------------------------------------------------------------------------------
def _validate_on_rank(rank: int, world: int, port: int, run_dir: str) -> None:
    """One torchrun-like rank of `tamnas validate`; records which archs this rank trained."""
    import os

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      LOCAL_RANK=str(rank), WORLD_SIZE=str(world))
    torch.set_num_threads(1)
    from tamnas import distributed as dist
    from tamnas.commands import validate

    assert dist.init_from_env("cpu")
    trained = []
    run_job = validate.run_job

    def recording(ctx, evaluator, job, root, resume, quiet):
        trained.append(job.index)
        return run_job(ctx, evaluator, job, root, resume, quiet)

    validate.run_job = recording
    try:
        cfg = tamnas.load_config(f"{run_dir}/config.toml")
        validate.validate(cfg, run_dir, n_archs=N_ARCHS, bootstrap=100, device=torch.device("cpu"),
                       quiet=True)
    finally:
        dist.shutdown()
    with open(f"{run_dir}/trained-by-rank{rank}.json", "w") as f:
        json.dump(trained, f)


def _copy_trained_run(src, dst) -> None:
    (dst / "supernet").mkdir(parents=True)
    (dst / "config.toml").write_text((src / "config.toml").read_text())
    (dst / "supernet" / "checkpoint.pt").write_bytes((src / "supernet" / "checkpoint.pt")
                                                     .read_bytes())


def test_two_ranks_split_the_archs_and_give_the_one_rank_result(run_dir, tmp_path):
    from ranks import run_ranks

    one, two = tmp_path / "one", tmp_path / "two"
    for d in (one, two):
        _copy_trained_run(run_dir, d)
    assert cli("validate", str(one), "--archs", str(N_ARCHS), "--bootstrap", "100") == 0
    assert run_ranks(_validate_on_rank, (str(two),),
                     preload=["tamnas.commands.validate", "test_validate"]) == [0, 0]
    shares = [json.loads((two / f"trained-by-rank{r}.json").read_text()) for r in range(2)]
    assert sorted(shares[0] + shares[1]) == list(range(N_ARCHS)) and all(shares)
    assert (two / "validate" / "summary.csv").read_text() == \
        (one / "validate" / "summary.csv").read_text()
    a, b = (json.loads((d / "validate" / "correlation.json").read_text()) for d in (one, two))
    assert a == b


def test_vectorised_bootstrap_correlations_equal_scipys_with_ties():
    rng = np.random.default_rng(5)
    x = rng.integers(0, 4, size=(300, 7)).astype(float)   # coarse values: many ties
    y = rng.integers(0, 4, size=(300, 7)).astype(float)
    x[0] = 1.0                                             # a constant row has no ranking
    taus = rank_fidelity.kendall_tau_rows(x, y)
    rhos = rank_fidelity.spearman_rho_rows(x, y)
    assert np.isnan(taus[0]) and np.isnan(rhos[0])
    for i in range(1, len(x)):
        if np.ptp(x[i]) == 0 or np.ptp(y[i]) == 0:
            assert np.isnan(taus[i]) and np.isnan(rhos[i])
            continue
        assert taus[i] == pytest.approx(kendalltau(x[i], y[i])[0], abs=1e-12)
        assert rhos[i] == pytest.approx(spearmanr(x[i], y[i])[0], abs=1e-12)


@pytest.mark.parametrize("seeds", [1, 2])
def test_ceiling_for_mean_is_the_tau_of_the_noise_free_score_against_the_mean(seeds):
    """Simulated archs: true score + training noise per seed. The bound computed from two
    seeds' tau equals the tau that the noise-free score itself reaches against the mean."""
    rng = np.random.default_rng(7)
    n, noise = 4000, 0.8
    true = rng.normal(size=n)
    runs = true + noise * rng.normal(size=(seeds + 2, n))
    seed_tau = kendalltau(runs[-1], runs[-2])[0]         # two extra trainings give the ceiling
    reached = kendalltau(true, runs[:seeds].mean(axis=0))[0]
    # tau over 4000 items has a sampling SE of about 0.01; the bound is exact for normal scores
    assert rank_fidelity.ceiling_for_mean(seed_tau, seeds) == pytest.approx(reached, abs=0.03)
    assert rank_fidelity.ceiling_for_mean(seed_tau, seeds) > seed_tau
    assert rank_fidelity.ceiling_for_mean(1.0, seeds) == pytest.approx(1.0)
    assert rank_fidelity.ceiling_for_mean(-0.2, seeds) == 0.0


def test_partial_tau_is_kendalls_formula_on_scipys_taus():
    from scipy.stats import kendalltau

    from tamnas.analysis.rank_fidelity import partial_tau, partial_tau_rows

    rng = np.random.default_rng(0)
    x, y, z = rng.normal(size=(3, 30))
    txy, txz, tyz = (kendalltau(a, b)[0] for a, b in ((x, y), (x, z), (y, z)))
    expected = (txy - txz * tyz) / np.sqrt((1 - txz ** 2) * (1 - tyz ** 2))
    assert partial_tau(x, y, z) == pytest.approx(expected, abs=1e-12)
    rows = partial_tau_rows(np.stack([x, y]), np.stack([y, x]), np.stack([z, z]))
    assert rows == pytest.approx([expected, expected], abs=1e-12)


def test_partial_tau_reads_size_out_of_a_tau_that_only_follows_size():
    from tamnas.analysis.rank_fidelity import kendall_tau, partial_tau

    rng = np.random.default_rng(1)
    size = rng.uniform(1, 10, 400)
    merit = rng.normal(size=400)              # what differs among archs of one size
    standalone = -size + merit
    follows_size = -size + rng.normal(size=400)       # knows size, not merit
    knows_merit = -size + merit + 0.3 * rng.normal(size=400)
    plain = kendall_tau(follows_size, standalone)
    assert plain > 0.5                                   # plain tau looks good...
    # ...the size-controlled one sees through it (Kendall's partial tau is not exactly 0 under
    # conditional independence, but far below the plain one), and rewards knowing merit
    assert abs(partial_tau(follows_size, standalone, size)) < 0.4 * plain
    assert partial_tau(knows_merit, standalone, size) > \
        partial_tau(follows_size, standalone, size) + 0.3


def test_partial_tau_leaves_out_missing_values_as_kendall_tau_does():
    from tamnas.analysis.rank_fidelity import kendall_tau, partial_tau

    rng = np.random.default_rng(2)
    x, y, z = rng.normal(size=(3, 25))
    x[3], y[7], z[11] = np.nan, np.inf, np.nan
    ok = np.isfinite(x) & np.isfinite(y) & np.isfinite(z)
    assert partial_tau(x, y, z) == pytest.approx(partial_tau(x[ok], y[ok], z[ok]), abs=1e-12)
    assert np.isfinite(partial_tau(x, y, z))
    # the same archs left out as kendall_tau leaves out of its two lists
    keep = np.isfinite(x) & np.isfinite(y)
    assert kendall_tau(x, y) == pytest.approx(kendall_tau(x[keep], y[keep]), abs=1e-12)
    # NaN where kendall_tau is NaN: one arch left, or a constant list
    one = np.full(25, np.nan)
    one[0] = 1.0
    assert np.isnan(partial_tau(one, y, z)) and np.isnan(kendall_tau(one, y))
    assert np.isnan(partial_tau(np.ones(25), y, z)) and np.isnan(kendall_tau(np.ones(25), y))
