"""Atomic writes, checked checkpoint loading and the run-directory layout.

Every file a stage writes goes through a temporary file and `os.replace`, so
a run killed mid-write leaves either the old file or the new one, never half
of one. Checkpoints carry a format tag and a kind, so a truncated or foreign
file turns into one clear error instead of a pickle traceback.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import socket
import tempfile
import time
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


# --- supernet fingerprint: every derived result names the checkpoint it came from ---------
TRAINING_SECTIONS = ("data", "space", "train")
NOT_TRAINING_KEYS = ("root", "download", "num_workers")  # where the data lives, not what it is
SETTINGS_NAME = "settings.json"
FINGERPRINT_KEY = "supernet_fingerprint"
STAMP_NAME = "fingerprint.json"
_DIGESTS: dict[tuple[str, int, int], str] = {}


def training_settings(cfg: Any) -> dict:
    """The config values that shape the supernet's weights (seed, data, space, train)."""
    d = cfg.to_dict()
    out = {"seed": d["seed"]}
    for section in TRAINING_SECTIONS:
        out[section] = {k: v for k, v in d[section].items() if k not in NOT_TRAINING_KEYS}
    return json_safe(out)


def _file_digest(path: Path) -> str:
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


def recorded_training_settings(run: RunDir | str | Path) -> dict | None:
    """The training settings the run's supernet was trained with (supernet/settings.json).

    Runs made before that file existed fall back to the training sections of config.toml.
    """
    run = run if isinstance(run, RunDir) else RunDir(run)
    path = run.root / "supernet" / SETTINGS_NAME
    if path.is_file():
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ValueError(f"{path} is corrupt; delete it and pass --no-resume to train the "
                             "supernet again") from None
    if run.config.is_file():
        from tamnas.config import load_run_config

        return training_settings(load_run_config(run.config))
    return None


def record_training_settings(run: RunDir, cfg: Any) -> None:
    atomic_write_json(run.root / "supernet" / SETTINGS_NAME, training_settings(cfg))


def supernet_fingerprint(run: RunDir | str | Path) -> str:
    """A short hash of the supernet checkpoint (its bytes) and the settings that trained it.

    Two results carry the same fingerprint only if they were derived from the
    same weights, so a result computed on an older or differently trained
    supernet is recognised as stale.
    """
    run = run if isinstance(run, RunDir) else RunDir(run)
    ckpt = run.supernet_checkpoint
    if not ckpt.is_file():
        raise FileNotFoundError(f"{run.root} has no trained supernet ({ckpt}); run "
                                "`tamnas train-supernet` first")
    h = hashlib.sha256()
    h.update(json.dumps(recorded_training_settings(run), sort_keys=True).encode())
    h.update(_file_digest(ckpt).encode())
    return h.hexdigest()[:16]


def _stamp_path(target: Path) -> Path:
    return target / STAMP_NAME if target.is_dir() or not target.suffix else target


def stamp(target: Mapping | str | Path, fingerprint: str) -> dict | None:
    """Tie a derived result to a supernet fingerprint.

    A dict gets a copy with the `supernet_fingerprint` key (returned); a JSON
    file gets the key written into it; a directory gets `fingerprint.json`.
    """
    if isinstance(target, Mapping):
        return {**target, FINGERPRINT_KEY: fingerprint}
    path = _stamp_path(Path(target))
    blob = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    if not isinstance(blob, dict):
        raise ValueError(f"{path}: cannot stamp a JSON file that does not hold an object")  # noqa: TRY004 (a user-facing one-line error)
    blob[FINGERPRINT_KEY] = fingerprint
    atomic_write_json(path, blob)
    return None


def stamped_fingerprint(target: Mapping | str | Path) -> str | None:
    """The fingerprint a result was stamped with, or None if it carries none."""
    if isinstance(target, Mapping):
        return target.get(FINGERPRINT_KEY)
    path = _stamp_path(Path(target))
    if not path.is_file():
        return None
    try:
        blob = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ValueError(f"{path} is corrupt; delete it and run the command again") from None
    return blob.get(FINGERPRINT_KEY) if isinstance(blob, dict) else None


