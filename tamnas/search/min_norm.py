"""MGDA's min-norm problem: simplex weights whose gradient combination has the smallest norm.

Given the gradients g_1..g_T of T objectives, min_w ||sum_t w_t g_t||^2 over
the simplex gives the direction d = sum_t w_t g_t that decreases every
objective at once (g_t . d >= ||d||^2 for all t), or d = 0 when the point is
Pareto-stationary. Two objectives have a closed form (paper 000, Eq. 11);
more are solved by Frank-Wolfe on the Gram matrix (paper 001, after Sener &
Koltun), here with away steps, which keep the exact line search of the
two-vector closed form but converge linearly when the optimum sits on a face.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

NORMALIZATIONS = ("none", "l2", "loss", "loss+")


def _pair_weight(aa: float, ab: float, bb: float) -> float:
    """gamma minimising ||gamma a + (1 - gamma) b||^2 on [0, 1], from the three dot products.

    Eq. 11 of paper 000: clip(((b - a) . b) / ||a - b||^2, 0, 1); when a == b
    every gamma is optimal and 0.5 is returned.
    """
    denom = aa + bb - 2.0 * ab
    if not denom > 1e-300:
        return 0.5
    return min(max((bb - ab) / denom, 0.0), 1.0)


def _two(grads: np.ndarray) -> np.ndarray:
    """Closed form for T = 2, computed from the difference vector to avoid cancellation."""
    a, b = grads[0], grads[1]
    diff = a - b
    denom = float(diff @ diff)
    scale = max(float(a @ a), float(b @ b))
    if denom <= 1e-24 * scale or denom == 0.0:
        gamma = 0.5                                  # identical (or both zero) gradients
    else:
        gamma = min(max(float(-(diff @ b)) / denom, 0.0), 1.0)
    return np.array([gamma, 1.0 - gamma])


def _converged(gram: np.ndarray, w: np.ndarray, tol: float) -> bool:
    """The scale-invariant stopping rule: duality gaps below `tol` times ||d||^2.

    With d = sum_t w_t g_t, the toward gap ||d||^2 - min_t g_t . d bounds the
    excess of ||d||^2 over the optimum (f(w) - f* <= 2 gap), so a gap below
    tol ||d||^2 means ||d||^2 is within about 2 tol of the optimum *relatively*,
    whatever the gradients' scale, and g_t . d >= (1 - tol) ||d||^2 > 0 for every
    t: -d decreases every objective. The float64 rounding floor keeps a
    Pareto-stationary optimum (d = 0) reachable.
    """
    mw = gram @ w
    vv = float(w @ mw)
    support = w > 0
    gap = max(vv - float(mw.min()), float(mw[support].max()) - vv)
    return gap <= tol * vv + 64 * np.finfo(float).eps * float(gram.diagonal().max())


def _frank_wolfe(gram: np.ndarray, max_iter: int, tol: float) -> np.ndarray:
    """Away-step Frank-Wolfe on w^T M w over the simplex; stops on the relative duality gap."""
    T = gram.shape[0]
    # Start from the best pair solution (as Sener & Koltun do): often already optimal.
    best, w = np.inf, np.full(T, 1.0 / T)
    for i in range(T):
        for j in range(i + 1, T):
            g = _pair_weight(gram[i, i], gram[i, j], gram[j, j])
            cand = np.zeros(T)
            cand[i], cand[j] = g, 1.0 - g
            value = float(cand @ gram @ cand)
            if value < best:
                best, w = value, cand
    for _ in range(max_iter):
        mw = gram @ w                                 # (M w)_t = g_t . d
        vv = float(w @ mw)                            # ||d||^2
        t = int(np.argmin(mw))
        gap = vv - float(mw[t])                       # half the Frank-Wolfe duality gap
        support = np.flatnonzero(w > 0)
        a = int(support[np.argmax(mw[support])])
        away_gap = float(mw[a]) - vv
        if _converged(gram, w, tol):
            break
        if gap >= away_gap:
            # Toward vertex t: the segment [d, g_t], the two-vector closed form.
            gamma = _pair_weight(vv, float(mw[t]), float(gram[t, t]))
            w = gamma * w
            w[t] += 1.0 - gamma
        else:
            # Away from vertex a: d + s (d - g_a), s in [0, w_a / (1 - w_a)].
            wa = float(w[a])
            s_max = wa / (1.0 - wa) if wa < 1.0 else np.inf
            dd = vv - 2.0 * float(mw[a]) + float(gram[a, a])   # ||d - g_a||^2
            s = (float(mw[a]) - vv) / dd if dd > 1e-300 else s_max
            s = min(max(s, 0.0), s_max)
            w = (1.0 + s) * w
            w[a] -= s
            if s == s_max:
                w[a] = 0.0
        w = np.clip(w, 0.0, None)
        w = w / w.sum()
    return _polish(gram, w)


def _polish(gram: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Exact minimiser on the support Frank-Wolfe found, when it is feasible and better.

    Frank-Wolfe crawls when the optimum is d = 0 inside the simplex (a
    Pareto-stationary point); the KKT system of min w^T M w s.t. sum w = 1
    on the support solves that case in one step. Negative weights drop out
    of the support one at a time.
    """
    support = [int(i) for i in np.flatnonzero(w > 0)]
    best, best_value = w, float(w @ gram @ w)
    while len(support) > 1:
        k = len(support)
        kkt = np.zeros((k + 1, k + 1))
        kkt[:k, :k] = gram[np.ix_(support, support)]
        kkt[:k, k] = kkt[k, :k] = 1.0
        rhs = np.zeros(k + 1)
        rhs[k] = 1.0
        sol = np.linalg.lstsq(kkt, rhs, rcond=None)[0][:k]
        if not np.isfinite(sol).all() or sol.sum() <= 0:
            break
        if float(sol.min()) >= 0.0:
            cand = np.zeros_like(w)
            cand[support] = sol / sol.sum()
            if float(cand @ gram @ cand) <= best_value:
                best = cand
            break
        del support[int(np.argmin(sol))]
    return best


