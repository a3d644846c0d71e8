"""Lock files that keep two writers of one output apart, and let a killed one's lock go.

A lock is a small JSON file (pid, host, command, scope) linked into place
atomically. Scopes nest: the whole-run scope meets every other; any other
scope meets only itself and the whole run. A process never meets its own
locks, so a command may run inside another (`tamnas run` chains them).
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path


def lock_path(root: Path, scope: str) -> Path:
    """The lock file of `scope` in the directory `root`."""
    safe = scope.replace("/", "~").replace(os.sep, "~")
    return Path(root) / (LOCK_NAME if scope == RUN_SCOPE else f".tamnas.{safe}.lock")


# --- locks: one writer per output ---------------------------------------------------------
LOCK_NAME = ".tamnas.lock"   # the whole-run lock (run, train-supernet)
RUN_SCOPE = "run"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


class RunLock:
    """An exclusive lock file (pid, host, command, scope), held while a command writes.

    A second writer of the same scope is refused with one line naming the
    holder; a lock whose process is dead (same host) is taken over, so
    `kill -9` never blocks a resume. The whole-run scope conflicts with every
    other; other scopes conflict only with themselves and the whole run.
    """

    def __init__(self, root: str | Path, command: str = "tamnas", scope: str = RUN_SCOPE):
        self.root = Path(root)
        self.scope = scope
        self.path = lock_path(self.root, scope)
        self.me = {"pid": os.getpid(), "host": socket.gethostname(), "command": command,
                   "scope": scope, "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        self.held = False

    @staticmethod
    def _read(path: Path) -> dict | None:
        try:
            blob = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (json.JSONDecodeError, UnicodeDecodeError):
            return {}  # a lock cut short by a kill: nobody holds it
        return blob if isinstance(blob, dict) else {}

    def _alive(self, holder: dict) -> bool:
        pid = holder.get("pid")
        same_host = holder.get("host") == self.me["host"]
        return bool(holder) and (not same_host or not isinstance(pid, int) or _pid_alive(pid))

    def _mine(self, holder: dict | None) -> bool:
        return bool(holder) and holder.get("pid") == self.me["pid"] \
            and holder.get("host") == self.me["host"]

    def _create(self) -> bool:
        """Link a complete lock file into place; False if one exists already."""
        fd, tmp = tempfile.mkstemp(prefix=".tamnas-lock.", suffix=".tmp", dir=self.root)
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(self.me, f)
            os.link(tmp, self.path)  # atomic, and fails if the lock exists
            return True
        except FileExistsError:
            return False
        finally:
            Path(tmp).unlink(missing_ok=True)

    def _refuse(self, holder: dict, path: Path) -> ValueError:
        return ValueError(
            f"{self.root} is in use by {holder.get('command', 'tamnas')} (pid "
            f"{holder.get('pid')} on {holder.get('host')}, since {holder.get('since')}); wait for "
            f"it to finish, or delete {path} if that process is gone")

    def _conflicts(self) -> Iterator[tuple[Path, dict]]:
        """Live locks of other processes whose scope meets this one."""
        for path in sorted(self.root.glob(".tamnas*.lock")):
            if path == self.path:
                continue
            holder = self._read(path)
            if holder is None or self._mine(holder):
                continue
            if not self._alive(holder):
                path.unlink(missing_ok=True)  # left by a killed process: nobody holds it
                continue
            if self.scope == RUN_SCOPE or path.name == LOCK_NAME:
                yield path, holder

    def acquire(self) -> RunLock:
        for _ in range(3):
            if self._create():
                for path, holder in self._conflicts():
                    self.path.unlink(missing_ok=True)
                    raise self._refuse(holder, path)
                self.held = True
                return self
            holder = self._read(self.path)
            if holder is None:
                continue  # released meanwhile: try again
            if self._mine(holder):
                return self  # this process holds it already (a command inside `run`)
            if self._alive(holder):
                raise self._refuse(holder, self.path)
            self.path.unlink(missing_ok=True)  # stale: its process is dead
        raise ValueError(f"{self.path}: could not take the run-directory lock; try again")

    def release(self) -> None:
        if self.held and self._read(self.path) == self.me:
            self.path.unlink(missing_ok=True)
        self.held = False

    def __enter__(self) -> RunLock:  # noqa: PYI034 (the class is not meant to be subclassed)
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


__all__ = ["LOCK_NAME", "RUN_SCOPE", "RunLock", "lock_path"]
