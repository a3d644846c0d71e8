"""The LEGO net: per layer the most frequent block and ratio among the top-k subnets, made legal.

Paper 004 (IV-F 3) builds its Lego-Net from the per-layer statistics of the
ten best subnets. Each gene takes its mode among the given rows; a tie goes
to the value of the best-ranked arch (the earliest row of `top_df`); a mode
the space rejects in that layer (a pure robust block in a stride-2 layer)
gives way to the most frequent legal value.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd

from tamnas.analysis.stats import gene_label
from tamnas.supernets.base import Arch


def _rows(space, top_df: pd.DataFrame) -> np.ndarray:
    cols = [f"g{i}" for i in range(space.n_genes)]
    missing = [c for c in cols if c not in top_df.columns]
    if missing:
        more = " ..." if len(missing) > 3 else ""
        raise ValueError(f"lego: the table lacks gene columns {missing[:3]}{more}; pass rows of an "
                         f"archive or front frame of space {space.name}")
    if len(top_df) == 0:
        raise ValueError("lego: no rows given; the LEGO net needs at least one top-k arch")
    return top_df[cols].to_numpy(dtype=np.int64)


def _ranked_values(column: np.ndarray) -> list[tuple[int, int]]:
    """(value, count) by count descending, ties by first occurrence (best-ranked arch first)."""
    counts = Counter(int(v) for v in column)
    first = {}
    for pos, v in enumerate(column):
        first.setdefault(int(v), pos)
    return sorted(counts.items(), key=lambda vc: (-vc[1], first[vc[0]]))


def _is_legal(space, arch: list[int]) -> bool:
    try:
        space.validate(arch)
    except ValueError:
        return False
    return True


def _legal_base(space, rows: np.ndarray) -> list[int]:
    """A legal arch to test single choices against: the best-ranked legal row, else a fixed draw."""
    for row in rows:
        if _is_legal(space, list(row)):
            return [int(v) for v in row]
    return [int(v) for v in space.sample(np.random.default_rng(0))]


def lego_table(space, top_df: pd.DataFrame) -> pd.DataFrame:
    """Per gene: the mode, the chosen value, its count and whether legality forced a change.

    Genes are decided in order. Each candidate value (by count, ties to the
    best-ranked arch) is tried in a legal base arch (the best-ranked legal
    row, holding the choices already made), so a value fails only for its
    own sake; the first legal one wins. Should no value seen in the rows be
    legal, the base arch's value stays (count 0).
    """
    rows = _rows(space, top_df)
    current = _legal_base(space, rows)
    records = []
    for i, gene in enumerate(space.genes):
        ranked = _ranked_values(rows[:, i])
        mode, mode_count = ranked[0]
        count = 0
        for value, n in ranked:
            trial = current[:i] + [value] + current[i + 1:]
            if _is_legal(space, trial):
                current, count = trial, n
                break
        records.append({"gene": gene.name, "kind": gene.kind, "layer": gene.layer,
                        "mode": gene_label(space, i, mode), "mode_count": mode_count,
                        "chosen": gene_label(space, i, current[i]), "value": current[i],
                        "count": count, "replaced": current[i] != mode})
    return pd.DataFrame(records)


def lego_arch(space, top_df: pd.DataFrame) -> Arch:
    """The LEGO arch of the rows of `top_df` (best first), validated by the space."""
    table = lego_table(space, top_df)
    return space.validate(table["value"].astype(int).tolist())


__all__ = ["lego_arch", "lego_table"]
