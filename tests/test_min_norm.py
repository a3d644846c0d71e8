"""MGDA's min-norm solver against brute force, the optimality conditions and degenerate inputs."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from tamnas.search.min_norm import NORMALIZATIONS, min_norm, normalize_grads


def _grads(rng: np.random.Generator, T: int, D: int) -> torch.Tensor:
    g = rng.normal(size=(T, D))
    g *= rng.uniform(0.5, 1.0, size=(T, 1)) / np.linalg.norm(g, axis=1, keepdims=True)
    return torch.from_numpy(g)


def _simplex_grid(T: int, step: float) -> np.ndarray:
    """All weight vectors on the simplex with coordinates in multiples of `step` (stars and bars)."""
    n = round(1 / step)
    bars = np.fromiter(itertools.chain.from_iterable(itertools.combinations(range(n + T - 1), T - 1)),
                       dtype=np.int64).reshape(-1, T - 1)
    rows = len(bars)
    edges = np.hstack([np.full((rows, 1), -1), bars, np.full((rows, 1), n + T - 1)])
    return (np.diff(edges, axis=1) - 1) / n


def _value(w: torch.Tensor, g: torch.Tensor) -> float:
    return float(((w.to(g.dtype) @ g) ** 2).sum())


@pytest.mark.parametrize("seed", range(6))
def test_two_objectives_match_a_fine_grid_search(seed):
    rng = np.random.default_rng(seed)
    g = _grads(rng, 2, [2, 5, 50][seed % 3])
    w = min_norm(g)
    gammas = np.linspace(0.0, 1.0, 10_001)
    values = ((gammas[:, None] * g[0].numpy() + (1 - gammas[:, None]) * g[1].numpy()) ** 2).sum(1)
    assert abs(float(w[0]) - gammas[values.argmin()]) <= 1e-4 + 1e-9
    assert _value(w, g) <= values.min() + 1e-12
    # Eq. 11 of paper 000, written out.
    u1, u2 = g[0], g[1]
    eq11 = float(torch.clamp(((u2 - u1) @ u2) / ((u1 - u2) @ (u1 - u2)), 0, 1))
    assert float(w[0]) == pytest.approx(eq11, abs=1e-12)
    assert float(w.sum()) == pytest.approx(1.0)


@pytest.mark.parametrize("T,step", [(3, 0.01), (4, 0.02), (5, 0.02)])
def test_more_objectives_no_worse_than_a_simplex_grid(T, step):
    grid = _simplex_grid(T, step)
    rng = np.random.default_rng(T)
    for D in (2, T, 3 * T, 40):      # D < T: the origin is often in the hull (stationary)
        g = _grads(rng, T, D)
        w = min_norm(g)
        assert float(w.min()) >= 0.0 and float(w.sum()) == pytest.approx(1.0)
        gram = g.numpy() @ g.numpy().T
        grid_best = float(((grid @ gram) * grid).sum(1).min())
        assert _value(w, g) <= grid_best + 1e-4


@pytest.mark.parametrize("T", [2, 3, 4, 5])
def test_result_is_a_common_descent_direction(T):
    """Optimality of the min-norm point: g_t . d >= ||d||^2 >= 0 for every objective."""
    rng = np.random.default_rng(100 + T)
    for trial in range(20):
        g = _grads(rng, T, [1, 2, 3, 10, 100][trial % 5])
        d = min_norm(g) @ g
        dots = g @ d
        assert float(dots.min()) >= float(d @ d) - 1e-6
        assert float(dots.min()) >= -1e-6


def test_iteration_cap_still_gives_simplex_weights_no_better_than_optimal():
    rng = np.random.default_rng(7)
    g = _grads(rng, 5, 20)
    full = _value(min_norm(g), g)
    few = min_norm(g, max_iter=3)
    assert float(few.min()) >= 0 and float(few.sum()) == pytest.approx(1.0)
    assert _value(few, g) >= full - 1e-12


def test_single_objective_gets_all_the_weight():
    assert min_norm(torch.randn(1, 7)).tolist() == [1.0]


@pytest.mark.parametrize("T", [2, 3, 5])
def test_identical_gradients_give_that_gradient(T):
    g = torch.randn(1, 9, dtype=torch.float64).repeat(T, 1)
    w = min_norm(g)
    assert torch.isfinite(w).all() and float(w.sum()) == pytest.approx(1.0)
    assert torch.allclose(w @ g, g[0], atol=1e-12)


@pytest.mark.parametrize("T", [2, 4])
def test_zero_gradients_give_a_zero_direction(T):
    w = min_norm(torch.zeros(T, 6))
    assert torch.isfinite(w).all() and float(w.sum()) == pytest.approx(1.0)
    assert torch.allclose(w, torch.full((T,), 1.0 / T))


def test_opposite_gradients_are_pareto_stationary():
    g = torch.tensor([[1.0, -2.0, 0.5], [-1.0, 2.0, -0.5]], dtype=torch.float64)
    w = min_norm(g)
    assert w.tolist() == pytest.approx([0.5, 0.5])
    assert float((w @ g).norm()) < 1e-12


def test_one_zero_gradient_among_others_stops_the_step():
    g = torch.tensor([[1.0, 2.0], [0.0, 0.0], [-3.0, 1.0]], dtype=torch.float64)
    assert float((min_norm(g) @ g).norm()) < 1e-9


def test_a_dominated_gradient_takes_all_the_weight():
    """g2 = 2 g1: the shorter one alone is the min-norm point."""
    g1 = torch.tensor([0.3, -1.0, 2.0], dtype=torch.float64)
    assert min_norm(torch.stack([g1, 2 * g1])).tolist() == pytest.approx([1.0, 0.0])
    g = torch.stack([2 * g1, g1, 3 * g1])
    assert min_norm(g).tolist() == pytest.approx([0.0, 1.0, 0.0], abs=1e-9)


def test_weights_keep_the_gradients_dtype():
    assert min_norm(torch.randn(3, 4)).dtype == torch.float32


@pytest.mark.parametrize("bad", [torch.zeros(0, 3), torch.tensor([[1.0, float("nan")], [0.0, 1.0]])])
def test_bad_gradients_raise_value_error(bad):
    with pytest.raises(ValueError, match="min_norm"):
        min_norm(bad)


def test_normalize_l2_gives_unit_norms_and_keeps_zero_gradients_zero():
    g = torch.tensor([[3.0, 4.0], [0.0, 0.0], [1e-12, 0.0]])
    out = normalize_grads(g, mode="l2")
    assert out[0].tolist() == pytest.approx([0.6, 0.8])
    assert out[1].tolist() == [0.0, 0.0]
    assert torch.isfinite(out).all() and float(out[2].norm()) <= 1e-3


def test_normalize_by_loss_and_loss_plus():
    g = torch.tensor([[3.0, 4.0], [1.0, 0.0]])
    losses = torch.tensor([2.0, 0.5])
    assert torch.allclose(normalize_grads(g, losses, "loss"), torch.tensor([[1.5, 2.0], [2.0, 0.0]]))
    assert torch.allclose(normalize_grads(g, losses, "loss+"), torch.tensor([[0.3, 0.4], [2.0, 0.0]]))
    assert normalize_grads(g, losses, "none") is g
    zero_loss = normalize_grads(g, torch.tensor([0.0, 1.0]), "loss")
    assert torch.isfinite(zero_loss).all()


def test_normalize_rejects_unknown_modes_and_missing_losses():
    with pytest.raises(ValueError, match="mode"):
        normalize_grads(torch.ones(2, 2), mode="max")
    with pytest.raises(ValueError, match="losses"):
        normalize_grads(torch.ones(2, 2), None, "loss")


def _exact_qp(g: np.ndarray) -> float:
    """min w^T M w over the simplex by enumeration: on each support S the optimum solves the
    KKT system [M_SS 1; 1^T 0] [w; mu] = [0; 1]; the best feasible one is the global optimum."""
    M = g @ g.T
    T = len(M)
    best = min(float(M[i, i]) for i in range(T))
    for k in range(2, T + 1):
        for S in itertools.combinations(range(T), k):
            kkt = np.zeros((k + 1, k + 1))
            kkt[:k, :k] = M[np.ix_(S, S)]
            kkt[:k, k] = kkt[k, :k] = 1.0
            rhs = np.zeros(k + 1)
            rhs[k] = 1.0
            try:
                w = np.linalg.solve(kkt, rhs)[:k]
            except np.linalg.LinAlgError:
                continue
            if w.min() >= -1e-12:
                w = np.clip(w, 0, None) / np.clip(w, 0, None).sum()
                best = min(best, float(w @ M[np.ix_(S, S)] @ w))
    return best


def _spread_grads(rng: np.random.Generator, T: int, D: int) -> np.ndarray:
    """Gradients whose norms span 1e-3..1e3, as with normalisation `none` or `loss`."""
    g = rng.normal(size=(T, D))
    return g / np.linalg.norm(g, axis=1, keepdims=True) * 10.0 ** rng.uniform(-3, 3, size=(T, 1))


def test_gradients_of_very_different_scales_reach_the_exact_optimum():
    # The stopping rule must be relative to the optimum, not to the largest gradient: a
    # 0.1% excess on ||d||^2 is far above float64 rounding (~1e-13 relative) at every scale.
    rng = np.random.default_rng(12)
    for case in range(200):
        T = 3 + case % 4
        D = (T + 1, 2 * T, 20)[case % 3]
        g = _spread_grads(rng, T, D)
        w = min_norm(torch.from_numpy(g)).numpy()
        d = w @ g
        value, best = float(d @ d), _exact_qp(g)
        assert value <= best * (1 + 1e-3), (case, value / best - 1)
        # a common descent direction: every objective decreases along -d
        assert (g @ d).min() >= (1 - 1e-3) * value, case


# -- the step direction: never raises an objective to first order ---------------------------------
def test_l2_solve_with_raw_step_would_raise_an_objective_but_the_direction_does_not():
    from tamnas.search.min_norm import descent_direction

    g = torch.tensor([[1.0, 0.0], [-10.0, 1.0]], dtype=torch.float64)
    # the old step: gamma solved on l2-normalised gradients, applied to the raw ones
    gamma = min_norm(normalize_grads(g, mode="l2"))
    raw = (gamma[:, None] * g).sum(0)
    assert float(g[0] @ raw) < 0                               # it raised objective 1
    d, gam = descent_direction(g, torch.ones(2, dtype=torch.float64), "l2")
    assert torch.allclose(gam, gamma) and float((g @ d).min()) >= 0


@pytest.mark.parametrize("mode", NORMALIZATIONS)
@pytest.mark.parametrize("T", [2, 3, 5])
def test_descent_direction_never_raises_an_objective_under_any_normalisation(mode, T):
    from tamnas.search.min_norm import descent_direction

    rng = np.random.default_rng(100 * T + NORMALIZATIONS.index(mode))
    for _ in range(40):
        D = int(rng.integers(2, 30))
        directions = rng.standard_normal((T, D))
        directions /= np.linalg.norm(directions, axis=1, keepdims=True)
        norms = 10.0 ** rng.uniform(-3, 3, size=T)            # gradient norms 1e-3 .. 1e3
        g = torch.from_numpy(directions * norms[:, None])
        losses = torch.from_numpy(10.0 ** rng.uniform(-2, 2, size=T))
        d, gamma = descent_direction(g, losses, mode)
        assert float(gamma.min()) >= 0 and abs(float(gamma.sum()) - 1) < 1e-12
        # the solver's float64 rounding floor (64 eps max ||g^||^2, see _converged), carried
        # into each objective's own units by its scale c_t = ||g_t|| / ||g^_t||
        ghat = normalize_grads(g, losses, mode)
        c = g.norm(dim=1) / ghat.norm(dim=1)
        slack = c * 64 * np.finfo(float).eps * float(ghat.norm(dim=1).max()) ** 2
        assert bool(((g @ d) >= -slack).all()), (mode, (g @ d).tolist())
