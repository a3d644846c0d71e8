"""Fashion-MNIST and MNIST: IDX files in torchvision's layout, Debian's packaged .gz copy,
one-line errors, the dataset registry, and the real Fashion-MNIST files when installed.

The tiny files are written here in the IDX format (big-endian header, then uint8 pixels)
and read by torchvision's own FashionMNIST / MNIST classes.
"""

from __future__ import annotations

import dataclasses
import gzip
import struct
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.datasets.mnist as tv_mnist

import tamnas
from tamnas import config
from tamnas.config import DataConfig
from tamnas.data import DATASET_INFO, DATASETS, dataset_info, load_data, stack

N_TRAIN, N_TEST = 40, 12
DEBIAN = Path("/usr/share/datasets/fashion-mnist")
FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
         "t10k-labels-idx1-ubyte")


def _idx(array: np.ndarray) -> bytes:
    """An IDX file: two zero bytes, type 0x08 (ubyte), the number of dims, big-endian sizes."""
    return struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + \
        struct.pack(f">{array.ndim}I", *array.shape) + array.astype(np.uint8).tobytes()


def _arrays(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"train-images-idx3-ubyte": rng.integers(0, 256, (N_TRAIN, 28, 28)),
            "train-labels-idx1-ubyte": rng.integers(0, 10, N_TRAIN),
            "t10k-images-idx3-ubyte": rng.integers(0, 256, (N_TEST, 28, 28)),
            "t10k-labels-idx1-ubyte": rng.integers(0, 10, N_TEST)}


def _write(folder: Path, arrays: dict, gz: bool) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, a in arrays.items():
        if gz:
            (folder / f"{name}.gz").write_bytes(gzip.compress(_idx(a)))
        else:
            (folder / name).write_bytes(_idx(a))


def _cfg(root, dataset="fashion-mnist", **kw) -> DataConfig:
    base = {"dataset": dataset, "root": str(root), "resolution": 28, "val_size": 8,
            "augment": False, "ood": "none"}
    base.update(kw)
    return DataConfig(**base)


def _all_pixels_and_labels(data) -> tuple[dict[bytes, int], np.ndarray]:
    rows = {}
    for ds in (data.train, data.val):
        x, y = stack(ds)
        for img, lab in zip((x[:, 0] * 255).round().to(torch.uint8).numpy(), y.tolist()):
            rows[img.tobytes()] = lab
    tx, ty = stack(data.test)
    return rows, ((tx[:, 0] * 255).round().to(torch.uint8).numpy(), ty.numpy())


@pytest.fixture
def no_system_copy(monkeypatch):
    """Hide the installed Debian copy so that a test sees only its own files."""
    monkeypatch.setattr("tamnas.data.sources.SYSTEM_FOLDERS", {})


@pytest.mark.parametrize("dataset, folder", [("fashion-mnist", "FashionMNIST"),
                                             ("mnist", "MNIST")])
def test_idx_files_in_torchvision_layout_load_with_exact_pixels_and_labels(tmp_path, dataset,
                                                                           folder, no_system_copy):
    arrays = _arrays(1)
    _write(tmp_path / folder / "raw", arrays, gz=False)
    data = load_data(_cfg(tmp_path, dataset), seed=0)
    assert (len(data.train), len(data.val), len(data.test)) == (N_TRAIN - 8, 8, N_TEST)
    assert data.info == DATASET_INFO[dataset] and data.info.in_channels == 1
    rows, (tx, ty) = _all_pixels_and_labels(data)
    src = arrays["train-images-idx3-ubyte"].astype(np.uint8)
    assert rows == {img.tobytes(): int(lab) for img, lab in
                    zip(src, arrays["train-labels-idx1-ubyte"])}
    assert np.array_equal(tx, arrays["t10k-images-idx3-ubyte"])       # test keeps file order
    assert np.array_equal(ty, arrays["t10k-labels-idx1-ubyte"])


def test_debian_gz_copy_is_unpacked_into_the_torchvision_layout_under_root(tmp_path, monkeypatch):
    arrays = _arrays(2)
    system = tmp_path / "usr-share"
    _write(system, arrays, gz=True)
    monkeypatch.setattr("tamnas.data.sources.SYSTEM_FOLDERS", {"fashion-mnist": system})
    root = tmp_path / "root"
    data = load_data(_cfg(root), seed=0)
    raw = root / "FashionMNIST" / "raw"
    for name, a in arrays.items():                     # byte for byte the IDX content
        assert (raw / name).read_bytes() == _idx(a)
    assert sorted(p.name for p in raw.iterdir()) == sorted(FILES)   # no temporary left behind
    _, (tx, _) = _all_pixels_and_labels(data)
    assert np.array_equal(tx, arrays["t10k-images-idx3-ubyte"])
    # from now on the unpacked copy is what is read; the system folder is not needed
    monkeypatch.setattr("tamnas.data.sources.SYSTEM_FOLDERS", {})
    again = load_data(_cfg(root), seed=0)
    assert torch.equal(stack(again.test)[0], stack(data.test)[0])


