"""The run directory: the only code that knows its file names, its locks and its fingerprints.

A run directory holds what one preset produced, stage by stage:

    config.toml                  the run as created (run / train-supernet)
    data.json                    what it was trained on: classes, images per class and split,
                                 size, channels, the test files, the image folder's digest
    supernet/                    checkpoint.pt, train_log.csv, settings.json
    search/                      archive.{json,csv}, front.json, generations.csv, per-strategy
                                 state and logs, config.toml of the search call
    figures/ stats/              plots and per-layer tables
    exports/                     arch JSON + weights (+ ONNX) per exported arch
    retrain/NAME/                one standalone training: recipe.json, checkpoint, log, scores,
                                 robustness grids; retrain/summary.csv over all of them
    validate/                    rank fidelity: one folder per arch and seed, summary, correlation
    compare/                     front picks vs size-matched random archs vs a plain net
    report.md
    explore.html                 the run in a browser, self-contained
    previous/N/                  results moved aside by --no-resume or a changed supernet

Path properties never create folders: writers create what they write.
Every derived result records the fingerprint of the weights it came from
(`stamp`), so a result of older or other weights is recognised as stale.
Locks are as fine as the work: a whole-run command locks the run, any other
writer locks only its own output, and two writers of one output never meet.

Nothing is written outside the run: a name (an arch's, a label) becomes a
path part only through `path_part`, which refuses separators, `..`, absolute
paths, NUL and empty names; a run holding a symbolic link is not written to;
and `--out` is a new folder, an empty one, or a tamnas run (one whose
`config.toml` tamnas reads back as a run record).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tamnas.files import atomic_write_bytes, atomic_write_json, file_digest, json_safe
from tamnas.locks import LOCK_NAME, RUN_SCOPE, RunLock, lock_path
from tamnas.run_paths import check_no_links, check_out, is_run, path_part

SETTINGS_NAME = "settings.json"
FINGERPRINT_KEY = "supernet_fingerprint"
STAMP_NAME = "fingerprint.json"
RESULT_NAMES = ("supernet", "search", "figures", "stats", "exports", "retrain", "validate",
                "compare", "report.md", "explore.html")
TRAINING_SECTIONS = ("data", "space", "train")
NOT_TRAINING_KEYS = ("root", "download", "num_workers")  # where the data lives, not what it is


@dataclass(frozen=True)
class RunDir:
    """The file names of one run; every command reads and writes through these."""

    root: Path

    def __init__(self, root: str | Path):
        object.__setattr__(self, "root", Path(root).expanduser())

    @property
    def config(self) -> Path:
        return self.root / "config.toml"

    @property
    def data_record(self) -> Path:
        """data.json: what the run was trained on (classes, counts, test files, folder digest)."""
        return self.root / "data.json"

    # supernet training
    @property
    def supernet_dir(self) -> Path:
        return self.root / "supernet"

    @property
    def supernet_checkpoint(self) -> Path:
        return self.supernet_dir / "checkpoint.pt"

    @property
    def supernet_log(self) -> Path:
        return self.supernet_dir / "train_log.csv"

    @property
    def supernet_settings(self) -> Path:
        return self.supernet_dir / SETTINGS_NAME

    # search
    @property
    def search_dir(self) -> Path:
        return self.root / "search"

    @property
    def archive(self) -> Path:
        return self.search_dir / "archive.json"

    @property
    def front(self) -> Path:
        return self.search_dir / "front.json"

    @property
    def generations(self) -> Path:
        return self.search_dir / "generations.csv"

    @property
    def search_config(self) -> Path:
        return self.search_dir / "config.toml"

    @property
    def searched_weights(self) -> Path:
        """The weights a gradient search trained (MGDA), beside the one-shot checkpoint."""
        return self.search_dir / "supernet.pt"

    # analysis and export
    @property
    def figures_dir(self) -> Path:
        return self.root / "figures"

    @property
    def stats_dir(self) -> Path:
        return self.root / "stats"

    @property
    def exports_dir(self) -> Path:
        return self.root / "exports"

    def export_json(self, name: str) -> Path:
        return self.exports_dir / f"{path_part(name, 'export name')}.json"

    def per_class(self, name: str, retrained: bool = True) -> Path:
        """Errors per class on the test images: of retrain/NAME's net (`tamnas evaluate`), or of
        an export's inherited weights (exports/NAME.per_class.csv, the LEGO stage)."""
        if retrained:
            return self.retrain_dir(name) / "per_class.csv"
        return self.exports_dir / f"{path_part(name, 'export name')}.per_class.csv"

    @property
    def retrain_root(self) -> Path:
        return self.root / "retrain"

    def retrain_dir(self, name: str) -> Path:
        return self.retrain_root / path_part(name, "arch name")

    def retrained_names(self) -> list[str]:
        """Names of the retrained nets (folders with scores.json), sorted."""
        return sorted(p.parent.name for p in self.retrain_root.glob("*/scores.json"))

    @property
    def retrain_summary(self) -> Path:
        return self.retrain_root / "summary.csv"

    @property
    def retrain_correlation(self) -> Path:
        return self.retrain_root / "correlation.json"

    @property
    def validate_dir(self) -> Path:
        return self.root / "validate"

    @property
    def compare_dir(self) -> Path:
        return self.root / "compare"

    @property
    def report(self) -> Path:
        return self.root / "report.md"

    @property
    def explore_html(self) -> Path:
        """The run in a browser: one self-contained page (`tamnas explore`)."""
        return self.root / "explore.html"

    @property
    def previous_root(self) -> Path:
        return self.root / "previous"

    def lock_path(self, scope: str) -> Path:
        return lock_path(self.root, scope)


