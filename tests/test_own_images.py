"""Your own images, end to end: image counts fitted to a small folder when a run is created
(capped preset defaults, refused explicit settings), where each config value comes from, and
the README's own-images command run verbatim on a folder of mixed files."""

from __future__ import annotations

import importlib.util
import json
import re
import shlex
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from cli_configs import snapshot
from imagefolders import CLASSES, write_folder
from PIL import Image

import tamnas
from tamnas.cli import main
from tamnas.config import load_config, load_run_config
from tamnas.config.sources import config_sources
from tamnas.data.counts import VAL_SHARE, fit_image_counts

README = Path(__file__).resolve().parents[1] / "README.md"


def _qs(**overrides):
    return load_config("quickstart", overrides)


def test_preset_counts_that_fit_are_kept():
    cfg = _qs()
    fitted, notes = fit_image_counts(cfg, 1438, 359, config_sources("quickstart"))
    assert fitted == cfg and notes == []


def test_preset_counts_beyond_a_small_folder_are_capped_with_one_line_each():
    cfg = _qs(**{"data.dataset": "imagefolder"})
    n_train = 160
    fitted, notes = fit_image_counts(cfg, n_train, 40, config_sources("quickstart"))
    val = round(VAL_SHARE * n_train)
    assert fitted.data.val_size == val                       # 500 held out of 160: a fifth
    assert fitted.search.eval_images == val                  # 500 scored of `val`
    assert fitted.search.bn_images == n_train - val          # 256 of the 128 left to train on
    assert len(notes) == 3 and all("\n" not in n for n in notes)
    assert any(n.startswith("note: data.val_size 500 (preset quickstart)") for n in notes)


def test_a_capped_validation_split_still_leaves_a_full_training_batch():
    cfg = _qs(**{"data.batch_size": 64})
    fitted, _ = fit_image_counts(cfg, 70, 20, config_sources("quickstart"))
    assert fitted.data.val_size == 6                         # a fifth (14) would leave 56 < 64


@pytest.mark.parametrize("key, value, words", [
    ("data.val_size", 150, ("data.val_size 150 (--set) is more than the 160 training images "
                            "allow with data.batch_size 64 left to train on; choose at most 96")),
    ("search.eval_images", 100, ("search.eval_images 100 (--set) is more than the 32 "
                                 "validation images (data.val_size); choose at most 32")),
    ("search.bn_images", 200, "search.bn_images 200 (--set) is more than the 128 training images"),
])
def test_an_explicit_count_that_does_not_fit_is_refused(key, value, words):
    cfg = _qs(**{key: value})
    sources = config_sources("quickstart", {key: value})
    with pytest.raises(ValueError, match=re.escape(words)):
        fit_image_counts(cfg, 160, 40, sources)


def test_a_folder_smaller_than_a_batch_is_one_line_naming_the_batch_size():
    with pytest.raises(ValueError, match="data.batch_size 64 .preset.: the 40 training images hold "
                                         "no full batch beside a validation split; choose "
                                         "data.batch_size at most 32"):
        fit_image_counts(_qs(), 40, 10, config_sources("quickstart"))


def test_permuted_ood_images_are_capped_to_half_the_test_split():
    cfg = _qs(**{"data.ood": "permuted"})
    fitted, notes = fit_image_counts(cfg, 1438, 100, config_sources("quickstart"))
    assert fitted.data.ood_size == 50 and len(notes) == 1


def test_sources_name_default_preset_config_file_and_set(tmp_path):
    extra = tmp_path / "extra.toml"
    extra.write_text("[train]\nlr = 0.2\n")
    src = config_sources("quickstart", {"search.pop_size": 8, "data.root": "x"}, [extra],
                         labels={"data.root": "--data"})
    assert src["retrain.momentum"] == "default"              # quickstart does not set it
    assert src["search.generations"] == "preset"
    assert src["train.lr"] == "--config"
    assert src["search.pop_size"] == "--set" and src["data.root"] == "--data"


