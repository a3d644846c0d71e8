"""Fronts of archive tables: non-dominated rows, per-strategy membership, the `front:K` order.

Pure functions of pandas tables (an `Archive`'s frame or its CSV), so the
archive, the strategies, the session and the report share one definition.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from tamnas.config import SCORE_NAMES
from tamnas.metrics import BINOMIAL_ERRORS
from tamnas.supernets.base import Arch

if TYPE_CHECKING:  # the archive imports this module, never the other way at run time
    from tamnas.search.archive import Archive

WEIGHTS = "weights"       # the column naming the weights a row was scored on
STRATEGIES = "strategies"  # the column listing every strategy that visited a row ("nsga2,random")
# Noise of the error rates (binomial standard errors) and the image count they come from.
NOISE_NAMES = tuple(f"{e}_se" for e in BINOMIAL_ERRORS) + ("n_eval",)


def plain_value(value: Any) -> Any:
    """numpy scalars -> Python scalars, so that JSON holds them and equality is exact."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value)
    if value is None or isinstance(value, str):
        return value
    raise ValueError(f"archive values must be numbers, strings or None; got {type(value).__name__} "
                     f"{value!r}")


def non_dominated(F: np.ndarray) -> np.ndarray:
    """Indices of the non-dominated rows of F (all objectives minimised), in ascending order."""
    from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

    F = np.asarray(F, dtype=float)
    if F.ndim != 2:
        raise ValueError(f"non_dominated: expected a 2-d array of objective values, got shape "
                         f"{F.shape}")
    if len(F) == 0:
        return np.zeros(0, dtype=int)
    idx = NonDominatedSorting().do(F, only_non_dominated_front=True)
    return np.sort(np.asarray(idx, dtype=int))


def visited_by(df: pd.DataFrame, strategy: str) -> pd.Series:
    """Which rows of an archive table `strategy` visited (from `strategies`, else from the
    first-scorer column `strategy` of older tables)."""
    if STRATEGIES in df.columns:
        # a CSV reads an empty list as NaN
        lists = [v.split(",") if isinstance(v, str) else [] for v in df[STRATEGIES]]
        return pd.Series([strategy in names for names in lists], index=df.index, dtype=bool)
    if "strategy" in df.columns:
        return df["strategy"].astype(str) == strategy
    return pd.Series(False, index=df.index)


def mixed_weights(df: pd.DataFrame) -> bool:
    """True when the rows of a table (a front) were scored on more than one set of weights."""
    if WEIGHTS not in df.columns or df.empty:
        return False
    return df[WEIGHTS].fillna("").nunique() > 1


def front_table(archive: Archive, objectives: Sequence[str],
                strategy: str | None = None) -> pd.DataFrame:
    """The front as every table, file and `front:K` shows it.

    The non-dominated archs over `objectives` among those `strategy` visited (all
    archs when None, or when the archive records no strategy at all), sorted by
    those objectives in order, ties by archive order; row K is `front:K`.
    """
    if not len(archive):
        return archive.frame()
    if strategy is not None and not archive.strategy_names():
        strategy = None    # scored outside any strategy: one front of everything
    df = archive.front(objectives, strategy=strategy)
    return df.sort_values(list(objectives) + ["order"], kind="stable").reset_index(drop=True)


def front_records(space, df: pd.DataFrame) -> list[dict]:
    """front.json entries: genes, the space's readable description and the scores of each row."""
    n = space.n_genes
    scores = [c for c in (*SCORE_NAMES, *NOISE_NAMES) if c in df.columns]
    records = []
    for _, row in df.iterrows():
        arch = tuple(int(row[f"g{i}"]) for i in range(n))
        values = {k: plain_value(row[k].item() if hasattr(row[k], "item") else row[k])
                  for k in scores if not pd.isna(row[k])}
        if "n_eval" in values:  # a float column when older rows lack it
            values["n_eval"] = int(values["n_eval"])
        record = {"arch": list(arch), "description": space.describe(arch), "scores": values}
        if WEIGHTS in df.columns and not pd.isna(row[WEIGHTS]):
            record[WEIGHTS] = str(row[WEIGHTS])
        records.append(record)
    return records


def archs_of(df: pd.DataFrame, n_genes: int) -> list[Arch]:
    """The archs of a frame's rows, read from the gene columns."""
    genes = df[[f"g{i}" for i in range(n_genes)]].to_numpy(dtype=np.int64)
    return [tuple(int(g) for g in row) for row in genes]


__all__ = ["NOISE_NAMES", "STRATEGIES", "WEIGHTS", "archs_of", "front_records", "front_table",
           "mixed_weights", "non_dominated", "plain_value", "visited_by"]
