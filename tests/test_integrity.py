"""Run-directory integrity: every bad input is one line before any work, results are tied to
the supernet that produced them, and one writer at a time holds a run directory."""

from __future__ import annotations

import errno
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cli_configs import on_cpu, set_args, snapshot

from tamnas.cli import main
from tamnas.rundir import (
    LOCK_NAME,
    RunDir,
    RunLock,
    is_fresh,
    stamp,
    stamped_fingerprint,
    supernet_fingerprint,
)
from tamnas.search.archive import Archive

TINY = set_args(data__train_limit="192", data__val_size="64", search__pop_size="4",
                search__n_offsprings="4", search__generations="1", search__bn_images="32",
                search__eval_images="40", output__top_k="2", output__formats='["png"]')


def cli(*argv: str) -> int:
    return main(on_cpu(*argv))


def one_line_error(capsys, *fragments: str) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1, err
    assert err.startswith("tamnas: error:"), err
    for f in fragments:
        assert f in err, err
    return err


# --- the bad-input catalogue: exit 2, one line, nothing in the run directory changed -------
RUN_CASES = [  # (argv after the command's run dir, fragments of the one line)
    (["search", "--set", 'train.lr_milestones=["a"]'], ["train.lr_milestones[0]", "expected int"]),
    (["search", "--set", "train.lr_milestones=[-5]"], ["train.lr_milestones[0]", "out of range"]),
    (["evaluate", "--set", "output.eval_eps=[nan,0.1]"], ["output.eval_eps[0]", "finite"]),
    (["search", "--set", "search.params_range=[-10,5]"], ["search.params_range[0]"]),
    (["search", "--set", "search.params_range=[1,5]"], ["search.params_range", "holds no arch"]),
    (["search", "--set", "search.objectives=[\"adv_err\",\"speed\"]"], ["search.objectives[1]"]),
    (["export", "--arch", "front:-1"], ["front:-1", "front:K takes a row number"]),
    (["retrain", "--arch", "front:99"], ["--arch front:99"]),
    (["lego", "--top", "0"], ["--top 0"]),
    (["lego", "--top", "-3"], ["--top -3"]),
    (["search", "--set", "space.stage_layers=[1,3]"], ["does not fit the space"]),
    (["search", "--set", "search.bn_images=0"], ["search.bn_images: 0 is out of range"]),
    (["search", "--set", "search.eval_images=100000"],
     ["search.eval_images 100000: the validation split holds 64 images"]),
    (["search", "--set", "search.tournament_size=9"], ["search.tournament_size 9 is larger"]),
    (["search", "--set", "search.pop_size=1000000000"], ["search.pop_size: needs about"]),
]


@pytest.mark.parametrize("argv, fragments", RUN_CASES, ids=[" ".join(c[0]) for c in RUN_CASES])
def test_bad_input_on_a_run_is_one_line_and_changes_nothing(argv, fragments, finished, tmp_path,
                                                            capsys):
    before = snapshot(finished)
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert cli(argv[0], str(finished), *argv[1:]) == 2
    one_line_error(capsys, *fragments)
    assert snapshot(finished) == before
    assert not (finished / LOCK_NAME).exists()


NEW_RUN_CASES = [
    (["--set", "search.params_range=[1,5]"], ["search.params_range", "holds no arch"]),
    (["--set", "train.params_range_phase2=[1,5]"], ["train.params_range_phase2"]),
    (["--set", "data.dataset=cifar10", "--data", "{tmp}/no-data"],
     ["dataset files not found"]),
    (["--set", "output.formats=[\"jpg\"]"], ["output.formats[0]"]),
    (["--set", "retrain.lr_milestones=[1.5]"], ["retrain.lr_milestones[0]"]),
    (["--set", "data.batch_size=200"],
     ["data.batch_size 200 is larger than the 192 training images"]),
    (["--set", "data.train_limit=1"], ["data.batch_size 64 is larger than the 1 training"]),
    (["--set", "search.bn_images=0"], ["search.bn_images: 0 is out of range"]),
    (["--set", "search.tournament_size=9"], ["search.tournament_size 9 is larger"]),
    (["--set", "search.pop_size=1000000000"], ["search.pop_size: needs about", "GiB"]),
    (["--set", "data.ood=noise", "--set", "data.ood_size=100000000000"],
     ["data.ood_size: needs about"]),
    (["--set", "space.stem_channels=100000000"], ["space (supernet size): needs about"]),
    (["--set", "train.phase1_epochs=0", "--set", "train.phase2_epochs=0"],
     ["trains no supernet", "search.strategy nsga2 would score untrained weights"]),
]