# --- fingerprints: every derived result names the weights it came from ----------------------
def training_settings(cfg: Any) -> dict:
    """The config values that shape the supernet's weights (seed, data, space, train)."""
    d = cfg.to_dict()
    out = {"seed": d["seed"]}
    for section in TRAINING_SECTIONS:
        out[section] = {k: v for k, v in d[section].items() if k not in NOT_TRAINING_KEYS}
    return json_safe(out)


def settings_diff(saved: Mapping, now: Mapping) -> list[str]:
    """Differences between two `training_settings` dicts, as `section.key: old -> new`."""
    diff = [f"seed: {saved.get('seed')!r} -> {now['seed']!r}"] if saved.get("seed") != now["seed"] \
        else []
    for s in TRAINING_SECTIONS:
        old = saved.get(s, {})
        diff += [f"{s}.{k}: {old.get(k)!r} -> {v!r}" for k, v in now[s].items()
                 if k not in NOT_TRAINING_KEYS and old.get(k) != v]
    return diff


def recorded_training_settings(run: RunDir) -> dict | None:
    """The training settings the run's supernet was trained with (supernet/settings.json).

    Runs made before that file existed fall back to the training sections of config.toml.
    """
    path = run.supernet_settings
    if path.is_file():
        try:
            saved = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            saved = None
        if not isinstance(saved, dict) or not isinstance(saved.get("seed"), int) \
                or not all(isinstance(saved.get(s), dict) for s in TRAINING_SECTIONS):
            raise ValueError(f"{path} is corrupt (not the settings object tamnas writes); "
                             "restore it from a copy, or pass --no-resume to train the supernet "
                             "again")
        return saved
    if run.config.is_file():
        from tamnas.config import load_run_config

        return training_settings(load_run_config(run.config))
    return None


def check_run_record(run: RunDir) -> None:
    """Refuse a run whose config.toml was edited after its supernet was trained (seed, data,
    space or training keys): its results would be reused as if nothing had changed."""
    if not (run.supernet_settings.is_file() and run.config.is_file()):
        return
    from tamnas.config import load_run_config

    saved = recorded_training_settings(run)
    now = training_settings(load_run_config(run.config))
    diff = [f"seed: {saved['seed']!r} -> {now['seed']!r}"] if saved["seed"] != now["seed"] else []
    for s in TRAINING_SECTIONS:   # keys a newer version added are not edits
        diff += [f"{s}.{k}: {saved[s][k]!r} -> {v!r}" for k, v in now[s].items()
                 if k in saved[s] and saved[s][k] != v]
    if diff:
        raise ValueError(f"{run.config} was edited after the supernet was trained "
                         f"({'; '.join(diff[:3])}{' ...' if len(diff) > 3 else ''}); restore it, "
                         "give a change for one call with --set, or train again with "
                         f"`tamnas train-supernet PRESET --out {run.root} --no-resume`")


