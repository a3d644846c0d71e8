"""Top-k selection on a front, per-layer choice statistics (Tables XIV/XV) and table files.

The paper studies the block and channel-ratio choices of the ten best subnets
layer by layer; `top_k` picks those subnets, `layer_counts` counts their
choices and `save_table` writes any table as CSV and Markdown.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from tamnas.files import atomic_write_text

TOP_BY = ("adv_err", "weighted", "crowding")
DEFAULT_OBJECTIVES = ("adv_err", "clean_err", "params")


def _objectives(df: pd.DataFrame, objectives: Sequence[str]) -> list[str]:
    objectives = list(objectives)
    missing = [o for o in objectives if o not in df.columns]
    if missing:
        raise ValueError(f"top_k: the front has no column(s) {missing}; it has "
                         f"{', '.join(map(str, df.columns))}")
    return objectives


def _normalised(F: np.ndarray) -> np.ndarray:
    """Min-max scale every column to [0, 1]; a constant column becomes 0."""
    low, high = F.min(axis=0), F.max(axis=0)
    span = np.where(high > low, high - low, 1.0)
    return (F - low) / span


def top_k(front_df: pd.DataFrame, k: int, by: str = "adv_err",
          weights: Mapping[str, float] | Sequence[float] | None = None,
          objectives: Sequence[str] = DEFAULT_OBJECTIVES) -> pd.DataFrame:
    """The k best rows of a front, best first, keeping the input index.

    by="adv_err": adversarial error ascending (the paper's "top ten").
    by="weighted": a weighted sum of the objectives, each min-max normalised
    over the given rows, ascending; `weights` maps objective -> weight (or is a
    sequence aligned with `objectives`), equal weights by default.
    by="crowding": NSGA-II crowding distance over the normalised objectives,
    descending, so the most isolated (diverse) points come first; the extreme
    points (infinite distance) lead.
    Ties in the primary key are broken by the objectives in `objectives` order
    (ascending), then by input order, so the result is deterministic.
    """
    if by not in TOP_BY:
        raise ValueError(f"top_k: by={by!r} is not allowed; choose one of {', '.join(TOP_BY)}")
    if int(k) < 1:
        raise ValueError(f"top_k: k must be at least 1, got {k}")
    if by == "adv_err":  # tie-breaks use whichever objectives the front has
        objectives = ["adv_err"] + [o for o in objectives
                                    if o in front_df.columns and o != "adv_err"]
    objectives = _objectives(front_df, objectives)
    if len(front_df) == 0:
        return front_df.copy()
    F = front_df[objectives].to_numpy(dtype=float)
    if np.isnan(F).any():
        raise ValueError(f"top_k: the front has missing values in {objectives}; drop those rows "
                         "first")
    keys = {o: F[:, j] for j, o in enumerate(objectives)}
    if by == "adv_err":
        primary = front_df["adv_err"].to_numpy(dtype=float)
    elif by == "weighted":
        if weights is None:
            w = np.ones(len(objectives))
        elif isinstance(weights, Mapping):
            unknown = [name for name in weights if name not in objectives]
            if unknown:
                raise ValueError(f"top_k: weights for {unknown} but the objectives are "
                                 f"{objectives}")
            w = np.array([float(weights.get(o, 0.0)) for o in objectives])
        else:
            w = np.asarray(list(weights), dtype=float)
            if w.shape != (len(objectives),):
                raise ValueError(f"top_k: {len(w)} weights given for {len(objectives)} objectives "
                                 f"{objectives}")
        if (w < 0).any() or w.sum() <= 0:
            raise ValueError(f"top_k: weights must be non-negative with a positive sum, got "
                             f"{list(w)}")
        primary = _normalised(F) @ (w / w.sum())
    else:
        from pymoo.operators.survival.rank_and_crowding.metrics import calc_crowding_distance

        primary = -calc_crowding_distance(_normalised(F))  # descending distance
    # np.lexsort sorts by the last key first: primary, then objectives in order, then position.
    order = np.lexsort([np.arange(len(front_df))] + [keys[o] for o in reversed(objectives)]
                       + [primary])
    return front_df.iloc[order[: int(k)]]


def gene_label(space, gene_index: int, value: int) -> str:
    """The readable label of a gene value: the space's `gene_label` hook, else the number."""
    hook = getattr(space, "gene_label", None)
    return str(hook(gene_index, int(value))) if callable(hook) else str(int(value))


def arch_labels(space, df: pd.DataFrame) -> list[str] | None:
    """Each row's layers by name (the space's `arch_label`), or None if the space has no names
    or the table's gene columns g0..gN do not fit it."""
    label = getattr(space, "arch_label", None)
    genes = [f"g{i}" for i in range(len(space.genes))]
    if not callable(label) or any(g not in df.columns for g in genes) or \
            f"g{len(genes)}" in df.columns:
        return None
    try:
        return [str(label(tuple(int(v) for v in row))) for row in df[genes].to_numpy()]
    except ValueError:      # genes out of this space's range: a table of another space
        return None


def genes_of_kind(space, kind: str) -> list[int]:
    """Indices of the genes of one kind ("block", "ratio", ...), in gene order."""
    idx = [i for i, g in enumerate(space.genes) if g.kind == kind]
    if not idx:
        kinds = sorted({g.kind for g in space.genes})
        raise ValueError(f"no genes of kind {kind!r} in space {space.name}; kinds: "
                         f"{', '.join(kinds)}")
    return idx


def layer_name(gene) -> str:
    return f"layer{gene.layer}" if gene.layer >= 0 else gene.name


def row_names(space) -> list[str]:
    """Each gene's row in per-layer tables: its layer where several genes share one (a
    ShuffleNet layer's block and ratio), else the gene's own name (a DARTS edge,
    `normal.node2.in0`), so a row never claims a layer that is only one edge."""
    layers = [layer_name(g) for g in space.genes]
    return [layer if layers.count(layer) > 1 else g.name for g, layer in zip(space.genes, layers)]


def layer_counts(space, df: pd.DataFrame, kind: str) -> pd.DataFrame:
    """How often each choice of `kind` occurs per layer among the rows of `df` (Tables XIV/XV).

    Rows are the layers ("layer0", ...; `row_names`), columns every choice label the space
    offers for that kind (zeros included), in value order; the column axis is
    named after the kind and the row axis "layer", which the heatmap uses.
    """
    idx = genes_of_kind(space, kind)
    labels: dict[str, None] = {}
    for i in idx:
        for v in range(space.genes[i].choices):
            labels.setdefault(gene_label(space, i, v), None)
    columns = list(labels)
    rows, names, row_of = [], [], row_names(space)
    for i in idx:
        gene, col = space.genes[i], f"g{i}"
        if col not in df.columns:
            raise ValueError(f"layer_counts: the table has no gene column {col} ({gene.name})")
        counts = dict.fromkeys(columns, 0)
        for v in df[col].to_numpy(dtype=np.int64):
            if not 0 <= v < gene.choices:
                raise ValueError(f"layer_counts: gene {gene.name} = {v} is out of range "
                                 f"0..{gene.choices - 1}")
            counts[gene_label(space, i, v)] += 1
        rows.append(counts)
        names.append(row_of[i])
    out = pd.DataFrame(rows, index=pd.Index(names, name="layer"), columns=columns, dtype="int64")
    out.columns.name = kind
    return out


def layer_legal(space, kind: str) -> pd.DataFrame:
    """True where a layer may take a choice (`allowed_values`), shaped as `layer_counts`.

    A zero count in an illegal cell is no verdict on the choice, so the
    per-layer figures grey those cells out.
    """
    empty = layer_counts(space, pd.DataFrame({f"g{i}": [] for i in range(len(space.genes))}),
                         kind)
    legal = pd.DataFrame(False, index=empty.index, columns=empty.columns)
    for row, i in enumerate(genes_of_kind(space, kind)):
        for v in space.allowed_values(space.genes[i], None):
            legal.iloc[row, list(empty.columns).index(gene_label(space, i, v))] = True
    return legal


def layer_choices(space, arch: Sequence[int], kind: str) -> dict[str, str]:
    """Each layer's choice of `kind` in one arch, by the labels `layer_counts` uses."""
    row_of = row_names(space)
    return {row_of[i]: gene_label(space, i, arch[i]) for i in genes_of_kind(space, kind)}


# --- table files ----------------------------------------------------------------------------
def _cell(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        v = float(value)
        if v.is_integer() and abs(v) >= 1e4:
            return f"{int(v)}"
        return f"{v:.4g}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def _show_index(df: pd.DataFrame) -> bool:
    return df.index.name is not None or not isinstance(df.index, pd.RangeIndex)


def markdown_table(df: pd.DataFrame, index: bool | None = None) -> str:
    """A GitHub-flavoured Markdown table (numbers right-aligned); no `tabulate` needed.

    index=None shows the index only when it carries information (a named or
    non-range index).
    """
    index = _show_index(df) if index is None else index
    header = [str(c) for c in df.columns]
    numeric = [pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c])
               for c in df.columns]
    if index:
        header = [str(df.index.name or "")] + header
        numeric = [False] + numeric
    lines = ["| " + " | ".join(h.replace("|", "\\|") for h in header) + " |",
             "| " + " | ".join("---:" if n else "---" for n in numeric) + " |"]
    for label, row in zip(df.index, df.itertuples(index=False, name=None)):
        cells = [_cell(v) for v in row]
        if index:
            cells = [_cell(label)] + cells
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def save_table(df: pd.DataFrame, path_base: str | Path, index: bool | None = None) -> list[Path]:
    """Write `df` as `<path_base>.csv` and `<path_base>.md` (atomically); returns both paths."""
    base = Path(path_base)
    index = _show_index(df) if index is None else index
    csv, md = Path(f"{base}.csv"), Path(f"{base}.md")
    atomic_write_text(csv, df.to_csv(index=index))
    atomic_write_text(md, markdown_table(df, index=index))
    return [csv, md]


__all__ = [
    "TOP_BY",
    "arch_labels",
    "gene_label",
    "genes_of_kind",
    "layer_choices",
    "layer_counts",
    "layer_legal",
    "markdown_table",
    "save_table",
    "top_k",
]