@pytest.mark.parametrize("command", ["run", "train-supernet"])
@pytest.mark.parametrize("argv, fragments", NEW_RUN_CASES,
                         ids=[" ".join(c[0]) for c in NEW_RUN_CASES])
def test_bad_input_for_a_new_run_creates_no_run_directory(command, argv, fragments, tmp_path,
                                                          capsys):
    out = tmp_path / "new"
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert cli(command, "quickstart", "--out", str(out), *TINY, *argv) == 2
    one_line_error(capsys, *fragments)
    assert not out.exists()


def test_out_that_is_a_file_is_one_line(tmp_path, capsys):
    out = tmp_path / "taken"
    out.write_text("mine\n")
    assert cli("train-supernet", "quickstart", "--out", str(out), *TINY) == 2
    one_line_error(capsys, "is a file, not a run directory")
    assert out.read_text() == "mine\n"


def test_out_with_a_too_long_name_is_one_line(tmp_path, capsys):
    out = tmp_path / ("x" * 300)
    assert cli("train-supernet", "quickstart", "--out", str(out), *TINY) == 2
    one_line_error(capsys, "too long", "choose a shorter --out")


def test_unwritable_out_is_one_line(tmp_path, capsys, monkeypatch):
    import tamnas.files as ck

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", kwargs.get("dir"))

    monkeypatch.setattr(ck.tempfile, "mkstemp", read_only)
    assert cli("train-supernet", "quickstart", "--out", str(tmp_path / "ro"), *TINY) == 2
    one_line_error(capsys, "cannot write", "Read-only file system")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_run_directory_is_one_line(run_copy, capsys):
    before = snapshot(run_copy)
    for p in [run_copy, *run_copy.rglob("*")]:
        if p.is_dir():
            p.chmod(0o555)
    try:
        assert cli("search", str(run_copy), "--no-resume") == 2
        one_line_error(capsys)
    finally:
        for p in [run_copy, *run_copy.rglob("*")]:
            if p.is_dir():
                p.chmod(0o755)
    assert snapshot(run_copy) == before


