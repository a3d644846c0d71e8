"""A tiny synthetic search space and a cheap exact scorer, for testing strategies without networks.

Four choice layers, each with a block gene (4 blocks; block 3 is "pure
robust" and illegal in the stride-2 layers 0 and 2, a rule the gene bounds do
not express) and a ratio gene (3 ratios). Parameters come from a fixed table.
`ToyEvaluator` implements the evaluator protocol with closed-form errors, so
the true Pareto front is known by enumerating the whole space.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Mapping, Sequence

import numpy as np

from tamnas.search.archive import Archive
from tamnas.supernets.base import Arch, Gene, SearchSpace

N_LAYERS = 4
N_BLOCKS = 4
N_RATIOS = 3
STRIDE2 = (0, 2)
ROBUST = 3
# params[layer][block][ratio]: exact integer table, additive over layers.
BASE_PARAMS = 1000
PARAMS = [[[(40 + 13 * layer) * (b + 2) * (r + 1) + 7 * b for r in range(N_RATIOS)]
           for b in range(N_BLOCKS)] for layer in range(N_LAYERS)]
# Blocks trade clean error against robustness: later ids are more robust, less accurate.
CLEAN_PEN = [0.00, 0.03, 0.07, 0.12]
ADV_PEN = [0.40, 0.28, 0.18, 0.10]


class ToySpace(SearchSpace):
    name = "toy"

    def __init__(self):
        self.genes = []
        for layer in range(N_LAYERS):
            self.genes.append(Gene(f"layer{layer}.block", "block", N_BLOCKS, layer))
            self.genes.append(Gene(f"layer{layer}.ratio", "ratio", N_RATIOS, layer))

    def allowed_values(self, gene: Gene, allowed: Mapping[str, Sequence[int]] | None) -> list[int]:
        values = super().allowed_values(gene, allowed)
        if gene.kind == "block" and gene.layer in STRIDE2:
            values = [v for v in values if v != ROBUST]
        return values

    def validate(self, arch: Sequence[int]) -> Arch:
        arch = super().validate(arch)
        for layer in STRIDE2:
            if arch[2 * layer] == ROBUST:
                raise ValueError(f"toy: gene layer{layer}.block = {ROBUST} is illegal; a pure "
                                 "robust block cannot sit in a stride-2 layer")
        return arch

    def repair(self, arch: Sequence[int], rng: np.random.Generator) -> Arch:
        """Redraw a pure robust block of a stride-2 layer among the legal blocks."""
        arch = list(np.clip(np.asarray(arch, dtype=int), self.lower, self.upper))
        for layer in STRIDE2:
            if arch[2 * layer] == ROBUST:
                arch[2 * layer] = int(rng.integers(ROBUST))
        return tuple(int(a) for a in arch)

    def params(self, arch: Arch) -> int:
        return BASE_PARAMS + sum(PARAMS[layer][arch[2 * layer]][arch[2 * layer + 1]]
                                 for layer in range(N_LAYERS))

    def flops(self, arch: Arch) -> int:
        return 50 * self.params(arch) + 1000 * sum(arch[1::2])

    def params_bounds(self, allowed=None) -> tuple[int, int]:
        lo = hi = BASE_PARAMS
        for layer in range(N_LAYERS):
            gb, gr = self.genes[2 * layer], self.genes[2 * layer + 1]
            vals = [PARAMS[layer][b][r] for b in self.allowed_values(gb, allowed)
                    for r in self.allowed_values(gr, allowed)]
            lo, hi = lo + min(vals), hi + max(vals)
        return lo, hi

    def describe(self, arch: Arch) -> dict:
        arch = self.validate(arch)
        return {"layers": [{"block": arch[2 * i], "ratio": arch[2 * i + 1]}
                           for i in range(N_LAYERS)]}

    def parse(self, description: Mapping) -> Arch:
        layers = description["layers"]
        return self.validate([v for layer in layers for v in (layer["block"], layer["ratio"])])

    def config(self) -> dict:
        return {"name": self.name}

    def legal_archs(self) -> list[Arch]:
        """Every legal arch (11664 of them), for brute-force checks."""
        options = [self.allowed_values(g, None) for g in self.genes]
        return [tuple(a) for a in itertools.product(*options)]


def toy_scores(space: ToySpace, arch: Arch) -> dict[str, float]:
    """Closed-form errors: wider ratios help both errors, robust blocks trade clean for adv."""
    blocks, ratios = arch[0::2], arch[1::2]
    width = sum(ratios) / (len(ratios) * (N_RATIOS - 1))           # 0..1
    clean = 0.05 + sum(CLEAN_PEN[b] * (1 + 0.2 * layer)
                       for layer, b in enumerate(blocks)) / N_LAYERS
    adv = 0.30 + sum(ADV_PEN[b] * (1.2 - 0.2 * layer) for layer, b in enumerate(blocks)) / N_LAYERS
    clean, adv = clean * (1.0 - 0.3 * width), adv * (1.0 - 0.15 * width)
    return {"clean_err": float(round(clean, 6)), "adv_err": float(round(min(adv, 1.0), 6)),
            "params": int(space.params(arch)), "flops": int(space.flops(arch))}


class ToyEvaluator:
    """The evaluator protocol of tamnas.search.evaluator, with closed-form scores."""

    def __init__(self, space: ToySpace, archive: Archive | None = None):
        self.space = space
        self.archive = archive if archive is not None else Archive(space.name, space.n_genes)
        self.stats = {"evaluations": 0, "cache_hits": 0, "seconds": 0.0}
        self.calls: list[list[Arch]] = []

    def evaluate(self, archs: Sequence[Sequence[int]], **meta) -> list[dict[str, float]]:
        archs = [self.space.validate(a) for a in archs]
        self.calls.append(archs)
        todo = list(dict.fromkeys(a for a in archs if a not in self.archive))
        self.stats["cache_hits"] += len(archs) - len(todo)
        tic = time.perf_counter()
        for arch in todo:
            self.archive.add(arch, toy_scores(self.space, arch), **meta)
        self.stats["evaluations"] += len(todo)
        self.stats["seconds"] += time.perf_counter() - tic
        if meta.get("strategy") is not None:   # as the real evaluator: cache hits are visits
            for a in archs:
                self.archive.visit(a, meta["strategy"])
        return [dict(self.archive.get(a)) for a in archs]
