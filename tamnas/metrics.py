"""Scalar metrics shared by the evaluator, the strategies and the reports."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.metrics import average_precision_score


def ood_aupr(in_logits: torch.Tensor, ood_logits: torch.Tensor) -> float:
    """AUPR with out-of-distribution images as positives, scored by low max-softmax (paper 001)."""
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
