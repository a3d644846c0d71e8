"""Your own images: DIR/train/CLASS/*.png [DIR/test/CLASS/*.png] as written by PIL here —
pixels, channels, class names, mean/std, the fixed stratified split, one-line errors, and a
tiny `tamnas run` on a folder of two classes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_configs import set_args
from PIL import Image

import tamnas
from tamnas.cli import main
from tamnas.config import DataConfig
from tamnas.data import FOLDER_TEST_FRACTION, dataset_info, load_data, stack


def _save(path: Path, array: np.ndarray, mode: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode=mode).save(path)


def _grey_folder(root: Path, split: str, classes: dict[str, int], size: int, seed: int) -> dict:
    """`n` random greyscale PNGs per class; returns {pixels bytes: class name}."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, n in classes.items():
        for i in range(n):
            a = rng.integers(0, 256, (size, size), dtype=np.uint8)
            _save(root / split / name / f"{i:03d}.png", a)
            out[a.tobytes()] = name
    return out


def _cfg(root: Path, **kw) -> DataConfig:
    base = {"dataset": "imagefolder", "root": str(root), "resolution": 8, "val_size": 4,
            "augment": False, "ood": "none"}
    base.update(kw)
    return DataConfig(**base)


def _u8(x: torch.Tensor) -> np.ndarray:
    return (x * 255).round().to(torch.uint8).numpy()


def test_grey_train_and_test_folders_keep_pixels_labels_and_class_names(tmp_path):
    classes = {"cat": 7, "ant": 5, "bee": 6}                  # labels follow sorted names
    train = _grey_folder(tmp_path, "train", classes, 8, 0)
    test = _grey_folder(tmp_path, "test", {"cat": 2, "ant": 3, "bee": 1}, 8, 1)
    data = load_data(_cfg(tmp_path), seed=0)
    info = data.info
    assert info.classes == ("ant", "bee", "cat") and info.num_classes == 3
    assert info.in_channels == 1 and data.resolution == 8
    assert (len(data.train) + len(data.val), len(data.val), len(data.test)) == (18, 4, 6)
    for ds, truth in ((data.train, train), (data.val, train), (data.test, test)):
        x, y = stack(ds)
        for img, lab in zip(_u8(x[:, 0]), y.tolist()):
            assert info.classes[lab] == truth[img.tobytes()]
    # mean and std come from the training images, computed here with numpy
    pixels = np.stack([np.frombuffer(k, np.uint8) for k in train]).astype(np.float64) / 255
    assert info.mean[0] == pytest.approx(pixels.mean(), abs=1e-12)
    assert info.std[0] == pytest.approx(pixels.std(ddof=1), abs=1e-12)
    assert dataset_info(_cfg(tmp_path)) == info


def test_without_test_folder_a_fixed_stratified_fifth_is_held_out(tmp_path):
    classes = {"a": 10, "b": 15, "c": 5}
    train = _grey_folder(tmp_path, "train", classes, 8, 2)
    a = load_data(_cfg(tmp_path), seed=0)
    b = load_data(_cfg(tmp_path), seed=7)
    test_y = stack(a.test)[1]
    counts = torch.bincount(test_y, minlength=3).tolist()
    assert counts == [round(FOLDER_TEST_FRACTION * n) for n in classes.values()]
    assert torch.equal(stack(a.test)[0], stack(b.test)[0])      # the run seed does not move it
    seen = [img.tobytes() for ds in (a.train, a.val, a.test) for img in _u8(stack(ds)[0][:, 0])]
    assert sorted(seen) == sorted(train) and len(set(seen)) == len(train)
    assert not {i.tobytes() for i in _u8(stack(a.test)[0][:, 0])} & \
        {i.tobytes() for i in _u8(stack(a.train)[0][:, 0])}


def test_rgb_files_make_an_rgb_set_and_sizes_are_resized_to_the_resolution(tmp_path):
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 256, (20, 12, 3), dtype=np.uint8)            # not square, not 8x8
    rgba = rng.integers(0, 256, (8, 8, 4), dtype=np.uint8)
    grey = rng.integers(0, 256, (8, 8), dtype=np.uint8)
    _save(tmp_path / "train" / "x" / "rgb.png", rgb)
    _save(tmp_path / "train" / "x" / "rgba.png", rgba)
    _save(tmp_path / "train" / "y" / "grey.png", grey)
    _save(tmp_path / "test" / "x" / "g.png", grey)
    _save(tmp_path / "test" / "y" / "g.png", grey)
    data = load_data(_cfg(tmp_path, val_size=1), seed=0)
    assert data.info.in_channels == 3 and len(data.info.mean) == 3
    images = torch.cat([data.train.images, data.val.images])
    by_label = {int(y): x for x, y in zip(images, torch.cat([data.train.labels, data.val.labels]))}
    assert images.shape[1:] == (3, 8, 8)
    # grey is copied to the three channels; RGBA loses its alpha, pixel for pixel at 8x8
    grey_img = by_label[1].numpy()
    assert all(np.array_equal(grey_img[c], grey) for c in range(3))
    kept = [x.numpy() for x, y in zip(images, torch.cat([data.train.labels, data.val.labels]))
            if int(y) == 0]
    assert any(np.array_equal(k, rgba[..., :3].transpose(2, 0, 1)) for k in kept)
    # the 20x12 image is stretched to 8x8 by antialiased bilinear: compare with PIL's
    ref = np.asarray(Image.fromarray(rgb).resize((8, 8), Image.BILINEAR),
                     dtype=np.float64).transpose(2, 0, 1)
    shrunk = next(k for k in kept if not np.array_equal(k, rgba[..., :3].transpose(2, 0, 1)))
    assert np.abs(shrunk.astype(np.float64) - ref).max() <= 3.0   # two bilinear kernels' rounding