def _killed_after_first_epoch(monkeypatch, *argv: str) -> None:
    """Run a CLI command that is killed right after its first supernet checkpoint."""
    import tamnas.train as train_module

    real_save = train_module.save_checkpoint

    def save_then_die(*args, **kwargs):
        real_save(*args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(train_module, "save_checkpoint", save_then_die)
    assert cli(*argv) == 130
    monkeypatch.setattr(train_module, "save_checkpoint", real_save)


def test_disk_full_during_training_keeps_the_checkpoint_and_is_one_line(tmp_path, capsys,
                                                                       monkeypatch):
    import tamnas.files as ck

    out = tmp_path / "full"
    argv = ("train-supernet", "quickstart", "--out", str(out), *TINY)
    _killed_after_first_epoch(monkeypatch, *argv)
    ckpt = out / "supernet" / "checkpoint.pt"
    before = snapshot(out)
    real_write, real_fsync, writing_checkpoint = ck.atomic_write_bytes, ck.os.fsync, []

    def write(path, data):
        writing_checkpoint[:] = [Path(path).name == "checkpoint.pt"]
        real_write(path, data)

    def fsync(fd):
        if writing_checkpoint == [True]:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(ck, "atomic_write_bytes", write)
    monkeypatch.setattr(ck.os, "fsync", fsync)
    capsys.readouterr()
    assert cli(*argv) == 2  # epoch 2 trains, then its checkpoint finds the disk full
    one_line_error(capsys, "no space left", "run the same command again")
    assert not list(out.rglob("*.tmp")) and not (out / LOCK_NAME).exists()
    assert snapshot(out)[str(ckpt.relative_to(out))] == before[str(ckpt.relative_to(out))]


def test_empty_config_toml_is_one_line_and_stays_empty(run_copy, capsys):
    (run_copy / "config.toml").write_text("")
    before = snapshot(run_copy)
    assert cli("plot", str(run_copy)) == 2
    one_line_error(capsys, "config.toml is empty")
    assert snapshot(run_copy) == before


def test_garbled_generations_csv_is_one_line_naming_the_file(run_copy, capsys):
    gens = run_copy / "search" / "generations.csv"
    gens.write_bytes(b'gen"eration,hv\n1,"0.5\n\xff\xfe,,,,\n')
    before = snapshot(run_copy)
    assert cli("plot", str(run_copy)) == 2
    one_line_error(capsys, str(gens), "garbled")
    assert snapshot(run_copy) == before


def test_stale_archive_is_refused_by_lego_and_export(run_copy, capsys):
    archive = json.loads((run_copy / "search" / "archive.json").read_text())
    archive["supernet_fingerprint"] = "0" * 16
    (run_copy / "search" / "archive.json").write_text(json.dumps(archive))
    before = snapshot(run_copy)
    for argv in (["lego"], ["export", "--arch", "front:0"], ["retrain", "--arch", "front:0"]):
        assert cli(argv[0], str(run_copy), *argv[1:]) == 2
        one_line_error(capsys, "archive.json is stale", f"tamnas search {run_copy}")
    assert snapshot(run_copy) == before


def test_stale_retrained_weights_are_refused_by_evaluate(run_copy, capsys):
    out = run_copy / "retrain" / "front-0"
    out.mkdir(parents=True)
    arch = json.loads((run_copy / "search" / "front.json").read_text())["front"][0]["arch"]
    (out / "scores.json").write_text(json.dumps({"name": "front-0",
                                                 "arch": "-".join(map(str, arch))}))
    (out / "model.pt").write_bytes(b"weights of an older supernet")
    stamp(out, "f" * 16)
    before = snapshot(run_copy)
    assert cli("evaluate", str(run_copy)) == 2
    one_line_error(capsys, "front-0 is stale", "retrain it again")
    assert snapshot(run_copy) == before


def test_unwritable_run_directory_is_one_line_and_changes_nothing(run_copy, capsys,
                                                                  monkeypatch):
    import tamnas.files as ck

    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", kwargs.get("dir"))

    before = snapshot(run_copy)
    monkeypatch.setattr(ck.tempfile, "mkstemp", denied)
    assert cli("search", str(run_copy), "--no-resume") == 2
    one_line_error(capsys, "cannot write", "Permission denied")
    assert snapshot(run_copy) == before


# --- read-only commands write only what they produce ---------------------------------------
@pytest.mark.parametrize("command", ["plot", "report"])
def test_read_only_commands_leave_config_toml_alone(command, run_copy):
    config = run_copy / "config.toml"
    before = (config.read_bytes(), config.stat().st_mtime_ns, config.stat().st_ino)
    sets = ["--set", "output.top_k=1"] if command == "plot" else []  # report reads files only
    assert cli(command, str(run_copy), *sets) == 0
    assert (config.read_bytes(), config.stat().st_mtime_ns, config.stat().st_ino) == before


def test_a_failing_set_is_not_saved(run_copy, capsys):
    before = (run_copy / "config.toml").read_bytes()
    assert cli("search", str(run_copy), "--set", "search.params_range=[1,5]") == 2
    one_line_error(capsys)
    assert (run_copy / "config.toml").read_bytes() == before
    assert cli("plot", str(run_copy)) == 0  # later plain commands still work


# --- fingerprints ------------------------------------------------------------------------
def test_every_derived_result_records_the_supernet_fingerprint(finished):
    fp = supernet_fingerprint(finished)
    assert len(fp) == 16 and fp == supernet_fingerprint(RunDir(finished))
    assert Archive.load(finished / "search").fingerprint == fp
    assert stamped_fingerprint(finished / "search" / "front.json") == fp
    assert stamped_fingerprint(finished / "exports" / "lego.json") == fp


def test_fingerprint_changes_with_the_checkpoint_and_the_training_settings(run_copy):
    fp = supernet_fingerprint(run_copy)
    settings = run_copy / "supernet" / "settings.json"
    blob = json.loads(settings.read_text())
    original = settings.read_bytes()
    blob["train"]["lr"] = 0.2
    settings.write_text(json.dumps(blob))
    assert supernet_fingerprint(run_copy) != fp
    settings.write_bytes(original)
    assert supernet_fingerprint(run_copy) == fp
    ckpt = run_copy / "supernet" / "checkpoint.pt"
    ckpt.write_bytes(ckpt.read_bytes() + b"\0")
    assert supernet_fingerprint(run_copy) != fp


def test_stamp_and_check_round_trip(tmp_path):
    assert stamp({"a": 1}, "abc") == {"a": 1, "supernet_fingerprint": "abc"}
    f = tmp_path / "result.json"
    f.write_text('{"x": 2}')
    stamp(f, "abc")
    assert json.loads(f.read_text()) == {"x": 2, "supernet_fingerprint": "abc"}
    d = tmp_path / "dir"
    d.mkdir()
    assert stamped_fingerprint(d) is None and is_fresh(d, "abc")
    assert not is_fresh(d, "abc", missing_ok=False)
    stamp(d, "abc")
    assert is_fresh(d, "abc") and not is_fresh(d, "def") and is_fresh(f, "abc")


def test_changed_training_setting_killed_then_resumed_rebuilds_the_archive(run_copy, capsys,
                                                                          monkeypatch):
    old_archive = (run_copy / "search" / "archive.json").read_bytes()
    new = ["run", "quickstart", "--out", str(run_copy), *TINY, "--set", "train.lr=0.2"]
    _killed_after_first_epoch(monkeypatch, *new, "--no-resume")
    assert not (run_copy / LOCK_NAME).exists()  # an interrupted command lets go of the lock
    assert (run_copy / "previous" / "1" / "search" / "archive.json").read_bytes() == old_archive
    capsys.readouterr()
    assert main([*new, "--device", "cpu"]) == 0   # not quiet: the search reports its counts
    out = capsys.readouterr().out
    fp = supernet_fingerprint(run_copy)
    archive = Archive.load(run_copy / "search")
    assert archive.fingerprint == fp
    counts = re.search(r"search: (\d+) archs in the archive, (\d+) scored now", out)
    assert counts and counts[1] == counts[2] != "0", out  # every arch scored on the new supernet
    assert stamped_fingerprint(run_copy / "exports" / "lego.json") == fp


def test_search_on_a_partial_supernet_is_redone_once_training_goes_on(tmp_path, capsys,
                                                                     monkeypatch):
    out = tmp_path / "grow"
    train = ("train-supernet", "quickstart", "--out", str(out), *TINY)
    _killed_after_first_epoch(monkeypatch, *train)
    capsys.readouterr()
    assert cli("search", str(out)) == 2   # a partial supernet is refused unless asked for
    one_line_error(capsys, "a supernet trained 1 of 2 epochs", "--partial-supernet")
    assert cli("search", str(out), "--partial-supernet") == 0   # scored on the one-epoch supernet
    first = Archive.load(out / "search")
    capsys.readouterr()
    assert cli(*train, "--set", "train.lr=0.2") == 2  # resuming with another setting: refused
    one_line_error(capsys, "other training settings", "train.lr: 0.1 -> 0.2")
    assert cli(*train) == 0                # epoch 2: a new checkpoint
    capsys.readouterr()
    assert cli("search", str(out)) == 0   # the supernet is finished now
    said = capsys.readouterr().out
    assert "archive was scored on another supernet checkpoint" in said
    assert Archive.load(out / "previous" / "1" / "search") == first
    assert Archive.load(out / "search").fingerprint == supernet_fingerprint(out)


def test_no_resume_on_a_finished_run_moves_the_old_results_aside(run_copy, capsys):
    before = snapshot(run_copy)
    assert cli("train-supernet", "quickstart", "--out", str(run_copy), *TINY, "--no-resume") == 0
    said = capsys.readouterr().out
    assert f"moved the previous results of {run_copy} to {run_copy / 'previous' / '1'}" in said
    kept = snapshot(run_copy / "previous" / "1")
    for rel, digest in before.items():
        if rel != "config.toml":
            assert kept[rel] == digest, rel
    assert kept["config.toml"] == before["config.toml"]
    assert not (run_copy / "search").exists()


# --- one writer per run directory ---------------------------------------------------------
def _tamnas(*argv: str, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
           "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "tamnas", *on_cpu(*argv)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def _wait_for(path: Path, proc: subprocess.Popen, seconds: float = 120.0) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.1)


def test_second_writer_is_refused_and_a_dead_holders_lock_is_taken_over(tmp_path, capsys):
    out = tmp_path / "busy"
    long = [*TINY, "--set", "train.phase1_epochs=1000"]
    first = _tamnas("train-supernet", "quickstart", "--out", str(out), *long)
    try:
        _wait_for(out / LOCK_NAME, first)
        second = _tamnas("train-supernet", "quickstart", "--out", str(out), *long)
        _, err = second.communicate(timeout=120)
        assert second.returncode == 2
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
        assert f"is in use by tamnas train-supernet (pid {first.pid}" in err
        assert first.poll() is None  # the first writer carries on
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    lock = out / LOCK_NAME
    assert json.loads(lock.read_text())["pid"] == first.pid  # left behind by kill -9
    # the dead holder's lock is cleared: this command gets past the lock to its own error
    assert cli("lego", str(out), "--partial-supernet") == 2
    err = one_line_error(capsys)
    assert "has no trained supernet" in err or "has no search results" in err, err
    assert not lock.exists()
    with RunLock(out, "test") as held:
        assert json.loads(lock.read_text())["pid"] == os.getpid() and held.held
    assert not lock.exists()


# --- nonsense that used to pass: divergence, damaged or malformed weights, odd paths -------
def test_a_diverging_supernet_stops_at_the_first_non_finite_loss(tmp_path, capsys):
    out = tmp_path / "nan"
    assert cli("train-supernet", "quickstart", "--out", str(out), *TINY,
               "--set", "train.lr=1e30") == 2
    one_line_error(capsys, "loss is not finite at epoch 1", "objective trades_yopo",
                   "lower the lr")
    assert not (out / "supernet" / "checkpoint.pt").exists()   # no non-finite epoch was saved
    assert not (out / LOCK_NAME).exists()


def _flip_tensor_bytes(path: Path) -> None:
    """Flip 64 bytes in the middle of the checkpoint file (inside its tensor data)."""
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    data[mid:mid + 64] = bytes(b ^ 0xFF for b in data[mid:mid + 64])
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("command", [["search"], ["lego"], ["export", "--arch", "front:0"]])
def test_a_damaged_supernet_checkpoint_is_refused_and_changes_nothing(run_copy, capsys, command):
    _flip_tensor_bytes(run_copy / "supernet" / "checkpoint.pt")
    before = snapshot(run_copy)
    assert cli(command[0], str(run_copy), *command[1:]) == 2
    one_line_error(capsys, "checkpoint.pt is", "damaged")
    assert snapshot(run_copy) == before


@pytest.mark.parametrize("state, fragment", [({}, "malformed (no epoch)"),
                                             ({"model": {}}, "malformed (no epoch)"),
                                             ([1, 2], "holds no state")])
def test_a_malformed_tagged_checkpoint_is_one_line(run_copy, capsys, state, fragment):
    from tamnas.files import save_checkpoint

    save_checkpoint(run_copy / "supernet" / "checkpoint.pt", state, kind="supernet")
    before = snapshot(run_copy)
    assert cli("search", str(run_copy)) == 2
    one_line_error(capsys, fragment)
    assert snapshot(run_copy) == before


def test_non_finite_supernet_weights_are_refused_by_scoring(run_copy, capsys):
    import torch

    from tamnas.files import load_checkpoint, save_checkpoint

    path = run_copy / "supernet" / "checkpoint.pt"
    state = load_checkpoint(path, kind="supernet")
    key = next(k for k, v in state["model"].items() if v.is_floating_point())
    state["model"][key] = torch.full_like(state["model"][key], float("nan"))
    save_checkpoint(path, state, kind="supernet")
    assert cli("lego", str(run_copy)) == 2
    one_line_error(capsys, "holds non-finite weights", key)


def test_out_inside_a_symlink_loop_is_one_line(tmp_path, capsys):
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    assert cli("train-supernet", "quickstart", "--out", str(tmp_path / "a" / "run"), *TINY) == 2
    one_line_error(capsys)


def _numeric_keys():
    import dataclasses
    from typing import get_type_hints

    from tamnas.config import SECTIONS

    for name, cls in SECTIONS.items():
        hints = get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if hints[f.name] in (int, float):
                yield f"{name}.{f.name}"


@pytest.mark.parametrize("key", list(_numeric_keys()))
def test_a_string_for_a_number_in_a_config_file_is_refused_for_every_key(key, tmp_path, capsys):
    section, name = key.split(".")
    toml = tmp_path / "bad.toml"
    toml.write_text(f'[{section}]\n{name} = "12"\n')
    assert cli("train-supernet", "quickstart", "--out", str(tmp_path / "r"),
               "--config", str(toml)) == 2
    one_line_error(capsys, key, "expected")
    assert not (tmp_path / "r").exists()
