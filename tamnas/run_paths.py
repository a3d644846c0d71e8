"""Names and paths that stay inside a run: path parts from names, `--out`, no links.

Runs are shared, and names come from files and options (an arch JSON's
`name`, `--arch`), so a name becomes a path part only through `path_part`,
which refuses separators, `..`, absolute paths, NUL and empty names. A run
holding a symbolic link is not written to, and `--out` is a new folder, an
empty one, or a tamnas run.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def path_part(name: object, what: str = "name") -> str:
    """`name` as one path component inside a run; ValueError (one line) if it could be more.

    Names come from files and options (an arch JSON's `name`, `--arch`), so a
    separator, `..`, an absolute path, NUL or a control character would let a
    command write outside its folder.
    """
    text = str(name) if isinstance(name, (str, int)) and not isinstance(name, bool) else None
    if text is None or not text or text in (".", "..") or any(c in text for c in "/\\") \
            or any(ord(c) < 32 for c in text) or Path(text).is_absolute():
        shown = repr(name)[:80]
        raise ValueError(f"{what} {shown} cannot name a folder or file in the run (empty, '.', "
                         "'..', a separator or a control character); use letters, digits, "
                         "'-' or '_'")
    return text


def is_run(root: Path) -> bool:
    """True if `root` holds a run record tamnas wrote: a `config.toml` with a run's seed and
    sections (not validated key by key: the command that opens the run does that)."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib

    record = Path(root) / "config.toml"
    if not record.is_file() or record.is_symlink():
        return False
    try:
        blob = tomllib.loads(record.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, OSError):
        return False
    return isinstance(blob.get("seed"), int) and all(
        isinstance(blob.get(s), dict) for s in ("data", "space", "train", "search"))


def check_out(root: str | Path) -> None:
    """Refuse an `--out` that is a symbolic link, or a non-empty folder that is not a tamnas run:
    a command that creates a run never touches a user's own files."""
    root = Path(root).expanduser()
    if root.is_symlink():
        raise ValueError(f"--out {root} is a symbolic link; give the folder it points to, or a "
                         "new folder")
    held = [p for p in root.iterdir() if not (p.name.startswith(".tamnas")
                                              and p.name.endswith(".lock"))] \
        if root.is_dir() else []
    if held and not is_run(root):
        raise ValueError(f"--out {root} holds files and is not a tamnas run (no config.toml "
                         "that tamnas wrote); choose a new or an empty folder")


def check_no_links(root: Path) -> None:
    """Refuse a run that holds a symbolic link: a linked `exports/` or `retrain/` would take
    this command's outputs out of the run."""
    if not root.is_dir():
        return
    for folder, dirs, names in os.walk(root):
        for name in (*dirs, *names):
            path = Path(folder) / name
            if path.is_symlink():
                raise ValueError(f"{path} is a symbolic link inside the run; tamnas never writes "
                                 "through links: replace it with a real folder or file")


__all__ = ["check_no_links", "check_out", "is_run", "path_part"]
