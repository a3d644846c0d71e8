"""Atomic writes, checked checkpoints and the readers of files a run wrote.

Every file a stage writes goes through a temporary file and `os.replace`, so
a run killed mid-write leaves either the old file or the new one, never half
of one. Checkpoints carry a format tag, a kind and the sha256 of their
payload, so a truncated, foreign or damaged file turns into one clear error
instead of a pickle traceback or silently wrong weights. Nothing here knows
what a run directory looks like (that is `rundir.py`).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import tempfile
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd
    import torch

FORMAT = "tamnas-checkpoint-v2"   # payload bytes + their sha256
LEGACY_FORMAT = "tamnas-checkpoint-v1"  # the state inline, no checksum (read, never written)
LOAD_ERRORS = (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError,
                OSError, AttributeError, ImportError, KeyError, TypeError, IndexError)


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
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        return value.tolist()  # numpy scalars and arrays, tensors
    return value


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def read_json(path: str | Path, fix: str) -> Any:
    """A JSON file a command wrote; ValueError naming the file and `fix` if it is garbled."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ValueError(f"{path} is garbled; {fix}") from None


def read_table(path: str | Path, columns: Sequence[str], fix: str) -> pd.DataFrame:
    """A CSV a command wrote; ValueError naming the file if it is garbled or lacks `columns`."""
    import pandas as pd

    try:
        df = pd.read_csv(path)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is garbled ({type(err).__name__}); {fix}") from None
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{path} is garbled (no column {', '.join(missing)}); {fix}")
    return df


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def save_checkpoint(path: str | Path, state: dict, kind: str) -> None:
    """Save a dict of tensors / plain objects, tagged with its `kind` and its payload's sha256."""
    import torch

    payload = io.BytesIO()
    torch.save(state, payload)
    data = payload.getvalue()
    raw = torch.frombuffer(bytearray(data), dtype=torch.uint8)  # stored as is, not re-encoded
    buf = io.BytesIO()
    torch.save({"format": FORMAT, "kind": kind, "sha256": sha256_bytes(data), "payload": raw},
               buf)
    atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: str | Path, kind: str | None = None,
                    map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint written by `save_checkpoint`.

    ValueError, in one line that names the file, if it is truncated, foreign, of
    another kind, damaged (payload checksum mismatch) or holds no state dict.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    bad = (f"checkpoint {path} is truncated or not a tamnas checkpoint ({{}}); delete it or pass "
           "--no-resume")
    try:
        blob = torch.load(path, map_location=map_location, weights_only=False)
    except LOAD_ERRORS as e:
        raise ValueError(bad.format(type(e).__name__)) from None
    if not isinstance(blob, dict) or blob.get("format") not in (FORMAT, LEGACY_FORMAT):
        raise ValueError(f"checkpoint {path} is not a tamnas checkpoint (no {FORMAT} tag)")
    if kind is not None and blob.get("kind") != kind:
        raise ValueError(f"checkpoint {path} holds a {blob.get('kind')!r} state, expected {kind!r}")
    if blob["format"] == LEGACY_FORMAT:
        state = blob.get("state")
    else:
        raw = blob.get("payload")
        data = raw.numpy().tobytes() if isinstance(raw, torch.Tensor) else None
        if data is None or sha256_bytes(data) != blob.get("sha256"):
            raise ValueError(f"checkpoint {path} is damaged (its payload does not match its "
                             "checksum); restore it from a copy, or delete it and pass --no-resume")
        try:
            state = torch.load(io.BytesIO(data), map_location=map_location, weights_only=False)
        except LOAD_ERRORS as e:
            raise ValueError(bad.format(type(e).__name__)) from None
    if not isinstance(state, dict):
        raise ValueError(f"checkpoint {path} holds no state (a {type(state).__name__}); delete "
                         "it or pass --no-resume")
    return state


def require_keys(state: Mapping, keys: Sequence[str], path: str | Path) -> None:
    """ValueError naming the checkpoint if its state lacks any of `keys` (a malformed file)."""
    missing = [k for k in keys if k not in state]
    if missing:
        raise ValueError(f"checkpoint {path} is malformed (no {', '.join(missing)}); delete it "
                         "or pass --no-resume")


_DIGESTS: dict[tuple[str, int, int], str] = {}


def file_digest(path: Path) -> str:
    """sha256 of a file's bytes, cached per (path, size, mtime) within one process."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _DIGESTS:
        h = hashlib.sha256()
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        _DIGESTS[key] = h.hexdigest()
    return _DIGESTS[key]


__all__ = ["FORMAT", "LOAD_ERRORS", "atomic_write_bytes", "atomic_write_json", "atomic_write_text",
           "file_digest", "json_safe", "load_checkpoint", "read_json", "read_table",
           "require_keys", "save_checkpoint", "sha256_bytes"]
