"""How the report reads a run's files and shows numbers: readers, percent tables.

A reader returns None for a file that is absent, so the report can say "not
run"; a file that is there but damaged (garbled, cut, impossible scores) is a
one-line ValueError naming it: a report drawn from what happened to parse
would state numbers the run never produced.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from tamnas.metrics import format_error

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

log = logging.getLogger("tamnas")


DAMAGED_FIX = "run the command that writes it again, or delete it"


def read_csv(path: Path) -> pd.DataFrame | None:
    """A CSV as a frame, or None if absent or empty; ValueError if damaged."""
    from tamnas.files import read_table

    if not path.is_file() or path.stat().st_size == 0:
        return None
    df = read_table(path, (), DAMAGED_FIX)
    return df if len(df.columns) else None


def read_json(path: Path) -> Any:
    """A JSON file parsed, or None if absent; ValueError if garbled."""
    from tamnas.files import read_json as read_checked

    if not path.is_file():
        return None
    return read_checked(path, DAMAGED_FIX)


def read_config(path: Path) -> dict | None:
    """A config.toml parsed, or None if absent or unreadable."""
    if not path.is_file():
        return None
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        log.warning("report: cannot read %s (%s)", path, type(err).__name__)
        return None


def fmt_value(value: Any) -> str:
    """A setting as the configuration table shows it (floats to 4 significant digits)."""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return "[" + ", ".join(fmt_value(v) for v in value) + "]"
    return str(value)


def percent_table(df: pd.DataFrame) -> pd.DataFrame:
    """Error columns as percentages with two decimals, renamed to say so.

    An error with a standard-error column `<err>_se` becomes "33.00 ± 2.71",
    so the table shows which differences are within the noise; the `_se`
    columns and `n_eval` are then folded into the text.
    """
    out = df.copy()
    for col in [c for c in out.columns if f"{c}_se" in out.columns]:
        se = out[f"{col}_se"]
        if se.notna().any():
            out[col] = [format_error(p, s) if pd.notna(p) else "" for p, s in zip(out[col], se)]
            out = out.rename(columns={col: f"{col} (%)"})
        out = out.drop(columns=f"{col}_se")
    for col in out.columns:
        if str(col).endswith("_err") and pd.api.types.is_numeric_dtype(out[col]):
            out[col] = (100.0 * out[col].astype(float)).round(2)
            out = out.rename(columns={col: f"{col} (%)"})
    return out


def ci_text(value: Any, ci: Any) -> str:
    """A statistic with its 95% interval, "n/a" when absent."""
    if value is None:
        return "n/a"
    if isinstance(ci, list) and len(ci) == 2 and None not in ci:
        return f"{float(value):.2f} [{float(ci[0]):.2f}, {float(ci[1]):.2f}]"
    return f"{float(value):.2f}"


def points_text(value: Any) -> str:
    """A fraction as percentage points with one decimal."""
    return "n/a" if value is None else f"{100 * float(value):.1f}"


__all__ = ["ci_text", "fmt_value", "percent_table", "points_text", "read_config", "read_csv",
           "read_json"]
