"""Tiny models for attack and objective tests, with YOPO's first_layer / forward_from_first."""

from __future__ import annotations

import torch
from torch import nn


class LinearModel(nn.Module):
    """logits = W x + b on flat inputs; layer one is the whole model."""

    def __init__(self, in_features: int, classes: int = 2):
        super().__init__()
        self.first_layer = nn.Linear(in_features, classes)

    def forward_from_first(self, h: torch.Tensor) -> torch.Tensor:
        return h

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_from_first(self.first_layer(x))


class TinyMLP(nn.Module):
    """Linear layer one, then BatchNorm, ReLU and a linear head (flat inputs)."""

    def __init__(self, in_features: int, hidden: int = 32, classes: int = 2):
        super().__init__()
        self.first_layer = nn.Linear(in_features, hidden)
        self.rest = nn.Sequential(nn.BatchNorm1d(hidden), nn.ReLU(), nn.Linear(hidden, hidden),
                                  nn.ReLU(), nn.Linear(hidden, classes))

    def forward_from_first(self, h: torch.Tensor) -> torch.Tensor:
        return self.rest(h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_from_first(self.first_layer(x))


class TinyCNN(nn.Module):
    """Bare 3x3 conv as layer one, then BN/ReLU, a second conv, pooling and a linear head."""

    def __init__(self, in_channels: int = 1, width: int = 8, classes: int = 10):
        super().__init__()
        self.first_layer = nn.Conv2d(in_channels, width, 3, padding=1, bias=False)
        self.rest = nn.Sequential(
            nn.BatchNorm2d(width), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(2 * width), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * width, classes))

    def forward_from_first(self, h: torch.Tensor) -> torch.Tensor:
        return self.rest(h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_from_first(self.first_layer(x))


def robust_feature_data(n: int, generator: torch.Generator, noisy: int = 16,
                        robust_margin: float = 0.3, weak_shift: float = 0.05,
                        noise: float = 0.1, flip: float = 0.1) -> tuple[torch.Tensor, torch.Tensor]:
    """Two classes where robustness matters (after Tsipras et al.).

    Feature 0 is robust (0.5 +- robust_margin, agreeing with the label with
    probability 1 - flip); features 1..noisy are weak (0.5 +- weak_shift plus
    Gaussian noise) yet predictive together. An eps above weak_shift flips
    every weak feature, so a model that leans on them loses under attack,
    while one that uses feature 0 keeps about 1 - flip accuracy.
    """
    y = torch.randint(0, 2, (n,), generator=generator)
    s = (2 * y - 1).float()
    agree = torch.where(torch.rand(n, generator=generator) < flip, -1.0, 1.0)
    robust = 0.5 + robust_margin * s * agree
    weak = 0.5 + weak_shift * s[:, None] + noise * torch.randn(n, noisy, generator=generator)
    x = torch.cat([robust[:, None], weak], dim=1).clamp(0, 1)
    return x, y