def test_sixteen_bit_grey_is_scaled_not_clipped(tmp_path):
    a16 = np.array([[0, 65535], [32768, 257]], dtype=np.uint16).repeat(4, 0).repeat(4, 1)
    for split in ("train", "test"):
        for name in ("p", "q"):
            _save(tmp_path / split / name / "img.png", a16)
    data = load_data(_cfg(tmp_path, val_size=1), seed=0)
    x = _u8(stack(data.test)[0][:, 0])[0]
    assert data.info.in_channels == 1
    assert np.array_equal(x, np.rint(a16 / 65535 * 255).astype(np.uint8))


@pytest.mark.parametrize("make, error, words", [
    (lambda r: None, FileNotFoundError, ["train", "does not exist"]),
    (lambda r: (r / "train").mkdir(parents=True), FileNotFoundError, ["no class folders"]),
    (lambda r: (r / "train" / "empty").mkdir(parents=True), FileNotFoundError,
     ["no images", "empty"]),
    (lambda r: (r / "train" / "a" / "x.png").write_bytes(b"not a png"), ValueError,
     ["x.png", "cannot read"]),
    (lambda r: _save(r / "test" / "b" / "0.png", np.zeros((8, 8), np.uint8)), ValueError,
     ["differ", "only in train: a", "only in test: b"]),
])
def test_broken_folders_are_one_clear_line(tmp_path, make, error, words):
    root = tmp_path / "imgs"
    if "does not exist" not in words and "no class folders" not in words:
        _grey_folder(root, "train", {"a": 3}, 8, 4)
    make(root)
    with pytest.raises(error) as e:
        load_data(_cfg(root, val_size=1), seed=0)
    msg = str(e.value)
    assert "\n" not in msg and all(w in msg for w in words), msg


def test_a_class_of_one_image_cannot_be_split_without_a_test_folder(tmp_path):
    _grey_folder(tmp_path, "train", {"a": 4, "b": 1}, 8, 5)
    with pytest.raises(ValueError, match="two or more images"):
        load_data(_cfg(tmp_path, val_size=1), seed=0)


def test_the_space_is_built_for_the_folder_classes_and_channels(tmp_path):
    _grey_folder(tmp_path, "train", {"a": 3, "b": 3, "c": 3, "d": 3}, 8, 6)
    cfg = tamnas.load_config("quickstart", {"data.dataset": "imagefolder",
                                            "data.root": str(tmp_path), "data.resolution": 8})
    space = tamnas.build_space(cfg)
    arch = space.sample(np.random.default_rng(0))
    net = space.build_standalone(arch).eval()
    with torch.no_grad():
        assert net(torch.rand(2, 1, 8, 8)).shape == (2, 4)


def test_tamnas_run_on_a_png_folder_of_two_classes(tmp_path):
    """The plain CLI, end to end, on a user's folder: class names reach the run's outputs."""
    rng = np.random.default_rng(7)
    for split, n in (("train", 60), ("test", 12)):
        for name, base in (("dark", 40), ("light", 200)):
            for i in range(n):
                a = np.clip(base + rng.normal(0, 30, (10, 10)), 0, 255).astype(np.uint8)
                _save(tmp_path / "imgs" / split / name / f"{i}.png", a)
    out = tmp_path / "run"
    args = set_args(data__dataset="imagefolder", data__val_size="40", data__batch_size="16",
                    train__phase1_epochs="3", train__phase2_epochs="3", search__pop_size="4",
                    search__n_offsprings="4", search__generations="1", search__bn_images="32",
                    search__eval_images="40", output__top_k="2", output__eval_eps="[0.05]",
                    output__eval_steps="[2]")
    assert main(["run", "quickstart", "--out", str(out), "--data", str(tmp_path / "imgs"),
                 *args, "--quiet", "--device", "cpu"]) == 0
    front = json.loads((out / "search" / "front.json").read_text())["front"]
    assert front and all(0.0 <= r["scores"]["clean_err"] <= 1.0 for r in front)
    cfg = tamnas.load_config(out / "config.toml")
    assert cfg.data.dataset == "imagefolder" and dataset_info(cfg.data).classes == ("dark", "light")
    # two well-separated brightness classes: the supernet learned more than chance
    assert min(r["scores"]["clean_err"] for r in front) < 0.5
