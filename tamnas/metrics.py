"""Scalar metrics shared by the evaluator, the strategies and the reports."""

from __future__ import annotations

import numpy as np
import torch


def ood_aupr(in_logits: torch.Tensor, ood_logits: torch.Tensor) -> float:
    """AUPR with out-of-distribution images as positives, scored by low max-softmax (paper 001)."""
    from sklearn.metrics import average_precision_score  # 1.5 s to import: only when scored

    score_in = -torch.softmax(in_logits.float(), dim=1).amax(dim=1)
    score_ood = -torch.softmax(ood_logits.float(), dim=1).amax(dim=1)
    scores = torch.cat([score_in, score_ood]).cpu().numpy()
    labels = np.concatenate([np.zeros(len(score_in)), np.ones(len(score_ood))])
    return float(average_precision_score(labels, scores))


def kl_to_uniform(logits: torch.Tensor) -> torch.Tensor:
    """Mean KL(uniform || softmax(logits)): small when the net is unsure on OoD inputs (paper 001)."""
    log_p = torch.log_softmax(logits, dim=1)
    k = logits.shape[1]
    return (-log_p.mean(dim=1) - np.log(k)).mean()


# Error rates that are fractions of evaluation images, so binomial counts with a known noise.
BINOMIAL_ERRORS = ("adv_err", "clean_err")


def binomial_se(p: float, n: int) -> float:
    """Standard error sqrt(p(1-p)/n) of an error rate p measured on n images: its noise."""
    n = int(n)
    if n < 1:
        raise ValueError(f"binomial_se: n = {n} images; an error rate needs at least one")
    p = float(p)
    return float(np.sqrt(max(p * (1.0 - p), 0.0) / n))


def with_standard_errors(scores: dict) -> dict:
    """`scores` plus `<err>_se` for each binomial error rate, when `n_eval` says how many images."""
    n = scores.get("n_eval")
    if n is None:
        return dict(scores)
    out = dict(scores)
    for name in BINOMIAL_ERRORS:
        if name in out and f"{name}_se" not in out and out[name] is not None:
            out[f"{name}_se"] = binomial_se(out[name], n)
    return out


def format_error(p: float, se: float | None = None, digits: int = 2) -> str:
    """An error rate in percent, with its standard error when known: "33.00 ± 2.71"."""
    text = f"{100 * float(p):.{digits}f}"
    if se is None or not np.isfinite(float(se)):
        return text
    return f"{text} ± {100 * float(se):.{digits}f}"
