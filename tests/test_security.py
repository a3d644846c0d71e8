"""Safe to open: no file a run reads runs code, no name or path writes outside the run, and a
refused command changes no file's bytes."""

from __future__ import annotations

import ast
import hashlib
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_configs import on_cpu, set_args, snapshot

import tamnas
from tamnas.cli import main
from tamnas.files import FORMAT, load_checkpoint, save_checkpoint, sha256_bytes
from tamnas.rundir import RunDir, path_part, stamp, supernet_fingerprint

TINY = set_args(data__train_limit="192", data__val_size="64", search__pop_size="4",
                search__n_offsprings="4", search__generations="1", search__bn_images="32",
                search__eval_images="40", output__top_k="2", output__formats='["png"]')
PACKAGE = Path(tamnas.__file__).parent


def cli(*argv: str) -> int:
    return main(on_cpu(*argv))


def one_line_error(capsys, *fragments: str) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    for f in fragments:
        assert f in err, err
    return err


# --- crafted pickles: a callable that would create a marker file when unpickled ---------------
class Payload:
    """Unpickled, it calls exec on a line that creates `marker`: the attack the tests refuse."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').close()",)


def crafted_bytes(marker: Path, wrap=lambda p: p) -> bytes:
    buf = io.BytesIO()
    torch.save(wrap(Payload(marker)), buf)
    return buf.getvalue()


def crafted_checkpoint(path: Path, marker: Path, kind: str) -> None:
    """A tagged checkpoint whose payload holds the callable, with its own matching sha256:
    the checksum travels in the file, so it proves nothing about who wrote it."""
    data = crafted_bytes(marker, lambda p: {"model": p, "epoch": 1, "settings": p})
    raw = torch.frombuffer(bytearray(data), dtype=torch.uint8)
    buf = io.BytesIO()
    torch.save({"format": FORMAT, "kind": kind, "sha256": sha256_bytes(data), "payload": raw}, buf)
    path.write_bytes(buf.getvalue())


@pytest.fixture
def marker(tmp_path) -> Path:
    path = tmp_path / "MARKER"
    live = io.BytesIO(crafted_bytes(path))
    torch.load(live, weights_only=False)   # the crafted bytes really run code when unpickled
    assert path.exists()
    path.unlink()
    return path


def test_every_torch_load_in_the_package_is_weights_only():
    bad = []
    for source in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                    and node.func.attr == "load" and getattr(node.func.value, "id", "") == "torch":
                flags = {k.arg: k.value for k in node.keywords}
                value = flags.get("weights_only")
                if not (isinstance(value, ast.Constant) and value.value is True):
                    bad.append(f"{source.relative_to(PACKAGE)}:{node.lineno}")
    assert not bad, bad
    assert "pickle.load" not in "".join(p.read_text() for p in PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("command, state", [
    (["search"], "supernet/checkpoint.pt"),
    (["search", "--resume"], "search/nsga2_state.pt"),
    (["search", "--strategy", "random"], "search/random_state.pt"),
    (["search", "--strategy", "mgda"], "search/mgda_state.pt"),
    (["lego"], "supernet/checkpoint.pt"),
    (["export", "--arch", "front:0"], "supernet/checkpoint.pt"),
    (["evaluate", "--arch", "lego", "--no-grid"], "retrain/{lego}/model.pt"),
    (["export", "--arch", "lego", "--weights", "retrained"], "retrain/{lego}/model.pt"),
])
def test_a_crafted_file_of_every_kind_is_refused_without_running_it(run_copy, capsys, marker,
                                                                     command, state):
    kind = {"checkpoint.pt": "supernet", "model.pt": "standalone_weights"}.get(
        Path(state).name, Path(state).name.removesuffix("_state.pt"))
    lego = json.loads((run_copy / "exports" / "lego.json").read_text())["genes"]
    path = run_copy / state.format(lego="-".join(map(str, lego)))   # retrain/ is named by key
    if state.startswith("retrain/"):   # a retrained net handed over with the run
        path.parent.mkdir(parents=True)
        stamp(path.parent, supernet_fingerprint(run_copy))
    crafted_checkpoint(path, marker, kind)
    before = snapshot(run_copy)
    assert cli(command[0], str(run_copy), *command[1:]) == 2
    one_line_error(capsys, str(path), "pickled Python objects", "never opens")
    assert not marker.exists()
    assert snapshot(run_copy) == before


def test_a_whole_file_pickle_and_an_old_pickled_search_state_are_refused(run_copy, capsys,
                                                                        marker):
    path = run_copy / "supernet" / "checkpoint.pt"
    good = path.read_bytes()
    path.write_bytes(crafted_bytes(marker))            # no tag at all: the outer load refuses
    with pytest.raises(ValueError, match="pickled Python objects"):
        load_checkpoint(path)
    path.write_bytes(good)
    state = run_copy / "search" / "nsga2_state.pt"      # the layout of earlier versions
    crafted_checkpoint(state, marker, "nsga2")
    before = snapshot(run_copy)
    assert cli("search", str(run_copy)) == 2
    err = one_line_error(capsys, "earlier tamnas version", "--no-resume")
    assert "nsga2_state.pt" in err and not marker.exists() and snapshot(run_copy) == before


def test_the_search_states_hold_only_tensors_numbers_and_strings(run_copy):
    state = load_checkpoint(run_copy / "search" / "nsga2_state.pt", kind="nsga2")
    population = state["algorithm"]["population"]
    assert population["fields"]["_X"].dtype == torch.int64
    assert population["fields"]["_F"].shape == (4, 3)
    assert json.loads(state["algorithm"]["rng"])["bit_generator"] == "PCG64"
    with pytest.raises(TypeError, match="checkpoints hold tensors"):
        save_checkpoint(run_copy / "x.pt", {"rng": np.random.default_rng(0)}, kind="nsga2")
    assert not (run_copy / "x.pt").exists()


# --- exports and load_arch --------------------------------------------------------------------
def _export(run_copy) -> tuple[Path, Path]:
    js = run_copy / "exports" / "lego.json"
    return js, js.with_suffix(".pt")


@pytest.mark.parametrize("digest", ["matching", "absent"])
def test_crafted_export_weights_are_refused_with_or_without_their_digest(run_copy, marker,
                                                                         digest):
    js, pt = _export(run_copy)
    pt.write_bytes(crafted_bytes(marker, lambda p: {"w": p}))
    blob = json.loads(js.read_text())
    if digest == "matching":
        blob["weights_sha256"] = hashlib.sha256(pt.read_bytes()).hexdigest()
    else:
        blob.pop("weights_sha256")
    js.write_text(json.dumps(blob))
    with pytest.raises(ValueError, match="pickled Python objects"):
        tamnas.load_arch(js)
    crafted_checkpoint(pt, marker, "standalone_weights")   # the tagged form load_arch accepts
    blob.pop("weights_sha256", None)
    js.write_text(json.dumps(blob))
    with pytest.raises(ValueError, match="pickled Python objects"):
        tamnas.load_arch(js)
    assert not marker.exists()


def test_an_export_in_the_old_tagged_format_says_export_again(run_copy):
    js, pt = _export(run_copy)
    state = torch.load(pt, weights_only=True)
    save_checkpoint(pt, state, kind="standalone")
    blob = json.loads(js.read_text())
    blob.pop("weights_sha256")
    js.write_text(json.dumps(blob))
    with pytest.raises(ValueError, match="earlier tamnas version.*export it again"):
        tamnas.load_arch(js)
    save_checkpoint(pt, state, kind="standalone_weights")   # a retrained net's file loads
    assert isinstance(tamnas.load_arch(js), torch.nn.Module)


@pytest.mark.parametrize("weights", ["../x.pt", "/etc/hostname", "sub/lego.pt", "..", "",
                                     "a\0b", 5])
def test_the_weights_field_must_name_a_file_beside_the_json(run_copy, weights):
    js, _ = _export(run_copy)
    blob = json.loads(js.read_text())
    blob["weights"] = weights
    js.write_text(json.dumps(blob))
    with pytest.raises(ValueError, match="must name a file beside the JSON"):
        tamnas.load_arch(js)


def test_a_weights_link_out_of_the_json_folder_is_refused(run_copy, tmp_path):
    js, pt = _export(run_copy)
    elsewhere = tmp_path / "elsewhere.pt"
    shutil.copy(pt, elsewhere)
    pt.unlink()
    pt.symlink_to(elsewhere)
    with pytest.raises(ValueError, match="link out of the JSON's folder"):
        tamnas.load_arch(js)


def test_sizes_in_files_are_checked_before_allocation(run_copy, monkeypatch):
    js, _ = _export(run_copy)
    blob = json.loads(js.read_text())
    blob["space_config"]["stage_layers"] = [10**9]
    (run_copy / "big.json").write_text(json.dumps(blob))
    with pytest.raises(ValueError, match="stage_layers.*larger than any space"):
        tamnas.load_arch(run_copy / "big.json")
    monkeypatch.setattr("tamnas.files.machine_memory", lambda: 1000)
    with pytest.raises(ValueError, match=r"would need about 0\.0 GiB of memory.*this machine's"):
        load_checkpoint(run_copy / "supernet" / "checkpoint.pt")
    monkeypatch.setattr("tamnas.analysis.arch_files.machine_memory", lambda: 1000)
    with pytest.raises(ValueError, match="the network it describes needs about"):
        tamnas.load_arch(js)


# --- names and paths: nothing outside the run -------------------------------------------------
@pytest.mark.parametrize("name", ["", ".", "..", "../../x", "/tmp/x", "a/b", "a\\b", "a\0b",
                                  "x\ny", None])
def test_a_name_that_could_leave_its_folder_never_becomes_a_path_part(tmp_path, name):
    with pytest.raises(ValueError, match="cannot name a folder or file in the run"):
        RunDir(tmp_path).retrain_dir(name)
    with pytest.raises(ValueError, match="cannot name a folder or file in the run"):
        RunDir(tmp_path).export_json(name)
    assert path_part("front-3") == "front-3" and path_part("3-1-0-2") == "3-1-0-2"


@pytest.mark.parametrize("command", [["retrain", "--set", "retrain.epochs=1"],
                                     ["evaluate", "--no-grid"], ["export"]])
def test_an_arch_json_named_to_escape_the_run_writes_only_inside_it(run_copy, tmp_path, capsys,
                                                                   command):
    js, _ = _export(run_copy)
    blob = json.loads(js.read_text())
    blob["name"] = "../../escaped"
    crafted = tmp_path / "crafted.json"
    crafted.write_text(json.dumps(blob))
    outside = {p for p in tmp_path.rglob("*") if run_copy not in p.parents and p != run_copy}
    assert cli(command[0], str(run_copy), "--arch", str(crafted), *command[1:]) == 0
    now = {p for p in tmp_path.rglob("*") if run_copy not in p.parents and p != run_copy}
    assert now == outside and not list(tmp_path.rglob("*escaped*"))
    key = "-".join(map(str, blob["genes"]))              # outputs are named by the arch's key
    made = run_copy / ("exports" / Path(f"{key}.json") if command[0] == "export"
                       else Path("retrain") / key)
    assert made.exists()


def test_outputs_are_never_written_through_a_link_in_the_run(run_copy, tmp_path, capsys):
    elsewhere = tmp_path / "elsewhere"
    shutil.move(run_copy / "exports", elsewhere)
    (run_copy / "exports").symlink_to(elsewhere, target_is_directory=True)
    outside, before = snapshot(elsewhere), snapshot(run_copy)
    assert cli("export", str(run_copy), "--arch", "front:0") == 2
    one_line_error(capsys, "exports is a symbolic link inside the run")
    assert snapshot(elsewhere) == outside and snapshot(run_copy) == before


def test_out_must_be_new_empty_or_a_tamnas_run(tmp_path, capsys):
    user = tmp_path / "mine"
    user.mkdir()
    (user / "config.toml").write_text("[project]\nname = 'my own'\n")
    (user / "notes.txt").write_text("keep me")
    before = snapshot(user)
    assert cli("run", "quickstart", "--out", str(user), *TINY) == 2
    one_line_error(capsys, "holds files and is not a tamnas run")
    assert snapshot(user) == before
    link = tmp_path / "link"
    link.symlink_to(user, target_is_directory=True)
    assert cli("train-supernet", "quickstart", "--out", str(link), *TINY) == 2
    one_line_error(capsys, "is a symbolic link")
    assert snapshot(user) == before and sorted(p.name for p in user.iterdir()) == \
        ["config.toml", "notes.txt"]


def test_out_at_an_existing_run_is_accepted(finished):
    from tamnas.rundir import check_out, is_run

    assert is_run(finished)
    check_out(finished)   # resuming or extending a run stays possible


# --- a refused command changes nothing ---------------------------------------------------------
def test_a_refused_search_rewrites_no_file_not_even_its_config(run_copy, capsys):
    before = snapshot(run_copy)
    assert cli("search", str(run_copy), "--set", "search.pop_size=6") == 2
    one_line_error(capsys, "pop_size", "--no-resume")
    assert snapshot(run_copy) == before


def test_a_search_state_turned_into_a_folder_is_refused_before_any_write(run_copy, capsys):
    state = run_copy / "search" / "nsga2_state.pt"
    state.unlink()
    state.mkdir()
    before = snapshot(run_copy)
    assert cli("search", str(run_copy)) == 2
    one_line_error(capsys, "nsga2_state.pt is not a regular file")
    assert snapshot(run_copy) == before


def test_a_failed_onnx_export_leaves_no_weights_behind(run_copy, capsys, monkeypatch):
    pytest.importorskip("onnx")

    def fail(*args, **kwargs):
        raise ValueError("ONNX model differs from the PyTorch module (simulated)")

    monkeypatch.setattr("tamnas.analysis.export._torch_onnx_export", fail)
    before = snapshot(run_copy)
    assert cli("export", str(run_copy), "--arch", "front:0", "--format", "onnx") == 2
    one_line_error(capsys, "simulated")
    assert snapshot(run_copy) == before


# --- silent cases that now stop in one line ------------------------------------------------------
def _edit_archive(run_copy, **scores):
    path = run_copy / "search" / "archive.json"
    blob = json.loads(path.read_text())
    blob["entries"][0]["scores"].update(scores)
    path.write_text(json.dumps(blob))


def _cut_last_row(path: Path) -> None:
    """Cut the file inside its last row, before that row's middle field: a killed copy."""
    text = path.read_text()
    last = text.rstrip("\n").rsplit("\n", 1)[1]
    path.write_text(text[: len(text) - len(last) // 2 - 1])


@pytest.mark.parametrize("setup, argv, fragments", [
    (None, ["search", "--set", 'search.objectives=["adv_err","adv_err"]'], ["given twice"]),
    (None, ["search", "--resume", "--no-resume"], ["contradict"]),
    (None, ["retrain", "--all-front", "--arch", "front:0"], ["--all-front", "ignored"]),
    (lambda r: _edit_archive(r, adv_err=float("nan")), ["lego"], ["adv_err = nan"]),
    (lambda r: _edit_archive(r, clean_err=-0.5), ["lego"], ["clean_err = -0.5"]),
    (lambda r: _edit_archive(r, adv_err=1.5), ["lego"], ["an error rate in [0, 1]"]),
    (lambda r: (r / "supernet" / "settings.json").write_text("[1, 2]"), ["lego"],
     ["settings.json is corrupt"]),
    (lambda r: (r / "config.toml").write_text((r / "config.toml").read_text().replace(
        "seed = 0", "seed = 3")), ["lego"], ["edited after the supernet was trained", "seed"]),
    (lambda r: (r / "config.toml").write_text((r / "config.toml").read_text().replace(
        "val_size = 64", "val_size = 50")), ["lego"], ["data.val_size: 64 -> 50"]),
    (lambda r: (r / "search" / "archive.csv").write_text(
        (r / "search" / "archive.csv").read_text().splitlines()[0] + "\n1,2\n"), ["report"],
     ["archive.csv is garbled"]),
    (lambda r: _cut_last_row(r / "search" / "generations.csv"), ["plot"],
     ["generations.csv is garbled"]),
    (lambda r: (r / "search" / "reference_point.json").write_text("{\"low\": [0,"), ["plot"],
     ["reference_point.json is garbled"]),
])
def test_silent_cases_are_one_line_and_change_nothing(run_copy, capsys, setup, argv, fragments):
    if setup is not None:
        setup(run_copy)
    before = snapshot(run_copy)
    assert cli(argv[0], str(run_copy), *argv[1:]) == 2
    one_line_error(capsys, *fragments)
    assert snapshot(run_copy) == before


def test_a_config_file_setting_a_section_to_a_number_is_refused(tmp_path):
    extra = tmp_path / "extra.toml"
    extra.write_text("search = 5\n")
    with pytest.raises(ValueError, match="search: expected a table of keys"):
        tamnas.load_config("quickstart", extra_files=[extra])


# --- data files: headers and sizes checked before anything is read ---------------------------
def _idx(code: int, dims: tuple[int, ...], payload: bytes) -> bytes:
    import struct

    return struct.pack(">BBBB", 0, 0, code, len(dims)) + struct.pack(f">{len(dims)}I", *dims) \
        + payload


@pytest.mark.parametrize("images, fragment", [
    (_idx(0x08, (40, 14, 56), bytes(40 * 784)), "40 x 14 x 56"),   # 28 x 28's byte count
    (_idx(0x09, (40, 28, 28), bytes(40 * 784)), "type 0x09"),       # int8
    (_idx(0x08, (40, 28, 28), bytes(40 * 784 - 5)), "the file holds"),
])
def test_idx_headers_are_checked_against_the_known_shapes(tmp_path, monkeypatch, images,
                                                          fragment):
    from tamnas.config.schema import DataConfig
    from tamnas.data import load_data

    monkeypatch.setattr("tamnas.data.sources.SYSTEM_FOLDERS", {})
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    good = _idx(0x08, (40, 28, 28), bytes(40 * 784))
    for split, n in (("train", 40), ("t10k", 40)):
        (raw / f"{split}-images-idx3-ubyte").write_bytes(images if split == "train" else good)
        (raw / f"{split}-labels-idx1-ubyte").write_bytes(_idx(0x08, (n,), bytes(n)))
    cfg = DataConfig(dataset="fashion-mnist", root=str(tmp_path), resolution=28, val_size=8,
                     augment=False, ood="none")
    with pytest.raises(ValueError, match=fragment) as e:
        load_data(cfg, seed=0)
    assert "\n" not in str(e.value) and "train-images-idx3-ubyte" in str(e.value)


def _folder(root: Path, classes=("a", "b")) -> None:
    from PIL import Image

    for c in classes:
        for i in range(3):
            (root / "train" / c).mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.full((8, 8), 40 * i, np.uint8)).save(root / "train" / c / f"{i}.png")


@pytest.mark.parametrize("make, fragment", [
    (lambda r: _folder(r, ("a",)), "one class folder (a)"),
    (lambda r: (_folder(r), (r / "train" / "a" / ".DS_Store").write_bytes(b"\0")),
     "not images (a/.DS_Store)"),
    (lambda r: (_folder(r), (r / "train" / "README.txt").write_text("x")),
     "not images (README.txt)"),
])
def test_image_folders_that_would_train_on_nonsense_are_refused(tmp_path, make, fragment):
    from tamnas.config.schema import DataConfig
    from tamnas.data import load_data

    make(tmp_path)
    with pytest.raises(ValueError) as e:
        load_data(DataConfig(dataset="imagefolder", root=str(tmp_path), resolution=8,
                             val_size=2, augment=False, ood="none"), seed=0)
    assert fragment in str(e.value) and "\n" not in str(e.value)


def test_a_decompression_bomb_is_one_line(tmp_path, monkeypatch):
    from PIL import Image

    from tamnas.config.schema import DataConfig
    from tamnas.data import load_data

    _folder(tmp_path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 20)   # 8 x 8 = 64 pixels: over twice it
    with pytest.raises(ValueError, match="decompression bomb") as e:
        load_data(DataConfig(dataset="imagefolder", root=str(tmp_path), resolution=8,
                             val_size=2, augment=False, ood="none"), seed=0)
    assert "\n" not in str(e.value)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 40)   # between the limit and twice it: a warning
    with pytest.raises(ValueError, match="decompression bomb"):
        load_data(DataConfig(dataset="imagefolder", root=str(tmp_path), resolution=8,
                             val_size=2, augment=False, ood="none"), seed=1)