def min_norm(grads: torch.Tensor, max_iter: int = 250, tol: float = 1e-6) -> torch.Tensor:
    """Simplex weights w [T] minimising ||sum_t w_t grads[t]||^2, for grads [T, D].

    T = 1 gives [1]; T = 2 the closed form of Eq. 11; T > 2 Frank-Wolfe with
    at most `max_iter` iterations, stopping once the duality gap is below
    `tol` times ||d||^2 (relative, so gradients of any scale reach the same
    precision), then an exact solve on the support it found. All-zero or identical gradients give equal weights. The weights come back in the gradients'
    dtype and device; the solve itself runs in float64.
    """
    grads = torch.as_tensor(grads)
    if grads.dim() == 1:
        grads = grads[:, None]
    if grads.dim() != 2 or grads.shape[0] == 0:
        raise ValueError(f"min_norm: expected gradients of shape [T, D] with T >= 1, got "
                         f"{tuple(grads.shape)}")
    if max_iter < 0 or not tol >= 0:
        raise ValueError(f"min_norm: max_iter must be >= 0 and tol >= 0, got {max_iter}, {tol}")
    out_dtype = grads.dtype if grads.is_floating_point() else torch.float32
    G = grads.detach().to("cpu", torch.float64)
    if not torch.isfinite(G).all():
        raise ValueError("min_norm: the gradients contain NaN or inf; check the objectives")
    g = G.numpy()
    T = g.shape[0]
    if T == 1:
        w = np.ones(1)
    elif float(np.abs(g).max()) == 0.0:
        w = np.full(T, 1.0 / T)
    elif T == 2:
        w = _two(g)
    else:
        w = _frank_wolfe(g @ g.T, max_iter, tol)
    return torch.from_numpy(w).to(device=grads.device, dtype=out_dtype)


def normalize_grads(grads: torch.Tensor, losses: torch.Tensor | Sequence[float] | None = None,
                    mode: str = "none", eps: float = 1e-8) -> torch.Tensor:
    """Rescale each objective's gradient before the min-norm solve (Sener & Koltun's options).

    Objectives on different scales (a cross-entropy and a parameter count)
    would otherwise let the smallest gradient decide the weights alone.
    `l2`: g / ||g||; `loss`: g / L; `loss+`: g / (L ||g||); `none`: as is.
    Denominators are floored at `eps`, so zero gradients stay zero and
    tiny ones are not blown up.
    """
    if mode not in NORMALIZATIONS:
        raise ValueError(f"normalize_grads: mode {mode!r} is unknown; choose one of "
                         f"{', '.join(NORMALIZATIONS)}")
    grads = torch.as_tensor(grads)
    if mode == "none":
        return grads
    flat = grads.reshape(grads.shape[0], -1)
    ones = torch.ones(grads.shape[0], dtype=flat.dtype, device=flat.device)
    norms = flat.norm(dim=1) if mode in ("l2", "loss+") else ones
    if mode in ("loss", "loss+"):
        if losses is None:
            raise ValueError(f"normalize_grads: mode {mode!r} needs the objectives' losses")
        losses = torch.as_tensor(losses, dtype=flat.dtype, device=flat.device).reshape(-1)
        if losses.numel() != grads.shape[0]:
            raise ValueError(f"normalize_grads: {losses.numel()} losses for {grads.shape[0]} "
                             "gradients")
        scale = losses.abs()
    else:
        scale = ones
    denom = (norms * scale).clamp_min(eps)
    return (flat / denom[:, None]).reshape(grads.shape)


def descent_direction(grads: torch.Tensor, losses: torch.Tensor | Sequence[float] | None = None,
                      mode: str = "none") -> tuple[torch.Tensor, torch.Tensor]:
    """MGDA's step direction d and weights gamma for gradients [T, D]: d = sum_t gamma_t g^_t.

    gamma is solved on the normalised gradients g^_t = g_t / c_t (c_t > 0,
    `normalize_grads`), and the step follows the very combination gamma was
    solved for. Then g^_t . d >= ||d||^2 for every t, so g_t . d = c_t g^_t . d
    >= 0: no objective rises to first order, whatever the normalisation.
    (Solving on g^ but stepping along sum_t gamma_t g_t, the raw gradients,
    gives no such guarantee: g1 = (1, 0), g2 = (-10, 1) under l2 give
    gamma = (0.5, 0.5) and a raw step (-4.5, 0.5) that raises objective 1.)
    With mode "none" this is the papers' solve on raw gradients.
    """
    grads = torch.as_tensor(grads)
    flat = grads.reshape(grads.shape[0], -1)
    normed = normalize_grads(flat, losses, mode)
    if flat.shape[0] == 1:
        gamma = torch.ones(1, dtype=flat.dtype, device=flat.device)
    else:
        gamma = min_norm(normed).to(device=flat.device, dtype=flat.dtype)
    return (gamma[:, None] * normed).sum(0).reshape(grads.shape[1:]), gamma


__all__ = ["NORMALIZATIONS", "descent_direction", "min_norm", "normalize_grads"]
