"""Atomic writes, checked checkpoints and the readers of files a run wrote.

Every file a stage writes goes through a temporary file and `os.replace`, so
a run killed mid-write leaves either the old file or the new one, never half
of one. Checkpoints carry a format tag, a kind and the sha256 of their
payload, so a truncated, foreign or damaged file turns into one clear error
instead of a pickle traceback or silently wrong weights. Nothing here knows
what a run directory looks like (that is `rundir.py`).

Opening a file never runs code: runs are shared like pretrained weights, so
every `torch.load` here is `weights_only=True` (tensors, numbers, strings,
lists and dicts; never a pickled object), and a file whose tensors would not
fit in this machine's memory is refused before anything is allocated. The
checksum guards integrity only: it travels inside the file it covers.
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
MEMORY_SHARE = 0.8  # refuse a file whose contents need more than this share of the memory
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


def ragged_line(path: str | Path) -> int | None:
    """The first line of a CSV whose field count differs from its header's (a cut or damaged
    file pandas would fill with NaN), or None."""
    import csv

    with Path(path).open(newline="", encoding="utf-8") as f:
        rows = csv.reader(f)
        header = next(rows, None)
        for row in rows:
            if header is not None and row and len(row) != len(header):
                return rows.line_num
    return None


def check_scores(df: pd.DataFrame, source: str, fix: str) -> None:
    """ValueError if an error rate (a column named *_err or *_err_se) is NaN where the search
    always writes one, negative or above 1, or a count (params, flops) is negative."""
    import numpy as np

    for col in df.columns:
        if not (str(col).endswith(("_err", "_err_se")) or col in ("params", "flops")):
            continue
        values = np.asarray(df[col], dtype=float) if df[col].dtype != object else None
        if values is None:
            raise ValueError(f"{source}: column {col} holds text, not numbers; {fix}")
        required = col in ("adv_err", "clean_err", "params")
        high = np.inf if col in ("params", "flops") else 1.0
        bad = (np.isnan(values) & required) | (values < 0) | (values > high) | np.isinf(values)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(f"{source}: {col} = {values[i]} in row {i + 1} is not "
                             f"{'an error rate in [0, 1]' if high == 1 else 'a count'}; {fix}")


def read_table(path: str | Path, columns: Sequence[str], fix: str) -> pd.DataFrame:
    """A CSV a command wrote; ValueError naming the file if it is garbled, cut, lacks
    `columns` or holds impossible scores."""
    import pandas as pd

    try:
        line = ragged_line(path)
        df = pd.read_csv(path)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is garbled ({type(err).__name__}); {fix}") from None
    if line is not None:
        raise ValueError(f"{path} is garbled (line {line} has another number of fields than "
                         f"the header); {fix}")
    check_scores(df, str(path), fix)
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{path} is garbled (no column {', '.join(missing)}); {fix}")
    return df


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def machine_memory() -> int:
    """Physical memory of this machine in bytes (0 when unknown)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 0


def gib(n: float) -> str:
    """Bytes as GiB for messages."""
    return f"{n / 2**30:,.1f} GiB"


def _check_plain(value: Any, where: str = "state") -> None:
    """TypeError if `value` holds anything but tensors, numbers, strings, None, lists and dicts:
    what `torch.load(weights_only=True)` reads back without unpickling an object."""
    import torch

    if isinstance(value, Mapping):
        for k, v in value.items():
            if not isinstance(k, (str, int)):
                raise TypeError(f"{where}: key {k!r} is a {type(k).__name__}, not a str or int")
            _check_plain(v, f"{where}[{k!r}]")
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_plain(v, f"{where}[{i}]")
    elif not isinstance(value, (torch.Tensor, str, bytes, int, float, bool, type(None))):
        raise TypeError(f"{where} is a {type(value).__name__}; checkpoints hold tensors, "
                        "numbers, strings, lists and dicts only")


