"""SearchSpace.spread_by_params: archs spread evenly over the whole size range, for every space."""

from __future__ import annotations

import numpy as np
import pytest

import tamnas

SPACES = {
    "shufflenet": ("quickstart-full", {}),
    "darts": ("cifar10-e2rnas", {"data.dataset": "digits", "data.resolution": 16,
                                 "space.cells": 5, "space.init_channels": 8}),
}


@pytest.mark.parametrize("name", sorted(SPACES))
def test_spread_archs_cover_the_size_range_evenly_and_are_legal(name):
    preset, over = SPACES[name]
    space = tamnas.build_space(tamnas.load_config(preset, over))
    n = 10
    archs = space.spread_by_params(np.random.default_rng(3), n)
    assert len(set(archs)) == n
    assert all(space.validate(a) == a for a in archs)
    lo, hi = space.params_bounds()
    params = np.array([space.params(a) for a in archs], dtype=float)
    targets = lo + (np.arange(n) + 0.5) / n * (hi - lo)
    # each arch lands within a quarter of its slot of the target: ranked sizes, whole range covered
    assert np.all(np.abs(params - targets) <= 0.25 * (hi - lo) / n)
    rng = np.random.default_rng(3)
    uniform = np.array([space.params(space.sample(rng)) for _ in range(200)])
    assert params.max() - params.min() > 1.5 * (uniform.max() - uniform.min())
    assert space.spread_by_params(np.random.default_rng(3), n) == archs      # deterministic
