"""Errors per class from per-image masks: which classes a net gets wrong, clean and attacked."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from tamnas.metrics import binomial_se


def per_class_table(labels, clean_wrong, adv_wrong=None,
                    classes: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per class: its test images, clean error and (when given) attacked error, each
    with its binomial standard error; a class with no images gets empty cells."""
    y = np.asarray(labels, dtype=np.int64)
    n_classes = len(classes) if classes else int(y.max()) + 1
    names = list(classes) if classes else [str(c) for c in range(n_classes)]
    rows = []
    for c, name in enumerate(names):
        mask = y == c
        n = int(mask.sum())
        row: dict = {"class": name, "images": n}
        for key, wrong in (("clean_err", clean_wrong), ("adv_err", adv_wrong)):
            if wrong is None:
                continue
            err = float(np.asarray(wrong, dtype=bool)[mask].mean()) if n else float("nan")
            row[key] = err
            row[f"{key}_se"] = binomial_se(err, n) if n else float("nan")
        rows.append(row)
    return pd.DataFrame(rows)


__all__ = ["per_class_table"]
