"""The run directory: its file names, and locks as fine as the work."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tamnas.rundir import LOCK_NAME, RunDir, RunLock


def test_run_dir_names_every_file_and_creates_no_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    run = RunDir("~/runs/qs")
    assert run.root == tmp_path / "runs" / "qs" and not run.root.exists()
    assert run.config == run.root / "config.toml" and run.report == run.root / "report.md"
    assert run.supernet_checkpoint == run.root / "supernet" / "checkpoint.pt"
    assert run.supernet_log == run.root / "supernet" / "train_log.csv"
    assert not (run.root / "supernet").exists()          # plain file names create nothing
    for name in ("supernet", "search", "figures", "stats", "exports", "validate", "compare"):
        assert getattr(run, f"{name}_dir") == run.root / name
    assert run.retrain_dir("front-3") == run.root / "retrain" / "front-3"
    assert run.archive == run.root / "search" / "archive.json"
    assert not run.root.exists()                         # no property creates a folder
    assert RunDir(run.root) == run                           # frozen value: equal by path
    with pytest.raises(AttributeError):
        run.root = tmp_path                                  # type: ignore[misc]


def _hold_in_child(root, scope: str) -> subprocess.Popen:
    """A live process of its own holding `scope`'s lock until its stdin closes."""
    code = ("import sys; from tamnas.rundir import RunLock; "
            f"lock = RunLock({str(root)!r}, 'tamnas other', {scope!r}).acquire(); "
            "print('held', flush=True); sys.stdin.read(); lock.release()")
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


@pytest.mark.parametrize("held, wanted, clash", [
    ("retrain/front-1", "retrain/front-2", False),   # two archs retrain at once
    ("retrain/front-1", "evaluate/front-2", False),
    ("search", "figures", False),
    ("retrain/front-1", "retrain/front-1", True),    # two writers of one output never meet
    ("search", "search", True),
    ("run", "retrain/front-1", True),                # the whole run excludes every other writer
    ("retrain/front-1", "run", True),
])
def test_locks_exclude_only_writers_of_the_same_output(tmp_path, held, wanted, clash):
    proc = _hold_in_child(tmp_path, held)
    try:
        lock = RunLock(tmp_path, "tamnas me", wanted)
        if clash:
            with pytest.raises(ValueError, match="is in use by tamnas other"):
                lock.acquire()
            assert not lock.path.exists() or json.loads(lock.path.read_text())["pid"] == proc.pid
        else:
            with lock:
                assert json.loads(lock.path.read_text())["pid"] == os.getpid()
            assert not lock.path.exists()
    finally:
        proc.stdin.close()
        proc.wait()
    assert not list(tmp_path.glob(".tamnas*.lock"))


def test_a_process_nests_its_own_locks(tmp_path):
    with RunLock(tmp_path, "tamnas run") as outer:
        with RunLock(tmp_path, "tamnas search", "search") as inner:
            assert inner.held and outer.held
        assert (tmp_path / LOCK_NAME).exists()
    assert not list(tmp_path.glob(".tamnas*.lock"))
