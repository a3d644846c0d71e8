"""The report's data sections: what the run was trained on (data.json) and errors per class."""

from __future__ import annotations

import pandas as pd

from tamnas.analysis.report_files import percent_table, read_csv, read_json
from tamnas.analysis.stats import markdown_table
from tamnas.rundir import RunDir

NOT_RECORDED = "_not recorded_"


def data_section(run: RunDir) -> list[str]:
    """Dataset, classes, images per class and split, image size and channels, resizing."""
    lines = ["## Data", ""]
    rec = read_json(run.data_record)
    if not isinstance(rec, dict):
        return [*lines, f"{NOT_RECORDED} (no readable data.json: runs made before it have none)",
                ""]
    images = rec.get("images", {})
    lines += [(f"Dataset `{rec.get('dataset')}`: {len(rec.get('classes', []))} classes, "
               f"{rec.get('color')} ({rec.get('channels')} channel"
               f"{'s' if rec.get('channels') != 1 else ''}) at {rec.get('resolution')} x "
               f"{rec.get('resolution')} pixels; {images.get('train', '?')} training, "
               f"{images.get('val', '?')} validation (search scores) and "
               f"{images.get('test', '?')} test images."), ""]
    per = rec.get("images_per_class", {})
    if per:
        table = pd.DataFrame({split: pd.Series(counts) for split, counts in per.items()})
        table.index.name = "class"
        lines += [markdown_table(table.reset_index(), index=False), ""]
    lines += [f"Images were resized {rec.get('resize')}."]
    if rec.get("files_digest"):
        lines += [(f"The folder held {rec.get('files')} image files (sha256 of their names "
                   f"and bytes `{rec['files_digest'][:16]}`); the test files are listed in "
                   "data.json.")]
    return lines + [""]


def per_class_section(run: RunDir) -> list[str]:
    """Test error per class of the LEGO net (inherited weights) and of every retrained or
    evaluated net."""
    lines = ["## Errors per class", ""]
    found = [("LEGO net, inherited weights", run.per_class("lego", retrained=False))]
    if run.retrain_root.is_dir():
        found += [(f"`{p.parent.name}` (standalone weights)", p)
                  for p in sorted(run.retrain_root.glob("*/per_class.csv"))]
    found = [(label, p) for label, p in found if p.is_file()]
    if not found:
        return lines + [f"{NOT_RECORDED} (`tamnas lego`, `retrain` and `evaluate` write them)", ""]
    lines += [("Clean and search-attack error on the test images, per class, with one "
               "standard error."), ""]
    for label, path in found:
        df = read_csv(path)
        if df is None:
            continue
        df = df.drop(columns=["weights"], errors="ignore")
        lines += [f"{label}:", "", markdown_table(percent_table(df), index=False), ""]
    return lines


__all__ = ["data_section", "per_class_section"]
