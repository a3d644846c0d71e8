"""The contract every search space meets.

A space turns integer genes (an `Arch`) into networks: a weight-sharing
`Supernet` that runs any path, and a plain standalone module for one arch.
Strategies, the evaluator, training and export see only this contract.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

Arch = tuple[int, ...]


@dataclass(frozen=True)
class Gene:
    """One integer decision: values 0..choices-1 are legal for this gene."""

    name: str          # e.g. "layer3.block"
    kind: str          # e.g. "block", "ratio", "op": the key of `allowed` in `sample`
    choices: int       # number of legal values; upper bound = choices - 1
    layer: int = -1    # the choice layer (or edge) this gene belongs to


def check_genes(space_name: str, genes: Sequence[Gene], arch: Sequence[int]) -> Arch:
    """The arch as a tuple of ints, every gene in its range; ValueError naming the bad gene."""
    arch = tuple(int(a) for a in arch)
    if len(arch) != len(genes):
        raise ValueError(f"{space_name}: arch has {len(arch)} genes, expected {len(genes)}")
    for value, gene in zip(arch, genes):
        if not 0 <= value < gene.choices:
            raise ValueError(f"{space_name}: gene {gene.name} = {value} is illegal; "
                             f"allowed 0..{gene.choices - 1}")
    return arch


class SearchSpace:
    """Abstract space. Subclasses fill the tables and builders."""

    name: str = "abstract"
    genes: list[Gene]

    # --- encoding -------------------------------------------------------
    @property
    def n_genes(self) -> int:
        return len(self.genes)

    @property
    def lower(self) -> np.ndarray:
        return np.zeros(len(self.genes), dtype=int)

    @property
    def upper(self) -> np.ndarray:
        return np.array([g.choices - 1 for g in self.genes], dtype=int)

    def validate(self, arch: Sequence[int]) -> Arch:
        """Return the arch as a tuple of ints or raise ValueError naming the bad gene."""
        return check_genes(self.name, self.genes, arch)

    def allowed_values(self, gene: Gene, allowed: Mapping[str, Sequence[int]] | None) -> list[int]:
        values = list(range(gene.choices))
        if allowed and gene.kind in allowed:
            keep = {int(a) for a in allowed[gene.kind]}
            values = [v for v in values if v in keep]
        if not values:
            raise ValueError(f"{self.name}: no allowed value left for gene {gene.name}")
        return values

    def sample(self, rng: np.random.Generator, params_range: Sequence[int] | None = None,
               allowed: Mapping[str, Sequence[int]] | None = None, max_tries: int = 100_000) -> Arch:
        """Uniform over legal archs, rejection-sampled into `params_range` (inclusive)."""
        options = [self.allowed_values(g, allowed) for g in self.genes]
        for _ in range(max_tries):
            arch = tuple(int(opts[rng.integers(len(opts))]) for opts in options)
            if params_range is None or params_range[0] <= self.params(arch) <= params_range[1] \
                    or params_range[1] <= 0:
                return arch
        lo, hi = self.params_bounds(allowed)
        raise ValueError(f"{self.name}: no arch with params in {list(params_range)} found after "
                         f"{max_tries} draws; this space spans about [{lo}, {hi}] params")

    def params_bounds(self, allowed: Mapping[str, Sequence[int]] | None = None) -> tuple[int, int]:
        """Smallest and largest parameter count reachable (exact for additive tables)."""
        raise NotImplementedError

    def flops_bounds(self, allowed: Mapping[str, Sequence[int]] | None = None,
                     n_samples: int = 2000, seed: int = 0) -> tuple[int, int]:
        """Smallest and largest FLOPs; by default the extremes of a fixed seeded sample
        (spaces with additive tables override it with the exact bounds)."""
        rng = np.random.default_rng([seed, 11])
        values = [self.flops(self.sample(rng, allowed=allowed)) for _ in range(n_samples)]
        return int(min(values)), int(max(values))

    def n_legal(self, allowed: Mapping[str, Sequence[int]] | None = None) -> int:
        """How many legal archs the space holds (genes independent unless a space says not)."""
        return math.prod(len(self.allowed_values(g, allowed)) for g in self.genes)

    def repair(self, arch: Sequence[int], rng: np.random.Generator) -> Arch:
        """The nearest legal arch of a gene vector from an operator; by default clip to range."""
        del rng  # spaces with rules between genes draw replacements from it
        return self.validate(int(np.clip(round(float(v)), 0, g.choices - 1))
                             for v, g in zip(arch, self.genes))

    def derive(self, logits: Sequence[torch.Tensor]) -> Arch:
        """The discrete arch of relaxed per-gene logits (-inf: illegal values): argmax + repair."""
        arch = tuple(int(z.argmax()) for z in logits)
        try:
            return self.validate(arch)
        except ValueError:
            return self.repair(arch, np.random.default_rng(0))

    def ratio_indices(self, values: Sequence[float]) -> list[int] | None:
        """Gene values of the given channel ratios; None for spaces without ratio genes."""
        del values
        return None

    def spread_by_params(self, rng: np.random.Generator, n: int, steps: int = 400,
                         bounds: Sequence[int] | None = None) -> list[Arch]:
        """n distinct archs whose parameter counts are spread evenly over the whole space.

        Uniform samples crowd around the median size (a sum of many independent
        choices), so archs taken from them all reach about the same accuracy and
        say little about how well a predictor ranks. Here arch i walks from a
        uniform sample towards the parameter target lo + (i + 0.5) / n (hi - lo),
        one re-drawn gene at a time (illegal moves skipped), keeping every draw that comes no farther
        from the target: the sizes spread over [lo, hi] while every other aspect
        stays random. `bounds` narrows [lo, hi] (e.g. to a search's params range).
        Deterministic given `rng`.
        """
        if n < 1:
            raise ValueError(f"spread_by_params: n must be >= 1, got {n}")
        lo, hi = self.params_bounds()
        if bounds is not None and bounds[1] > 0:
            lo, hi = max(lo, int(bounds[0])), min(hi, int(bounds[1]))
        archs: list[Arch] = []
        for i in range(n):
            target = lo + (i + 0.5) / n * (hi - lo)
            arch = list(self.sample(rng))
            gap = abs(self.params(tuple(arch)) - target)
            for _ in range(steps):
                j = int(rng.integers(len(self.genes)))
                trial = list(arch)
                trial[j] = int(rng.integers(self.genes[j].choices))
                try:
                    d = abs(self.params(self.validate(trial)) - target)
                except ValueError:       # the move broke a rule of the space (e.g. DARTS' two inputs)
                    continue
                if d <= gap and tuple(trial) not in archs:
                    arch, gap = trial, d
            archs.append(self.validate(arch))
        if len(set(archs)) < n:
            raise ValueError(f"{self.name}: could not find {n} distinct archs spread by size; "
                             f"ask for fewer")
        return archs

    # --- costs ------------------------------------------------------------
    def params(self, arch: Arch) -> int:
        raise NotImplementedError

    def flops(self, arch: Arch) -> int:
        raise NotImplementedError

    def cost_constant(self, kind: str) -> int:
        """The cost ("params" or "flops") outside the choices: stem, head, fixed layers."""
        raise NotImplementedError

    def cost_table(self, kind: str) -> list[torch.Tensor]:
        """Per decision the option costs: cost(arch) = cost_constant + the sum of the picks."""
        raise NotImplementedError

    # Measured kinds (latency) attached from a table; spaces with their own tables override.
    def decision_shapes(self) -> list[tuple[int, ...]]:
        """The shape of each decision's option table (default: those of `cost_table("params")`)."""
        return [tuple(np.shape(t)) for t in self.cost_table("params")]

    def decision_index(self, arch: Arch) -> list[tuple[int, ...]]:
        """Per decision, the index of `arch`'s option in that decision's table (default: one
        decision per gene)."""
        return [(int(v),) for v in self.validate(arch)]

    def _attached(self) -> dict[str, tuple[float, list[np.ndarray]]]:
        return self.__dict__.setdefault("_attached_costs", {})

    def has_cost(self, kind: str) -> bool:
        """Whether `cost(kind, arch)` works: counted kinds always, measured ones once attached."""
        return kind in ("params", "flops") or kind in self._attached()

    def cost(self, kind: str, arch: Arch) -> float:
        """Any cost kind of `arch` (the column of that name in archive tables)."""
        if kind == "params":
            return self.params(arch)
        if kind == "flops":
            return self.flops(arch)
        if kind in self._attached():
            const, tables = self._attached()[kind]
            return math.fsum([const, *(float(t[i]) for t, i in zip(tables, self.decision_index(arch)))])
        raise ValueError(missing_cost_message(self.name, kind))

    def cost_bounds(self, kind: str, allowed: Mapping[str, Sequence[int]] | None = None
                    ) -> tuple[float, float]:
        """Smallest and largest value of a cost kind over the space (attached kinds: the sums
        of each decision's extremes)."""
        if kind == "params":
            return self.params_bounds(allowed)
        if kind == "flops":
            return self.flops_bounds(allowed)
        if kind in self._attached():
            const, tables = self._attached()[kind]
            return (math.fsum([const, *(float(t.min()) for t in tables)]),
                    math.fsum([const, *(float(t.max()) for t in tables)]))
        raise ValueError(missing_cost_message(self.name, kind))

    def attach_costs(self, kind: str, constant: float, tables: Sequence[np.ndarray]) -> None:
        """Add a measured cost kind: per decision an option table shaped as `decision_shapes`."""
        self._attached()[kind] = (float(constant),
                                  check_attached(self.name, kind, tables, self.decision_shapes()))

    def expected_cost(self, kind: str, probs: Sequence[torch.Tensor]) -> torch.Tensor:
        """Differentiable expected params/flops under independent per-gene probabilities.

        `probs[g]` is a probability vector over gene g's choices. Used by the
        gradient strategies; equals params(arch)/flops(arch) for one-hot probs.
        """
        raise NotImplementedError

    # --- builders -----------------------------------------------------------
    def build_supernet(self) -> Supernet:
        raise NotImplementedError

    def build_standalone(self, arch: Arch) -> nn.Module:
        raise NotImplementedError

    def describe(self, arch: Arch) -> dict:
        raise NotImplementedError

    def parse(self, description: Mapping) -> Arch:
        raise NotImplementedError

    def config(self) -> dict:
        """The settings that rebuild this space (written into exported arch JSON)."""
        raise NotImplementedError

    @classmethod
    def from_config(cls, config: Mapping) -> SearchSpace:
        """The space `config()` describes (exported arch JSON -> network anywhere)."""
        raise NotImplementedError(f"space {cls.name!r} cannot be rebuilt from its config")

    # --- labels -----------------------------------------------------------------------------
    def gene_choices(self, index: int) -> list[str]:
        """What each value of gene `index` encodes, for tables (default: the values)."""
        return [str(v) for v in range(self.genes[index].choices)]

    def gene_label(self, index: int, value: int) -> str:
        """The readable name of one gene value (default: the value)."""
        return str(int(value))


def missing_cost_message(space_name: str, kind: str) -> str:
    """The one line for a cost kind a space cannot give (unknown, or measured and not attached)."""
    if kind == "latency":
        return (f"{space_name}: no latency table is attached; build one with `tamnas latency build "
                f"RUN` and name it with --set search.latency_table=PATH")
    return f"{space_name}: cost kind {kind!r} is unknown; choose params, flops or latency"


def check_attached(space_name: str, kind: str, tables: Sequence[np.ndarray],
                   shapes_wanted: Sequence[tuple[int, ...]]) -> list[np.ndarray]:
    """Measured tables as float64 arrays, refused in one line unless shaped as wanted."""
    tables = [np.asarray(t, dtype=np.float64) for t in tables]
    shapes, want = [t.shape for t in tables], [tuple(s) for s in shapes_wanted]
    if shapes != want:
        raise ValueError(f"{space_name}: the {kind} table does not cover this space (decision "
                         f"shapes {shapes[:3]}... vs {want[:3]}...); build it for this run")
    if not all(np.isfinite(t).all() for t in tables):
        raise ValueError(f"{space_name}: the {kind} table holds non-finite entries")
    return tables


class Supernet(nn.Module):
    """Weight-sharing network: any arch of its space is one path through it."""

    first_layer: nn.Module  # YOPO's layer one: normalisation + bare first convolution

    def forward(self, x: torch.Tensor, arch: Arch) -> torch.Tensor:
        return self.forward_from_first(self.first_layer(x), arch)

    def forward_from_first(self, h: torch.Tensor, arch: Arch) -> torch.Tensor:
        raise NotImplementedError

    def forward_relaxed(self, x: torch.Tensor, probs: Sequence[torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

    def extract(self, arch: Arch) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def path_modules(self, arch: Arch) -> list[nn.Module]:
        """Every module a forward of `arch` can run (default: all of them).

        Attacks and objectives switch train/eval flags and save BatchNorm
        buffers around their passes; on a supernet path they need to touch only
        these, not every candidate block of every layer.
        """
        return list(self.modules())

    def path(self, arch: Arch) -> SubnetView:
        return SubnetView(self, arch)


class SubnetView(nn.Module):
    """One path of a supernet seen as a plain model (forward(x), first_layer, forward_from_first).

    Training objectives and attacks take any model with this shape, so the
    same code trains a supernet path and a standalone network.
    """

    def __init__(self, supernet: Supernet, arch: Arch):
        super().__init__()
        self.supernet = supernet
        self.arch = tuple(arch)
        self._modules_run: list[nn.Module] | None = None

    def modules_run(self) -> list[nn.Module]:
        """This view and the modules its forward runs, each once (`Supernet.path_modules`)."""
        if self._modules_run is None:
            self._modules_run = list(dict.fromkeys([self, *self.supernet.path_modules(self.arch)]))
        return self._modules_run

    @property
    def first_layer(self) -> nn.Module:
        return self.supernet.first_layer

    def forward_from_first(self, h: torch.Tensor) -> torch.Tensor:
        return self.supernet.forward_from_first(h, self.arch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.supernet(x, self.arch)