def test_the_cli_refuses_an_explicit_count_before_any_file(tmp_path, capsys):
    imgs = write_folder(tmp_path / "imgs", train=30, test=3)
    out = tmp_path / "run"
    rc = main(["run", "quickstart", "--out", str(out), "--set", "data.dataset=imagefolder",
               "--data", str(imgs), "--set", "search.eval_images=100", "--device", "cpu"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and not out.exists()
    assert len(err) == 1 and "search.eval_images 100 (--set) is more than the 24 validation" in err[0]


def readme_own_images_command() -> list[str]:
    """The `tamnas run` line of the README's "Your own images" section, as argv."""
    section = README.read_text().split("## Your own images", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.DOTALL).group(1)
    return shlex.split(block.replace("\\\n", " "))


@pytest.fixture(scope="module")
def own_run(tmp_path_factory):
    """The README's own-images command, with only its --data and --out substituted, run once
    on a small folder of mixed files: (folder, run, captured stderr)."""
    argv = readme_own_images_command()
    assert argv[:3] == ["tamnas", "run", "quickstart"]
    tmp = tmp_path_factory.mktemp("own")
    imgs, out = write_folder(tmp / "imgs"), tmp / "mine"
    argv = [str(imgs) if a.startswith("~/") else str(out) if a == "runs/mine" else a
            for a in argv[1:]]
    assert str(imgs) in argv and str(out) in argv
    with pytest.MonkeyPatch.context() as mp:
        import io
        import sys

        err = io.StringIO()
        mp.setattr(sys, "stderr", err)
        rc = main(argv)
    assert rc == 0, err.getvalue()[-2000:]
    return imgs, out, err.getvalue()


def test_the_readme_command_on_a_small_folder_of_mixed_files(own_run):
    """Several classes, a few dozen images each, RGB and grey, PNG and JPEG, mixed sizes: the
    README's command runs to the end, the preset's counts capped and recorded."""
    _, out, err = own_run
    assert "note: data.val_size 500 (preset quickstart)" in err
    cfg = tamnas.load_config(out / "config.toml")
    assert (cfg.data.val_size, cfg.search.eval_images, cfg.search.bn_images) == (32, 32, 128)
    assert tamnas.data.dataset_info(cfg.data).classes == CLASSES
    assert (out / "exports" / "lego.json").is_file() and (out / "report.md").is_file()


def test_the_run_records_its_data(own_run):
    imgs, out, _ = own_run
    rec = json.loads((out / "data.json").read_text())
    assert rec["dataset"] == "imagefolder" and rec["classes"] == list(CLASSES)
    assert (rec["channels"], rec["color"], rec["resolution"]) == (3, "RGB", 16)
    assert rec["images"] == {"train": 128, "val": 32, "test": 40}
    assert sum(rec["images_per_class"]["train"].values()) == 128
    assert rec["images_per_class"]["test"] == {c: 10 for c in CLASSES}
    on_disk = sorted(p.relative_to(imgs).as_posix() for p in (imgs / "test").rglob("*.*"))
    assert sorted(rec["test_files"]) == on_disk
    assert rec["files"] == 200 and len(rec["files_digest"]) == 64
    assert load_run_config(out) == load_run_config(out / "config.toml")


def test_a_changed_folder_is_one_line_for_every_later_command(own_run, tmp_path, capsys):
    imgs, out, _ = own_run
    moved = tmp_path / "moved"
    shutil.copytree(imgs, moved)
    assert main(["lego", str(out), "--data", str(moved), "--device", "cpu", "--quiet"]) == 0
    shutil.copy(moved / "train" / "disc" / "disc_000.png", moved / "train" / "disc" / "new.png")
    capsys.readouterr()
    before = snapshot(out)
    for argv in (["lego", str(out)], ["export", str(out), "--arch", "front:0"]):
        assert main([*argv, "--data", str(moved), "--device", "cpu", "--quiet"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "is not the folder this run was made from (200 image files " \
                                 "then, 201 now)" in err[0]
    assert snapshot(out) == before


def _raw_test_images(imgs: Path, rec: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """The run's test files read with PIL and resized as data.json says the run did, written
    out here rather than taken from tamnas: 8-bit RGB (grey files replicated, the set being
    RGB), antialiased bilinear to the resolution, rounded to uint8, then / 255."""
    res, xs, ys = rec["resolution"], [], []
    for rel in rec["test_files"]:
        with Image.open(imgs / rel) as im:
            a = np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
        x = torch.from_numpy(a).permute(2, 0, 1)[None]
        x = F.interpolate(x, size=(res, res), mode="bilinear", align_corners=False,
                          antialias=True).clamp(0, 1)
        xs.append((x * 255).round() / 255)
        ys.append(rec["classes"].index(Path(rel).parts[1]))
    return torch.cat(xs), torch.tensor(ys)


def test_an_export_states_its_scores_and_input_and_gives_the_evaluated_accuracy(own_run):
    """Raw test images through the exported module and its ONNX file: exactly the accuracy
    `tamnas evaluate` recorded for the retrained net, to the image."""
    imgs, out, _ = own_run
    run = ["--data", str(imgs), "--device", "cpu", "--quiet"]
    assert main(["retrain", str(out), "--arch", "front:0", "--set", "retrain.epochs=2", *run]) == 0
    assert main(["evaluate", str(out), "--arch", "front:0", "--no-grid", *run]) == 0
    # the test extra installs onnx; without it, the PyTorch half still runs
    fmt = "onnx" if importlib.util.find_spec("onnx") else "torch"
    assert main(["export", str(out), "--arch", "front:0", "--format", fmt, *run]) == 0
    [path] = [p for p in (out / "exports").glob("*.json") if p.stem != "lego"]
    blob = json.loads(path.read_text())
    assert blob["weights_source"] == "retrained"
    scores = blob["scores"]
    assert set(scores) >= {"inherited", "retrained", "evaluated"}
    assert (scores["inherited"]["split"], scores["retrained"]["split"],
            scores["evaluated"]["split"]) == ("validation", "test", "test")
    for entry in (scores[k] for k in ("inherited", "retrained", "evaluated")):
        assert entry["source"] in ("inherited", "retrained", "evaluated")
        p, n = entry["clean_err"], entry["images"]
        assert entry["clean_err_se"] == pytest.approx(np.sqrt(p * (1 - p) / n), rel=1e-12)
    conv = blob["input"]
    assert (conv["color"], conv["channels"], conv["height"], conv["range"]) == ("RGB", 3, 16,
                                                                                 [0.0, 1.0])
    assert "do NOT normalise" in conv["normalisation"]

    rec = json.loads((out / "data.json").read_text())
    x, y = _raw_test_images(imgs, rec)
    right = round((1 - scores["evaluated"]["clean_err"]) * scores["evaluated"]["images"])
    assert len(y) == scores["evaluated"]["images"] == 40
    net = tamnas.load_arch(path)
    assert "in [0, 1]" in net.__doc__ and "do NOT normalise" in net.__doc__
    with torch.no_grad():
        assert int((net(x).argmax(1) == y).sum()) == right
    ort = pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    model = onnx.load(str(out / "exports" / blob["onnx"]["file"]))
    props = {p.key: p.value for p in model.metadata_props}
    assert props["input_color"] == "RGB" and "do NOT normalise" in model.doc_string
    sess = ort.InferenceSession(str(out / "exports" / blob["onnx"]["file"]),
                                providers=["CPUExecutionProvider"])
    logits = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    assert int((logits.argmax(1) == y.numpy()).sum()) == right


def test_per_class_errors_match_a_direct_count():
    from tamnas.analysis.per_class import per_class_table

    rng = np.random.default_rng(3)
    y = rng.integers(0, 3, 200)
    clean, adv = rng.random(200) < 0.2, rng.random(200) < 0.5
    df = per_class_table(y, clean, adv, ["a", "b", "c"])
    for c, row in df.iterrows():
        n = int((y == c).sum())
        assert row["images"] == n
        assert row["clean_err"] == sum(clean[i] for i in range(200) if y[i] == c) / n
        assert row["adv_err_se"] == pytest.approx(np.sqrt(row["adv_err"] * (1 - row["adv_err"])
                                                          / n), rel=1e-12)


def test_the_report_opens_with_the_data_and_gives_errors_per_class(own_run):
    imgs, out, _ = own_run
    run = ["--data", str(imgs), "--device", "cpu", "--quiet"]
    assert main(["evaluate", str(out), "--arch", "lego", "--no-grid", *run]) == 0
    lego_key = "-".join(map(str, json.loads((out / "exports" / "lego.json").read_text())["genes"]))
    per_class = pd.read_csv(out / "retrain" / lego_key / "per_class.csv")
    grid = pd.read_csv(out / "retrain" / lego_key / "robustness.csv")
    assert list(per_class["class"]) == list(CLASSES) and per_class["images"].sum() == 40
    wrong = (per_class["clean_err"] * per_class["images"]).sum()
    assert wrong == pytest.approx(grid["clean_err"].iloc[0] * 40, abs=1e-6)
    assert main(["report", str(out), "--quiet"]) == 0
    text = (out / "report.md").read_text()
    sections = [line for line in text.splitlines() if line.startswith("## ")]
    assert sections[0] == "## Data" and "## Errors per class" in sections
    data = text.split("## Data", 1)[1].split("\n## ", 1)[0]
    assert "4 classes, RGB (3 channels) at 16 x 16 pixels; 128 training, 32 validation" in data
    assert all(f"| {c} " in data for c in CLASSES)
    per = text.split("## Errors per class", 1)[1].split("\n## ", 1)[0]
    assert "LEGO net, inherited weights:" in per and f"`{lego_key}` (standalone weights):" in per
