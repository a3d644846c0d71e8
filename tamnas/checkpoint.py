"""Atomic writes, checked checkpoint loading and the run-directory layout.

Every file a stage writes goes through a temporary file and `os.replace`, so
a run killed mid-write leaves either the old file or the new one, never half
of one. Checkpoints carry a format tag and a kind, so a truncated or foreign
file turns into one clear error instead of a pickle traceback.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import tempfile
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

FORMAT = "tamnas-checkpoint-v1"


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` so that readers see the old or the new file, never a part."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes owner-only files; outputs are for everyone
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def json_safe(value: Any) -> Any:
    """JSON-ready copy: numpy scalars and tensors to Python, tuples to lists, keys to str."""
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (np.generic, torch.Tensor)):
        return value.tolist()
    return value


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def save_checkpoint(path: str | Path, state: dict, kind: str) -> None:
    """Save a dict of tensors / plain objects, tagged with its `kind` (e.g. "supernet")."""
    buf = io.BytesIO()
    torch.save({"format": FORMAT, "kind": kind, "state": state}, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: str | Path, kind: str | None = None,
                    map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint written by `save_checkpoint`; ValueError if truncated, foreign or of another kind."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        blob = torch.load(path, map_location=map_location, weights_only=False)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError,
            OSError, AttributeError, ImportError) as e:
        raise ValueError(f"checkpoint {path} is truncated or not a tamnas checkpoint "
                         f"({type(e).__name__}); delete it or pass --no-resume") from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise ValueError(f"checkpoint {path} is not a tamnas checkpoint (no {FORMAT} tag)")
    if kind is not None and blob.get("kind") != kind:
        raise ValueError(f"checkpoint {path} holds a {blob.get('kind')!r} state, expected {kind!r}")
    return blob["state"]


@dataclass(frozen=True)
class RunDir:
    """The files of one run; every stage reads and writes through these names."""

    root: Path

    def __init__(self, root: str | Path):
        object.__setattr__(self, "root", Path(root).expanduser())

    def ensure(self) -> RunDir:
        self.root.mkdir(parents=True, exist_ok=True)
        return self

    def sub(self, name: str) -> Path:
        path = self.root / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def config(self) -> Path:
        return self.root / "config.toml"

    # supernet training
    @property
    def supernet_dir(self) -> Path:
        return self.sub("supernet")

    @property
    def supernet_checkpoint(self) -> Path:
        return self.root / "supernet" / "checkpoint.pt"

    @property
    def supernet_log(self) -> Path:
        return self.root / "supernet" / "train_log.csv"

    # search
    @property
    def search_dir(self) -> Path:
        return self.sub("search")

    # analysis and export
    @property
    def figures_dir(self) -> Path:
        return self.sub("figures")

    @property
    def exports_dir(self) -> Path:
        return self.sub("exports")

    def retrain_dir(self, name: str) -> Path:
        return self.sub(f"retrain/{name}")

    @property
    def report(self) -> Path:
        return self.root / "report.md"