def save_checkpoint(path: str | Path, state: dict, kind: str) -> None:
    """Save a dict of tensors / plain values, tagged with its `kind` and its payload's sha256.

    TypeError if the state holds any other object: the reader would refuse it.
    """
    import torch

    _check_plain(state)
    payload = io.BytesIO()
    torch.save(state, payload)
    data = payload.getvalue()
    raw = torch.frombuffer(bytearray(data), dtype=torch.uint8)  # stored as is, not re-encoded
    buf = io.BytesIO()
    torch.save({"format": FORMAT, "kind": kind, "sha256": sha256_bytes(data), "payload": raw},
               buf)
    atomic_write_bytes(path, buf.getvalue())


class UnsafeFileError(ValueError):
    """A file that holds pickled Python objects: opening it could run code, so it is refused."""


def safe_torch_load(source: str | Path | bytes, name: str, fix: str,
                    map_location: str | torch.device = "cpu",
                    available: int | None = None) -> Any:
    """`torch.load(weights_only=True)` of a file or its bytes, after a size check.

    One-line ValueError naming `name` and ending in `fix` for what is not a
    PyTorch zip file, for contents that would need more than MEMORY_SHARE of
    this machine's memory (the estimate in the message), and (UnsafeFileError)
    for pickled objects, which are never unpickled.
    """
    import torch

    stream = io.BytesIO(source) if isinstance(source, bytes) else Path(source)
    try:
        with zipfile.ZipFile(stream) as z:
            need = sum(info.file_size for info in z.infolist())
    except (zipfile.BadZipFile, OSError, EOFError, ValueError):
        raise ValueError(f"{name} is truncated or not a tamnas checkpoint (not a PyTorch zip "
                         f"file); {fix}") from None
    available = machine_memory() if available is None else available
    if available > 0 and need > MEMORY_SHARE * available:
        raise ValueError(f"{name} would need about {gib(need)} of memory to open, more than "
                         f"this machine's {gib(available)} allow; {fix}")
    if isinstance(stream, io.BytesIO):
        stream.seek(0)
    try:
        return torch.load(stream, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        raise UnsafeFileError(
            f"{name} holds pickled Python objects, which tamnas never opens (they could run "
            f"code): it was written by an earlier tamnas version, or crafted; {fix}") from None
    except LOAD_ERRORS as e:
        raise ValueError(f"{name} is truncated or not a tamnas checkpoint "
                         f"({type(e).__name__}); {fix}") from None


def load_checkpoint(path: str | Path, kind: str | None = None,
                    map_location: str | torch.device = "cpu",
                    fix: str = "delete it or pass --no-resume") -> dict:
    """Load a checkpoint written by `save_checkpoint`, never unpickling an object.

    ValueError, in one line that names the file and ends in `fix`, if it is
    truncated, foreign, of another kind, damaged (payload checksum mismatch,
    checked before the payload is read), too large for this machine, holds
    pickled objects or holds no state dict.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    name = f"checkpoint {path}"
    blob = safe_torch_load(path, name, fix, map_location)
    if not isinstance(blob, dict) or blob.get("format") not in (FORMAT, LEGACY_FORMAT):
        raise ValueError(f"{name} is not a tamnas checkpoint (no {FORMAT} tag); {fix}")
    if kind is not None and blob.get("kind") != kind:
        raise ValueError(f"{name} holds a {blob.get('kind')!r} state, expected {kind!r}")
    if blob["format"] == LEGACY_FORMAT:
        state = blob.get("state")
    else:
        raw = blob.get("payload")
        data = raw.numpy().tobytes() if isinstance(raw, torch.Tensor) else None
        if data is None or sha256_bytes(data) != blob.get("sha256"):
            raise ValueError(f"{name} is damaged (its payload does not match its checksum); "
                             f"restore it from a copy, or {fix}")
        state = safe_torch_load(data, name, fix, map_location)
    if not isinstance(state, dict):
        raise ValueError(f"{name} holds no state (a {type(state).__name__}); {fix}")  # noqa: TRY004 (a user-facing one-line error)
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


__all__ = [
    "FORMAT",
    "LOAD_ERRORS",
    "MEMORY_SHARE",
    "UnsafeFileError",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "check_scores",
    "file_digest",
    "gib",
    "json_safe",
    "load_checkpoint",
    "machine_memory",
    "ragged_line",
    "read_json",
    "read_table",
    "require_keys",
    "safe_torch_load",
    "save_checkpoint",
    "sha256_bytes",
]