def test_missing_files_name_the_debian_package_and_download_in_one_line(tmp_path, no_system_copy):
    with pytest.raises(FileNotFoundError) as e:
        load_data(_cfg(tmp_path / "none"), seed=0)
    msg = str(e.value)
    assert "\n" not in msg and "apt-get install dataset-fashion-mnist" in msg
    assert "--download" in msg and str(tmp_path / "none" / "FashionMNIST" / "raw") in msg
    with pytest.raises(FileNotFoundError) as e:
        load_data(_cfg(tmp_path / "none", "mnist"), seed=0)
    assert "apt-get" not in str(e.value) and "--download" in str(e.value)


def test_files_that_are_not_idx_are_one_clear_line(tmp_path, no_system_copy):
    raw = tmp_path / "FashionMNIST" / "raw"
    _write(raw, _arrays(3), gz=False)
    (raw / "train-images-idx3-ubyte").write_bytes(b"\x01\x02\x03\x04 not an idx file at all")
    with pytest.raises(ValueError) as e:
        load_data(_cfg(tmp_path), seed=0)
    assert "\n" not in str(e.value) and str(raw) in str(e.value)
    assert "IDX" in str(e.value) and e.value.__suppress_context__


def test_labels_outside_the_classes_are_rejected(tmp_path, no_system_copy):
    arrays = _arrays(4)
    arrays["train-labels-idx1-ubyte"][3] = 10
    _write(tmp_path / "FashionMNIST" / "raw", arrays, gz=False)
    with pytest.raises(ValueError, match="labels 0..9"):
        load_data(_cfg(tmp_path), seed=0)


def test_failed_download_is_file_not_found_without_torchvision_text(tmp_path, monkeypatch,
                                                                    no_system_copy):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("Temporary failure in name resolution")

    monkeypatch.setattr(tv_mnist, "download_and_extract_archive", offline)
    with pytest.raises(FileNotFoundError) as e:
        load_data(_cfg(tmp_path, download=True), seed=0)
    msg = str(e.value)
    assert "\n" not in msg and "download" in msg and "name resolution" not in msg


def test_registry_names_are_the_config_choices_and_info_needs_the_folder_config():
    from tamnas.checks import registered_names

    field = {f.name: f for f in dataclasses.fields(DataConfig)}["dataset"]
    assert field.metadata["choices"] == config.Registered("dataset")
    assert registered_names("dataset") == list(DATASETS)
    for name in DATASETS:
        assert tamnas.load_config("quickstart", {"data.dataset": name}).data.dataset == name
    for name in DATASET_INFO:
        assert dataset_info(name) == dataset_info(DataConfig(dataset=name)) == DATASET_INFO[name]
    with pytest.raises(ValueError, match="dataset_info\\(cfg.data\\)"):
        dataset_info("imagefolder")
    with pytest.raises(ValueError, match="choose one of"):
        dataset_info("fmnist")


@pytest.mark.skipif(not (DEBIAN / "train-images-idx3-ubyte.gz").is_file(),
                    reason="Debian's dataset-fashion-mnist is not installed")
def test_real_fashion_mnist_from_the_debian_package(tmp_path):
    data = load_data(_cfg(tmp_path, val_size=5000, resolution=16), seed=0)
    assert (len(data.train), len(data.val), len(data.test)) == (55_000, 5000, 10_000)
    labels = torch.cat([data.train.labels, data.val.labels])
    assert torch.bincount(labels).tolist() == [6000] * 10               # balanced, as published
    assert torch.bincount(data.test.labels).tolist() == [1000] * 10
    # the normalisation constants are the training images' own mean and std
    pixels = torch.cat([data.train.images, data.val.images]).double() / 255
    info = data.info
    assert info.classes[0] == "T-shirt/top" and info.classes[9] == "Ankle boot"
    # constants given to 4 decimals: half a unit of the last digit, plus the float64 sum's slack
    assert abs(float(pixels.mean()) - info.mean[0]) <= 5e-5 + 1e-9
    assert abs(float(pixels.std()) - info.std[0]) <= 5e-5 + 1e-9
    x, _ = stack(data.val, 8)
    assert x.shape == (8, 1, 16, 16) and 0.0 <= float(x.min()) and float(x.max()) <= 1.0
