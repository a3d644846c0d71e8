"""The one registry of cost kinds (params, FLOPs, latency) that config, spaces and search read.

A cost kind is what a search may minimise beside the errors and what a
budget may limit: additive over the decisions of a space (cost = constant +
the sum of the chosen options' entries), so the spaces hold it as tables and
the gradient strategies relax it exactly. `params` and `flops` are counted
from the layout; `latency` is measured on a device and attached to a space
from a table file (`tamnas.latency`). This module imports nothing of tamnas,
so every layer may read it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CostKind:
    """One cost kind: its column name, unit and how it is obtained."""

    name: str           # the column in archive/front tables and the key of `space.cost_table`
    label: str          # axis label of figures
    unit: str           # "" for counts, "ms" for latency
    integer: bool       # exact counts (int) or measured values (float)
    measured: bool      # needs a table measured on a device (not derivable from the layout)

    def format(self, value: float) -> str:
        """A value as tables print it: 12,345 for counts, 1.234 ms for times."""
        if self.integer:
            return f"{round(float(value)):,}"
        return f"{float(value):.3f} {self.unit}".rstrip()


COST_KINDS: dict[str, CostKind] = {
    "params": CostKind("params", "parameters", "", True, False),
    "flops": CostKind("flops", "multiply-adds", "", True, False),
    "latency": CostKind("latency", "latency (ms, predicted)", "ms", False, True),
}
COST_NAMES: tuple[str, ...] = tuple(COST_KINDS)
COUNTED_COSTS: tuple[str, ...] = tuple(k for k, v in COST_KINDS.items() if not v.measured)


def cost_kind(name: str) -> CostKind:
    """The registered kind `name`; ValueError listing the kinds otherwise."""
    if name not in COST_KINDS:
        raise ValueError(f"cost kind {name!r} is unknown; choose one of {', '.join(COST_NAMES)}")
    return COST_KINDS[name]


__all__ = ["COST_KINDS", "COST_NAMES", "COUNTED_COSTS", "CostKind", "cost_kind"]