def is_fresh(target: Mapping | str | Path, fingerprint: str, missing_ok: bool = True) -> bool:
    """True if `target` was derived from the supernet with `fingerprint` (or is unstamped and
    `missing_ok`: results written before fingerprints existed)."""
    stored = stamped_fingerprint(target)
    return (stored is None and missing_ok) or stored == fingerprint


def check_fresh(target: Mapping | str | Path, fingerprint: str, *, fix: str,
                missing_ok: bool = True, name: str | None = None) -> None:
    """ValueError (one line, ending in `fix`) if `target` came from another supernet checkpoint."""
    if not is_fresh(target, fingerprint, missing_ok):
        what = name or str(target if not isinstance(target, Mapping) else "the result")
        stored = stamped_fingerprint(target)
        got = f"supernet {stored}" if stored else "no supernet fingerprint"
        raise ValueError(f"{what} is stale: it records {got}, the run's supernet is "
                         f"{fingerprint}; {fix}")


# --- one writer per run directory ---------------------------------------------------------
LOCK_NAME = ".tamnas.lock"
RESULT_NAMES = ("supernet", "search", "figures", "stats", "exports", "retrain", "report.md")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


class RunLock:
    """An exclusive lock file (pid, host, command) in a run directory, held while a command writes.

    A second writer is refused with one line naming the holder; a lock whose
    process is dead (same host) is taken over, so `kill -9` never blocks a resume.
    """

    def __init__(self, root: str | Path, command: str = "tamnas"):
        self.path = Path(root) / LOCK_NAME
        self.me = {"pid": os.getpid(), "host": socket.gethostname(), "command": command,
                   "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        self.held = False

    def _holder(self) -> dict | None:
        try:
            blob = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (json.JSONDecodeError, UnicodeDecodeError):
            return {}  # a lock cut short by a kill: nobody holds it
        return blob if isinstance(blob, dict) else {}

    def _create(self) -> bool:
        """Link a complete lock file into place; False if one exists already."""
        fd, tmp = tempfile.mkstemp(prefix=f"{LOCK_NAME}.", suffix=".tmp", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(self.me, f)
            os.link(tmp, self.path)  # atomic, and fails if the lock exists
            return True
        except FileExistsError:
            return False
        finally:
            Path(tmp).unlink(missing_ok=True)

    def acquire(self) -> RunLock:
        for _ in range(3):
            if self._create():
                self.held = True
                return self
            holder = self._holder()
            if holder is None:
                continue  # released meanwhile: try again
            same_host = holder.get("host") == self.me["host"]
            pid = holder.get("pid")
            if holder and (not same_host or not isinstance(pid, int) or _pid_alive(pid)):
                raise ValueError(
                    f"{self.path.parent} is in use by {holder.get('command', 'tamnas')} (pid "
                    f"{pid} on {holder.get('host')}, since {holder.get('since')}); wait for it "
                    f"to finish, or delete {self.path} if that process is gone")
            self.path.unlink(missing_ok=True)  # stale: its process is dead
        raise ValueError(f"{self.path}: could not take the run-directory lock; try again")

    def release(self) -> None:
        if self.held and self._holder() == self.me:
            self.path.unlink(missing_ok=True)
        self.held = False

    def __enter__(self) -> RunLock:  # noqa: PYI034 (the class is not meant to be subclassed)
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def move_results_aside(run: RunDir, names: tuple[str, ...] = RESULT_NAMES) -> Path | None:
    """Move a run's results into `previous/N/` (with a copy of its config); the new folder or None."""
    present = [n for n in names if (run.root / n).exists()]
    if not present:
        return None
    k = 1
    while (run.root / "previous" / str(k)).exists():
        k += 1
    dest = run.root / "previous" / str(k)
    dest.mkdir(parents=True)
    for name in present:
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        os.replace(run.root / name, dest / name)
    if run.config.is_file():
        atomic_write_bytes(dest / run.config.name, run.config.read_bytes())
    return dest
