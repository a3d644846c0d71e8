"""Tiny configurations of every registered space, the cases the space contract suite runs on.

A space registered without an entry here fails the contract suite with a
message saying to add one: a new space is tested the day it is registered.
"""

from __future__ import annotations

import pytest
from shufflenet_configs import CONFIGS as SHUFFLENET_CONFIGS
from toyspace import ToySpace

import tamnas
from tamnas.supernets import space_names
from tamnas.supernets.base import Arch, SearchSpace

# space name -> {case label: (preset, overrides)}; every case small enough for a CPU test
SPACE_CASES: dict[str, dict[str, tuple[str, dict]]] = {
    "shufflenet": {label: ("quickstart", cfg) for label, cfg in SHUFFLENET_CONFIGS.items()},
    "darts": {
        # the standard placement at its smallest (3 cells: one of each position), odd sizes in dsara
        "e2rnas-3x4": ("cifar10-e2rnas", {"space.cells": 3, "space.init_channels": 4,
                                          "data.resolution": 8}),
        "dsara-4x5": ("cifar10-dsara", {"space.cells": 4, "space.init_channels": 5,
                                        "data.resolution": 9}),
    },
}


def darts_pools_to_skips(space: SearchSpace, arch: Arch) -> Arch:
    """The arch with its pools made skips: the relaxed mixture normalises pool outputs (a
    BatchNorm without affine, as DARTS' search code has it) and the discrete path does not."""
    from tamnas.supernets.darts.ops import PRIMITIVES

    skip = PRIMITIVES.index("skip_connect")
    return space.validate(skip if "pool" in PRIMITIVES[g] else g for g in arch)


# space name -> the arch whose one-hot mixture computes the same function as the path of `arch`
# (the identity for spaces not listed): where a space's mixture differs by design
ONE_HOT_EXACT = {"darts": darts_pools_to_skips}
TOY = "toy"  # the unregistered toy space of tests/toyspace.py: no networks, no cost tables


def build_case(name: str, label: str | None) -> SearchSpace:
    """The space of one case; fails the test when a registered space has no tiny case."""
    if name == TOY:
        return ToySpace()
    if label is None:
        pytest.fail(f"space {name!r} is registered but tests/contract/space_cases.py has no tiny "
                    "config for it; add one to SPACE_CASES (and its FLOPs rules to "
                    "tests/flop_hooks.py)")
    preset, overrides = SPACE_CASES[name][label]
    space = tamnas.build_space(tamnas.load_config(preset, overrides))
    assert space.name == name, f"case {label} builds space {space.name!r}, not {name!r}"
    return space


def space_params(with_toy: bool = False) -> list:
    """pytest params (space name, case label) over every registered space's cases."""
    params = []
    for name in space_names():
        labels = list(SPACE_CASES.get(name, {})) or [None]
        params += [pytest.param(name, label, id=f"{name}-{label or 'no-tiny-case'}")
                   for label in labels]
    if with_toy:
        params.append(pytest.param(TOY, None, id=TOY))
    return params
