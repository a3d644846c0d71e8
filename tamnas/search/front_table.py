"""The front as a short fixed-width table for the terminal (search, lego, the run's summary)."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from tamnas.metrics import format_error


def format_front_table(df: pd.DataFrame, objectives: Sequence[str], max_rows: int = 30,
                       layers: Sequence[str] | None = None) -> str:
    """A short fixed-width table of a front: its `front:K` row (what --arch takes), params,
    errors in % (± one standard error), arch key. The rows are the front's order, not a rank.

    `layers` (one string per row, e.g. the space's layer names) is shown after the arch key.
    """
    if layers is not None and df is not None and len(layers) != len(df):
        raise ValueError(f"format_front_table: {len(layers)} layer labels for {len(df)} rows")
    if df is None or len(df) == 0:
        return "(empty front)"
    cols = [("front", lambda i, r: f"front:{i}")]
    if "params" in df:
        cols.append(("params", lambda i, r: f"{int(r['params']):,}"))
    if "flops" in objectives and "flops" in df:
        cols.append(("flops", lambda i, r: f"{int(r['flops']):,}"))
    labels = {"clean_err": "clean err %", "adv_err": "adv err %", "ood_aupr_err": "ood aupr err %"}
    for key, label in labels.items():
        if key in df and (key in objectives or key != "ood_aupr_err"):
            with_se = f"{key}_se" in df and bool(df[f"{key}_se"].notna().any())
            cols.append((f"{label} ± SE" if with_se else label,
                         lambda i, r, k=key: format_error(r[k], r.get(f"{k}_se"))))
    cols.append(("arch", lambda i, r: str(r["arch"])))
    if layers is not None:
        cols.append(("layers", lambda i, r: str(layers[i])))
    shown = df.head(max_rows).reset_index(drop=True)
    cells = [[fmt(i, row) for _, fmt in cols] for i, row in shown.iterrows()]
    widths = [max(len(name), *(len(c[j]) for c in cells)) for j, (name, _) in enumerate(cols)]
    first_text = len(cols) - (2 if layers is not None else 1)  # arch key (and layers): left-aligned

    def line(texts: list[str]) -> str:
        parts = [t.ljust(w) if j >= first_text else t.rjust(w)
                 for j, (t, w) in enumerate(zip(texts, widths))]
        return "  ".join(parts).rstrip()

    lines = [line([name for name, _ in cols]), line(["-" * w for w in widths])]
    lines += [line(cell) for cell in cells]
    if len(df) > max_rows:
        lines.append(f"... {len(df) - max_rows} more rows")
    return "\n".join(lines)


__all__ = ["format_front_table"]
