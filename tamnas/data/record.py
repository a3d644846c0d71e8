"""What a run was trained on (its data.json): classes, images per class and split, image size and
channels, the test files, and a digest of an image folder's files that later commands check."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tamnas.data.folders import _folder_samples, image_folder
from tamnas.files import file_digest

if TYPE_CHECKING:
    from tamnas.config import DataConfig
    from tamnas.data.bundle import DataBundle

FOLDER = "imagefolder"
RESIZE = ("by bilinear interpolation to {res} x {res} (torch.nn.functional.interpolate, "
          "align_corners=False, antialias=True when shrinking), aspect ratio not kept, pixels "
          "rounded to 8 bits")


def folder_files(root: str | Path) -> list[str]:
    """Every image file the folder's train/ (and test/) hold, by the loader's own rules,
    relative to the folder and sorted."""
    root = Path(root).expanduser()
    files = []
    for split in ("train", "test"):
        if (root / split).is_dir():
            files += [Path(p).relative_to(root).as_posix()
                      for p, _ in _folder_samples(root / split)[1]]
    return sorted(files)


def folder_digest(root: str | Path) -> tuple[str, int]:
    """(sha256 over every image file's relative path and bytes, number of files): the same
    for the same files wherever the folder lives."""
    root = Path(root).expanduser()
    h = hashlib.sha256()
    files = folder_files(root)
    for rel in files:
        h.update(rel.encode() + b"\0" + file_digest(root / rel).encode() + b"\n")
    return h.hexdigest(), len(files)


def _per_class(labels, classes: tuple[str, ...]) -> dict[str, int]:
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=len(classes))
    return {c: int(n) for c, n in zip(classes, counts)}


def data_record(data_cfg: DataConfig, data: DataBundle) -> dict[str, Any]:
    """The run's data.json: enough to say what the run was trained and tested on."""
    info = data.info
    classes = tuple(info.classes) or tuple(str(i) for i in range(info.num_classes))
    splits = {"train": data.train, "val": data.val, "test": data.test}
    record: dict[str, Any] = {
        "dataset": data_cfg.dataset,
        "classes": list(classes),
        "images": {k: len(v) for k, v in splits.items()},
        "images_per_class": {k: _per_class(v.labels, classes) for k, v in splits.items()},
        "resolution": int(data.resolution),
        "channels": int(info.in_channels),
        "color": "grayscale" if info.in_channels == 1 else "RGB",
        "resize": RESIZE.format(res=int(data.resolution)),
        "test_files": None,
        "files": None,
        "files_digest": None,
    }
    if data_cfg.dataset == FOLDER:
        folder = image_folder(data_cfg.root, data_cfg.resolution)
        test = list(folder.test_files)
        if data_cfg.test_limit:
            test = test[: data_cfg.test_limit]
        digest, n = folder_digest(data_cfg.root)
        record.update(test_files=test, files=n, files_digest=digest)
    return record


def check_data_record(record: Mapping[str, Any], data_cfg: DataConfig) -> None:
    """One line if the image folder a run was made from no longer holds the same files."""
    if record.get("files_digest") is None or data_cfg.dataset != FOLDER:
        return
    digest, n = folder_digest(data_cfg.root)
    if digest == record["files_digest"]:
        return
    then = record.get("files")
    what = f"{then} image files then, {n} now" if then != n else f"{n} image files, some changed"
    raise ValueError(f"{data_cfg.root} is not the folder this run was made from ({what}); "
                     "restore it, or make a new run on it with `tamnas run PRESET --out NEW_DIR`")


__all__ = ["check_data_record", "data_record", "folder_digest", "folder_files"]