def record_training_settings(run: RunDir, cfg: Any) -> None:
    atomic_write_json(run.supernet_settings, training_settings(cfg))


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
    h.update(file_digest(ckpt).encode())
    return h.hexdigest()[:16]


def weights_fingerprint(path: Path, base: str) -> str:
    """The fingerprint of weights trained further from those fingerprinted `base` (MGDA's)."""
    h = hashlib.sha256()
    h.update(base.encode())
    h.update(file_digest(path).encode())
    return h.hexdigest()[:16]


def _stamp_path(target: Path) -> Path:
    return target / STAMP_NAME if target.is_dir() or not target.suffix else target


def stamp(target: Mapping | str | Path, fingerprint: str) -> dict | None:
    """Tie a derived result to a weights fingerprint.

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
    """True if `target` was derived from the weights with `fingerprint` (or is unstamped and
    `missing_ok`: results written before fingerprints existed)."""
    stored = stamped_fingerprint(target)
    return (stored is None and missing_ok) or stored == fingerprint


def check_fresh(target: Mapping | str | Path, fingerprint: str, *, fix: str,
                missing_ok: bool = True, name: str | None = None) -> None:
    """ValueError (one line, ending in `fix`) if `target` came from other weights."""
    if not is_fresh(target, fingerprint, missing_ok):
        what = name or str(target if not isinstance(target, Mapping) else "the result")
        stored = stamped_fingerprint(target)
        got = f"supernet {stored}" if stored else "no supernet fingerprint"
        raise ValueError(f"{what} is stale: it records {got}, the run's supernet is "
                         f"{fingerprint}; {fix}")


# --- locks: one writer per output -----------------------------------------------------------
@contextlib.contextmanager
def writing(root: str | Path, command: str, scope: str = RUN_SCOPE,
            enabled: bool = True) -> Iterator[RunDir]:
    """Hold the lock of `scope` in the run directory while a command writes there.

    `enabled=False` (the non-zero ranks of a torchrun job) takes no lock: rank 0
    holds it for the job. A run directory is created here, as the first write.
    """
    run = RunDir(root)
    try:
        run.root.resolve()
    except RuntimeError:  # Python's word for a loop of symbolic links
        raise ValueError(f"{run.root} lies inside a loop of symbolic links; choose another "
                         "--out") from None
    if run.root.exists() and not run.root.is_dir():
        raise ValueError(f"{run.root} is a file, not a run directory; choose another --out")
    for part in scope.split("/", 1):   # a scope names an output: exports/NAME, retrain/NAME
        path_part(part, "output name")
    if scope == RUN_SCOPE:
        check_out(run.root)
    check_no_links(run.root)
    if not enabled:
        yield run
        return
    run.root.mkdir(parents=True, exist_ok=True)
    with RunLock(run.root, command, scope):
        yield run


def move_aside(run: RunDir, names: tuple[str, ...] = RESULT_NAMES) -> Path | None:
    """Move a run's results into `previous/N/` (with a copy of its config and data record); the
    new folder or None."""
    present = [n for n in names if (run.root / n).exists()]
    if not present:
        return None
    k = 1
    while (run.previous_root / str(k)).exists():
        k += 1
    dest = run.previous_root / str(k)
    dest.mkdir(parents=True)
    for name in present:
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        os.replace(run.root / name, dest / name)
    for record in (run.config, run.data_record):
        if record.is_file():
            atomic_write_bytes(dest / record.name, record.read_bytes())
    return dest


__all__ = ["FINGERPRINT_KEY", "LOCK_NAME", "RESULT_NAMES", "RUN_SCOPE", "RunDir", "RunLock",
           "check_fresh", "check_no_links", "check_out", "check_run_record", "is_fresh", "is_run", "move_aside",
           "path_part", "record_training_settings", "recorded_training_settings",
           "settings_diff", "stamp", "stamped_fingerprint", "supernet_fingerprint",
           "training_settings", "weights_fingerprint", "writing"]
