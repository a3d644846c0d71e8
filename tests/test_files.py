"""Checkpoints survive round trips, refuse foreign, malformed or damaged files, and never leave
half a file."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from tamnas import files
from tamnas.files import (
    atomic_write_json,
    atomic_write_text,
    load_checkpoint,
    read_table,
    require_keys,
    save_checkpoint,
)


def _state(seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {"model": {"w": torch.randn(3, 4, generator=g), "b": torch.zeros(4)},
            "epoch": 7 + seed, "rng": np.random.default_rng(seed).bit_generator.state,
            "history": [0.5, 0.25]}


def test_round_trip_keeps_tensors_and_plain_objects(tmp_path):
    path = tmp_path / "sub" / "ckpt.pt"                      # missing parents are created
    state = _state()
    save_checkpoint(path, state, kind="supernet")
    back = load_checkpoint(path, kind="supernet")
    assert torch.equal(back["model"]["w"], state["model"]["w"]) and back["epoch"] == 7
    assert back["rng"] == state["rng"] and back["history"] == [0.5, 0.25]
    assert torch.equal(load_checkpoint(path)["model"]["b"], torch.zeros(4))   # kind=None: any kind


def test_wrong_kind_is_refused_naming_both_kinds(tmp_path):
    save_checkpoint(tmp_path / "c.pt", _state(), kind="search")
    with pytest.raises(ValueError, match="'search' state, expected 'supernet'"):
        load_checkpoint(tmp_path / "c.pt", kind="supernet")


def test_missing_checkpoint_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")


@pytest.mark.parametrize("cut", [0.5, 0.9, 0.0])
def test_truncated_checkpoint_is_a_clear_value_error(tmp_path, cut):
    path = tmp_path / "c.pt"
    save_checkpoint(path, _state(), kind="supernet")
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * cut)])
    with pytest.raises(ValueError) as e:
        load_checkpoint(path, kind="supernet")
    msg = str(e.value)
    assert str(path) in msg and "truncated or not a tamnas checkpoint" in msg and "\n" not in msg
    assert e.value.__suppress_context__


def test_plain_torch_save_dict_is_not_a_tamnas_checkpoint(tmp_path):
    path = tmp_path / "foreign.pt"
    torch.save({"state_dict": {"w": torch.ones(2)}, "epoch": 3}, path)
    with pytest.raises(ValueError, match="not a tamnas checkpoint"):
        load_checkpoint(path)
    torch.save([1, 2, 3], path)                              # not even a dict
    with pytest.raises(ValueError, match="not a tamnas checkpoint"):
        load_checkpoint(path)


def test_random_bytes_are_not_a_checkpoint(tmp_path):
    path = tmp_path / "noise.pt"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(ValueError, match="truncated or not a tamnas checkpoint"):
        load_checkpoint(path)
    path.write_text("epoch = 3\n")
    with pytest.raises(ValueError, match="truncated or not a tamnas checkpoint"):
        load_checkpoint(path)


def test_crash_between_write_and_rename_keeps_the_old_file_and_no_temp(tmp_path, monkeypatch):
    path = tmp_path / "c.pt"
    save_checkpoint(path, _state(0), kind="supernet")
    before = path.read_bytes()

    def crash(src, dst):
        assert os.path.exists(src) and os.path.getsize(src) > 0   # the new bytes were written
        raise OSError("simulated crash before rename")

    monkeypatch.setattr(files.os, "replace", crash)
    with pytest.raises(OSError, match="simulated crash"):
        save_checkpoint(path, _state(1), kind="supernet")
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert load_checkpoint(path, kind="supernet")["epoch"] == 7
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pt"]


def test_interrupt_during_write_leaves_no_temp_file(tmp_path, monkeypatch):
    def interrupted(fd):
        raise KeyboardInterrupt

    monkeypatch.setattr(files.os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_text(tmp_path / "log.txt", "hello")
    assert list(tmp_path.iterdir()) == []


def test_atomic_json_and_text_replace_the_whole_file(tmp_path):
    path = tmp_path / "a" / "state.json"
    atomic_write_json(path, {"gen": 1, "pop": [[1, 2], [3, 4]]})
    atomic_write_json(path, {"gen": 2})
    assert json.loads(path.read_text()) == {"gen": 2}
    atomic_write_text(path, "x")
    assert path.read_text() == "x" and [p.name for p in path.parent.iterdir()] == ["state.json"]


def _flip(path, offset: int, n: int = 64) -> None:
    data = bytearray(path.read_bytes())
    for i in range(offset, min(offset + n, len(data))):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def test_flipped_bytes_inside_the_tensor_data_are_refused_as_damaged(tmp_path):
    path = tmp_path / "c.pt"
    state = {"model": {"w": torch.randn(256, 256, generator=torch.Generator().manual_seed(0))},
             "epoch": 3}
    save_checkpoint(path, state, kind="supernet")
    raw = path.read_bytes()
    # the first 64 bytes of the tensor's storage, found by its values' bytes
    offset = raw.find(state["model"]["w"].numpy().tobytes()[:32])
    assert offset > 0
    _flip(path, offset + 1024)
    with pytest.raises(ValueError) as e:
        load_checkpoint(path, kind="supernet")
    msg = str(e.value)
    assert str(path) in msg and "damaged" in msg and "\n" not in msg


@pytest.mark.parametrize("state", [{}, {"model": {}}])
def test_a_state_without_the_keys_a_reader_needs_is_one_line(tmp_path, state):
    path = tmp_path / "c.pt"
    save_checkpoint(path, state, kind="supernet")
    with pytest.raises(ValueError, match="malformed .no epoch"):
        require_keys(load_checkpoint(path, kind="supernet"), ("epoch",), path)


def test_a_list_as_state_is_one_line(tmp_path):
    path = tmp_path / "c.pt"
    save_checkpoint(path, [1, 2, 3], kind="supernet")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="holds no state"):
        load_checkpoint(path, kind="supernet")


def test_a_garbled_table_names_its_file_and_the_fix(tmp_path):
    path = tmp_path / "t.csv"
    path.write_bytes(b'a,b\n1,"2\n\xff')
    with pytest.raises(ValueError, match=f"{path} is garbled.*run it again"):
        read_table(path, ("a",), "run it again")
    path.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="no column c"):
        read_table(path, ("a", "c"), "run it again")
