"""Image counts fitted to the data when a run is created: a preset's default that the data cannot
hold is capped (one line each, and the capped value is what the run records); a value the user
set for this call is refused instead, before any work."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from tamnas.config import Config
from tamnas.config.sources import is_explicit

VAL_SHARE = 0.2     # a capped validation split holds out a fifth of the training images


def _source(sources: Mapping[str, str] | None, key: str) -> str:
    return (sources or {}).get(key, "preset")


def _limit(cfg: Config, sources: Mapping[str, str] | None, key: str, value: int, most: int,
           why: str, capped: int | None = None) -> tuple[int, str | None]:
    """`value` if it is at most `most`; else refused (explicit) or capped to `capped`."""
    if value <= most or most < 1:
        return value, None
    if is_explicit(sources, key):
        raise ValueError(f"{key} {value} ({_source(sources, key)}) is more than {why}; choose at "
                         f"most {most}")
    new = most if capped is None else capped
    return new, (f"note: {key} {value} ({_source(sources, key)} {cfg.preset}) is more than {why}; "
                 f"using {new}, as recorded in the run's config.toml")


def fit_image_counts(cfg: Config, n_train: int, n_test: int,
                     sources: Mapping[str, str] | None = None) -> tuple[Config, list[str]]:
    """`cfg` with data.val_size, search.bn_images, search.eval_images and data.ood_size fitted
    to a training split of `n_train` and a test split of `n_test` images; the notes to print.

    `sources` ({key: default|preset|run|--config|--set}) says which values the user chose
    for this call; without it every value counts as the preset's and may be capped."""
    from tamnas.data.registry import OOD_AUTO

    d, s = cfg.data, cfg.search
    notes: list[str] = []
    room = n_train - d.batch_size          # the most held out that leaves one full batch
    if room < 1:
        most = n_train - max(1, round(VAL_SHARE * n_train))
        raise ValueError(f"data.batch_size {d.batch_size} ({_source(sources, 'data.batch_size')}):"
                         f" the {n_train} training images hold no full batch beside a validation "
                         f"split; choose data.batch_size at most {most}, or add images")
    val, note = _limit(cfg, sources, "data.val_size", d.val_size, room,
                       f"the {n_train} training images allow with data.batch_size "
                       f"{d.batch_size} left to train on",
                       capped=max(1, min(round(VAL_SHARE * n_train), room)))
    notes += [note] if note else []
    n_fit = n_train - val if val < n_train else 0
    if d.train_limit:
        n_fit = min(n_fit, d.train_limit)
    if n_fit < d.batch_size:     # no full batch: check_data says so, naming data.batch_size
        return dataclasses.replace(cfg, data=dataclasses.replace(d, val_size=val)), notes
    bn, note = _limit(cfg, sources, "search.bn_images", s.bn_images, n_fit,
                      f"the {n_fit} training images")
    notes += [note] if note else []
    ev, note = _limit(cfg, sources, "search.eval_images", s.eval_images, val,
                      f"the {val} validation images (data.val_size)")
    notes += [note] if note else []
    ood = d.ood_size
    kind = OOD_AUTO.get(d.dataset, d.ood) if d.ood == "auto" else d.ood
    if kind == "permuted":            # drawn from the test split, in two disjoint halves
        pool = min(n_test, d.test_limit) if d.test_limit else n_test
        ood, note = _limit(cfg, sources, "data.ood_size", d.ood_size, pool // 2,
                           f"half the {pool} test images that permuted OoD images are made of")
        notes += [note] if note else []
    fitted = dataclasses.replace(
        cfg, data=dataclasses.replace(d, val_size=val, ood_size=ood),
        search=dataclasses.replace(s, bn_images=bn, eval_images=ev))
    return fitted, notes


__all__ = ["VAL_SHARE", "fit_image_counts"]
