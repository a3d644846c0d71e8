"""Datasets on disk, deterministic splits, augmentation, OoD sets, loaders and fixed tensors.

CIFAR-10 and SVHN are tested with tiny files in the real on-disk layout, read by the real
torchvision classes. torchvision compares every file's md5 with the official release on
each load (CIFAR10._check_integrity and _load_meta, SVHN._check_integrity call
`check_integrity(path, md5)`), which tiny files can never pass; the `skip_md5` fixture
switches off only that comparison (the file must still exist), everything else — folder
layout, pickle / .mat parsing, SVHN's 10 -> 0 label mapping — is torchvision's own code.
"""

from __future__ import annotations

import pickle
import urllib.error
from itertools import chain
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
import torchvision.datasets.cifar as tv_cifar
import torchvision.datasets.svhn as tv_svhn
from PIL import Image
from torchvision.datasets.utils import check_integrity

from tamnas.config import DataConfig
from tamnas.data import ImageTensorDataset, load_data, make_loader, stack

N_PER_BATCH, N_CIFAR_TEST, N_SVHN_TRAIN, N_SVHN_TEST = 24, 30, 60, 40


# -- tiny files in the real formats -------------------------------------------------------
def _write_cifar10(root: Path, rng: np.random.Generator) -> dict:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    train_x, train_y = [], []
    for b in range(1, 6):
        x = rng.integers(0, 256, (N_PER_BATCH, 3072), dtype=np.uint8)
        y = [int(v) for v in rng.integers(0, 10, N_PER_BATCH)]
        with open(folder / f"data_batch_{b}", "wb") as f:
            pickle.dump({"batch_label": f"training batch {b} of 5", "labels": y, "data": x,
                         "filenames": [f"img{b}_{i}.png" for i in range(N_PER_BATCH)]}, f)
        train_x.append(x)
        train_y += y
    test_x = rng.integers(0, 256, (N_CIFAR_TEST, 3072), dtype=np.uint8)
    test_y = [int(v) for v in rng.integers(0, 10, N_CIFAR_TEST)]
    with open(folder / "test_batch", "wb") as f:
        pickle.dump({"batch_label": "testing batch 1 of 1", "labels": test_y, "data": test_x}, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"class{i}" for i in range(10)], "num_cases_per_batch": 24,
                     "num_vis": 3072}, f)
    return {"train_x": np.concatenate(train_x).reshape(-1, 3, 32, 32), "train_y": np.array(train_y),
            "test_x": test_x.reshape(-1, 3, 32, 32), "test_y": np.array(test_y)}


def _write_svhn(root: Path, rng: np.random.Generator) -> dict:
    out = {}
    for split, n in (("train", N_SVHN_TRAIN), ("test", N_SVHN_TEST)):
        x = rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)
        y = rng.integers(1, 11, (n, 1)).astype(np.uint8)      # 10 is the digit 0
        scipy.io.savemat(root / f"{split}_32x32.mat", {"X": x, "y": y})
        out[f"{split}_x"] = x.transpose(3, 2, 0, 1)            # N, C, H, W
        out[f"{split}_y"] = np.where(y[:, 0] == 10, 0, y[:, 0]).astype(np.int64)
    return out


@pytest.fixture(scope="module")
def disk(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(123)
    return root, _write_cifar10(root, rng), _write_svhn(root, rng)


@pytest.fixture
def skip_md5(monkeypatch):
    for mod in (tv_cifar, tv_svhn):
        monkeypatch.setattr(mod, "check_integrity",
                            lambda fpath, md5=None: check_integrity(fpath, None))


def cfg(root, **kw) -> DataConfig:
    base = {"dataset": "cifar10", "root": str(root), "val_size": 20, "augment": False,
            "ood": "none", "ood_size": 16}
    base.update(kw)
    return DataConfig(**base)


def _u8(x: torch.Tensor) -> np.ndarray:
    return (x * 255).round().to(torch.uint8).numpy()


def _rows(x: np.ndarray) -> list[bytes]:
    return [r.tobytes() for r in x]


# -- on-disk sets --------------------------------------------------------------------------
def test_cifar10_files_load_through_torchvision_with_exact_pixels_and_labels(disk, skip_md5):
    root, c10, _ = disk
    data = load_data(cfg(root), seed=0)
    sizes = (len(data.train), len(data.val), len(data.test))
    assert sizes == (5 * N_PER_BATCH - 20, 20, N_CIFAR_TEST)
    assert data.info.num_classes == 10 and data.resolution == 32 and data.ood is None
    x, y = data.test[3]
    assert x.dtype == torch.float32 and x.shape == (3, 32, 32) and isinstance(y, int)
    tx, ty = stack(data.test)
    assert 0.0 <= tx.min() and tx.max() <= 1.0
    np.testing.assert_array_equal(_u8(tx), c10["test_x"])            # test set: file order, exact
    np.testing.assert_array_equal(ty.numpy(), c10["test_y"])
    # train + val are exactly the training images with their labels
    source = dict(zip(_rows(c10["train_x"]), c10["train_y"]))
    seen = []
    for ds in (data.train, data.val):
        xs, ys = stack(ds)
        for row, label in zip(_rows(_u8(xs)), ys.tolist()):
            assert source[row] == label
            seen.append(row)
    assert sorted(seen) == sorted(source)


def test_svhn_files_load_with_label_ten_as_zero(disk, skip_md5):
    root, _, svhn = disk
    data = load_data(cfg(root, dataset="svhn", val_size=10), seed=0)
    assert (len(data.train), len(data.val), len(data.test)) == (N_SVHN_TRAIN - 10, 10, N_SVHN_TEST)
    tx, ty = stack(data.test)
    np.testing.assert_array_equal(_u8(tx), svhn["test_x"])
    np.testing.assert_array_equal(ty.numpy(), svhn["test_y"])
    assert 0 in ty.tolist() and 10 not in ty.tolist()


def test_torchvision_checks_md5_on_load_and_a_mismatch_is_one_clear_line(disk):
    root, _, _ = disk
    with pytest.raises(ValueError) as e:
        load_data(cfg(root), seed=0)
    msg = str(e.value)
    assert "md5" in msg and str(root / "cifar-10-batches-py") in msg and "\n" not in msg
    assert "Dataset not found or corrupted" not in msg and e.value.__suppress_context__


@pytest.mark.parametrize("dataset, place", [("cifar10", "cifar-10-batches-py"),
                                            ("cifar100", "cifar-100-python"), ("svhn", "")])
def test_missing_files_raise_one_line_naming_the_folder(tmp_path, dataset, place):
    with pytest.raises(FileNotFoundError) as e:
        load_data(cfg(tmp_path / "nothing", dataset=dataset), seed=0)
    msg = str(e.value)
    assert "\n" not in msg and "--download" in msg
    assert f"in {tmp_path / 'nothing' / place}".rstrip("/") in msg
    if dataset == "svhn":
        assert "train_32x32.mat" in msg


def test_failed_download_raises_file_not_found_without_torchvision_text(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("Temporary failure in name resolution")

    monkeypatch.setattr(tv_cifar, "download_and_extract_archive", offline)
    with pytest.raises(FileNotFoundError) as e:
        load_data(cfg(tmp_path, download=True), seed=0)
    msg = str(e.value)
    assert "\n" not in msg and str(tmp_path / "cifar-10-batches-py") in msg
    assert "name resolution" not in msg and e.value.__suppress_context__


def test_root_expands_the_home_folder(disk, skip_md5, monkeypatch):
    root, _, _ = disk
    monkeypatch.setenv("HOME", str(root.parent))
    data = load_data(cfg(f"~/{root.name}"), seed=0)
    assert len(data.test) == N_CIFAR_TEST


# -- splits --------------------------------------------------------------------------------
def test_split_is_deterministic_under_the_seed_and_disjoint(disk, skip_md5):
    root, _, _ = disk
    a, b, c = (load_data(cfg(root), seed=s) for s in (7, 7, 8))
    assert torch.equal(stack(a.val)[0], stack(b.val)[0])
    assert torch.equal(stack(a.train)[0], stack(b.train)[0])
    assert not torch.equal(stack(a.val)[0], stack(c.val)[0])
    val_rows, train_rows = set(_rows(_u8(stack(a.val)[0]))), set(_rows(_u8(stack(a.train)[0])))
    assert len(val_rows) == 20 and not val_rows & train_rows
    assert torch.equal(stack(a.test)[0], stack(c.test)[0])          # the test set ignores the seed


def test_limits_cap_train_and_test_but_not_val(disk, skip_md5):
    root, c10, _ = disk
    full = load_data(cfg(root), seed=3)
    lim = load_data(cfg(root, train_limit=50, test_limit=12), seed=3)
    assert (len(lim.train), len(lim.val), len(lim.test)) == (50, 20, 12)
    assert torch.equal(stack(lim.val)[0], stack(full.val)[0])
    assert torch.equal(stack(lim.train)[0], stack(full.train, 50)[0])
    np.testing.assert_array_equal(_u8(stack(lim.test)[0]), c10["test_x"][:12])


def test_val_size_that_leaves_no_training_images_is_rejected(disk, skip_md5):
    root, _, _ = disk
    with pytest.raises(ValueError, match="data.val_size: 120 leaves no training images"):
        load_data(cfg(root, val_size=120), seed=0)


def test_resize_matches_pil_bilinear(disk, skip_md5):
    root, c10, _ = disk
    data = load_data(cfg(root, resolution=16), seed=0)
    x, _ = stack(data.test, 4)
    assert x.shape == (4, 3, 16, 16)
    for i in range(4):
        ref = np.asarray(Image.fromarray(c10["test_x"][i].transpose(1, 2, 0)).resize(
            (16, 16), Image.BILINEAR), dtype=np.float32).transpose(2, 0, 1) / 255
        assert np.abs(x[i].numpy() - ref).max() < 2.5 / 255


# -- augmentation --------------------------------------------------------------------------
def _crop_flip_of(aug: np.ndarray, src: np.ndarray, pad: int = 4) -> tuple[int, int, bool] | None:
    """The (row offset, column offset, flipped) that turn `src` into `aug`, found by brute force."""
    padded = np.pad(src, ((0, 0), (pad, pad), (pad, pad)))
    h, w = src.shape[1:]
    for oy in range(2 * pad + 1):
        for ox in range(2 * pad + 1):
            crop = padded[:, oy:oy + h, ox:ox + w]
            for flipped in (False, True):
                if np.array_equal(aug, crop[:, :, ::-1] if flipped else crop):
                    return oy, ox, flipped
    return None


def test_augmentation_is_a_padded_crop_and_flip_on_train_only(disk, skip_md5):
    root, _, _ = disk
    data = load_data(cfg(root, augment=True), seed=0)
    plain_x, plain_y = stack(data.train_plain)
    found = []
    for i in range(len(data.train)):
        x, y = data.train[i]
        assert y == plain_y[i]
        found.append(_crop_flip_of(_u8(x), _u8(plain_x[i])))
    assert None not in found
    n = len(found)
    assert 0.25 * n < sum(f[2] for f in found) < 0.75 * n               # about half flipped
    assert len({f[:2] for f in found}) > 20                              # offsets spread over 9 x 9
    # val, test and train_plain are never augmented
    again = load_data(cfg(root, augment=False), seed=0)
    for a, b in ((data.train_plain, again.train), (data.val, again.val), (data.test, again.test)):
        assert torch.equal(stack(a)[0], stack(b)[0])
    # a loader's augmentations are fixed by its seed (here with the order fixed: shuffle off)
    runs = [torch.cat([x for x, _ in make_loader(data.train, 16, shuffle=False, seed=s)])
            for s in (5, 5, 6)]
    assert torch.equal(runs[0], runs[1]) and not torch.equal(runs[0], runs[2])


def test_svhn_is_not_flipped_even_with_augment_on(disk, skip_md5):
    root, _, _ = disk
    data = load_data(cfg(root, dataset="svhn", val_size=10, augment=True), seed=0)
    assert torch.equal(stack(data.train)[0], stack(data.train_plain)[0])


# -- OoD sets ------------------------------------------------------------------------------
def test_auto_ood_for_cifar_is_svhn_test_images_labelled_minus_one(disk, skip_md5):
    root, _, svhn = disk
    data = load_data(cfg(root, ood="auto", ood_size=16), seed=0)
    x, y = stack(data.ood)
    assert x.shape == (16, 3, 32, 32) and set(y.tolist()) == {-1} and data.ood[0][1] == -1
    assert set(_rows(_u8(x))) <= set(_rows(svhn["test_x"]))
    assert len(set(_rows(_u8(x)))) == 16


def test_auto_ood_for_svhn_is_cifar10_test_images(disk, skip_md5):
    root, c10, _ = disk
    data = load_data(cfg(root, dataset="svhn", val_size=10, ood="auto", ood_size=100), seed=0)
    x, _ = stack(data.ood_train)
    e, _ = stack(data.ood_eval)
    # capped at the test set's size, which is split into disjoint train / eval halves
    assert len(x) + len(e) == N_CIFAR_TEST and len(x) == N_CIFAR_TEST // 2
    assert set(_rows(_u8(x))).isdisjoint(_rows(_u8(e)))
    assert set(_rows(_u8(x))) | set(_rows(_u8(e))) == set(_rows(c10["test_x"]))


def test_rgb_ood_is_converted_to_grayscale_and_resized_for_digits(disk, skip_md5):
    root, _, svhn = disk
    data = load_data(DataConfig(dataset="digits", root=str(root), resolution=8, val_size=100,
                                ood="svhn", ood_size=N_SVHN_TEST // 2), seed=0)
    x, y = stack(data.ood)
    assert x.shape == (N_SVHN_TEST // 2, 1, 8, 8) and set(y.tolist()) == {-1}
    # every OoD image is the luma (0.299 R + 0.587 G + 0.114 B) of one SVHN test image, resized
    src = svhn["test_x"].astype(np.float32) / 255
    gray = 0.299 * src[:, 0] + 0.587 * src[:, 1] + 0.114 * src[:, 2]
    refs = np.stack([np.asarray(Image.fromarray(g, mode="F").resize((8, 8), Image.BILINEAR))
                     for g in gray])
    for img in x[:, 0].numpy():
        assert np.abs(refs - img).max(axis=(1, 2)).min() < 0.01


def test_missing_ood_files_name_the_folder_and_the_noise_option(tmp_path, monkeypatch, skip_md5):
    root = tmp_path
    _write_cifar10(root, np.random.default_rng(0))
    with pytest.raises(FileNotFoundError) as e:
        load_data(cfg(root, ood="auto"), seed=0)
    msg = str(e.value)
    assert "\n" not in msg and "test_32x32.mat" in msg and 'data.ood="noise"' in msg


def test_ood_that_is_the_training_set_is_rejected(disk, skip_md5):
    root, _, _ = disk
    with pytest.raises(ValueError, match="in-distribution"):
        load_data(cfg(root, ood="cifar10"), seed=0)


def test_noise_ood_is_seeded_uniform_noise(disk, skip_md5):
    root, _, _ = disk
    a, b, c = (load_data(cfg(root, ood="noise", ood_size=64, resolution=16), seed=s)
               for s in (1, 1, 2))
    xa = stack(a.ood)[0]
    assert xa.shape == (64, 3, 16, 16) and set(stack(a.ood)[1].tolist()) == {-1}
    assert torch.equal(xa, stack(b.ood)[0]) and not torch.equal(xa, stack(c.ood)[0])
    assert 0.0 <= xa.min() and xa.max() < 1.0 and abs(xa.mean().item() - 0.5) < 0.02


def test_permuted_ood_permutes_pixel_positions_of_training_images(disk, skip_md5):
    root, c10, _ = disk
    data = load_data(cfg(root, ood="permuted", ood_size=10), seed=0)
    x, y = stack(data.ood)
    assert x.shape == (10, 3, 32, 32) and set(y.tolist()) == {-1}

    def pixels(img):
        return tuple(sorted(map(tuple, img.reshape(3, -1).T)))

    # pixels (as RGB triples) are those of one image of the training split, moved as a whole;
    # never a test image's nor a validation image's (no held-out image shapes the search)
    train = {pixels(img): img for img in _u8(stack(data.train)[0])}
    held_out = {pixels(img) for img in c10["test_x"]} | {pixels(img)
                                                           for img in _u8(stack(data.val)[0])}
    perms = []
    for img in _u8(torch.cat([x, stack(data.ood_eval)[0]])):
        key = pixels(img)
        assert key in train and key not in held_out and not np.array_equal(img, train[key])
        perms.append(img.tobytes())
    assert data.ood is not None and len(set(perms)) == 20


@pytest.mark.parametrize("kind", ["auto", "noise", "permuted"])
def test_ood_train_and_eval_images_are_disjoint(disk, skip_md5, kind):
    root, _, _ = disk
    data = load_data(cfg(root, ood=kind, ood_size=8), seed=0)
    x, e = stack(data.ood_train)[0], stack(data.ood_eval)[0]
    assert len(x) == len(e) == 8 and data.ood is data.ood_train
    assert set(_rows(_u8(x))).isdisjoint(_rows(_u8(e)))


def test_ood_none_gives_none(disk, skip_md5):
    root, _, _ = disk
    assert load_data(cfg(root, ood="none"), seed=0).ood is None


# -- digits --------------------------------------------------------------------------------
def test_digits_end_to_end_with_a_fixed_stratified_test_split():
    from sklearn.datasets import load_digits

    d = load_digits()
    a = load_data(DataConfig(dataset="digits", resolution=8, val_size=200, ood="auto",
                             ood_size=50), seed=0)
    b = load_data(DataConfig(dataset="digits", resolution=16, val_size=200), seed=9)
    assert a.info.in_channels == 1 and a.resolution == 8
    assert len(a.train) + len(a.val) + len(a.test) == len(d.target) and len(a.val) == 200
    test_y = stack(a.test)[1].numpy()
    counts, test_counts = np.bincount(d.target), np.bincount(test_y, minlength=10)
    assert np.all(np.abs(test_counts - 0.2 * counts) <= 1)           # stratified 20 %
    assert np.array_equal(test_y, stack(b.test)[1].numpy())          # independent of the run seed
    # at the native resolution the pixels are load_digits / 16, exactly
    rows = {}
    for img, lab in zip(d.images.astype(np.float32) / 16, d.target):
        rows[img.tobytes()] = lab
    seen = set()
    for ds in (a.train, a.val, a.test):
        xs, ys = stack(ds)
        assert xs.shape[1:] == (1, 8, 8)
        for img, lab in zip(xs[:, 0].numpy(), ys.tolist()):
            assert rows[img.tobytes()] == lab
            seen.add(img.tobytes())
    assert len(seen) == len(set(rows))
    # the OoD set of digits is noise; at 16 px the images are bilinear upsamplings
    assert stack(a.ood)[0].shape == (50, 1, 8, 8)
    x16, _ = stack(b.test, 5)
    assert x16.shape == (5, 1, 16, 16) and 0.0 <= x16.min() and x16.max() <= 1.0
    batch_x, batch_y = next(iter(make_loader(b.train, 32, shuffle=True, seed=0)))
    assert batch_x.shape == (32, 1, 16, 16) and batch_y.dtype == torch.int64


# -- loaders and stack ---------------------------------------------------------------------
def _labelled(n: int) -> ImageTensorDataset:
    """Image i is filled with i / 255, so a batch says which items it holds."""
    x = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 1, 4, 4).contiguous()
    return ImageTensorDataset(x, torch.arange(n), resolution=4)


def test_loader_order_is_fixed_by_the_seed_and_covers_every_item_once():
    ds = _labelled(50)
    def order(seed, **kw):
        return [y.tolist() for _, y in make_loader(ds, 8, True, seed, **kw)]

    assert order(1) == order(1) and order(1) != order(2)
    flat = list(chain.from_iterable(order(1)))
    assert sorted(flat) == list(range(50)) and flat != list(range(50))
    assert [len(b) for b in order(1)] == [8] * 6 + [2]
    assert [len(b) for b in order(1, drop_last=True)] == [8] * 6
    assert order(0, num_workers=1) == order(0)                      # workers do not change it
    for x, y in make_loader(ds, 8, False, 0):                        # images travel with labels
        assert torch.equal((x[:, 0, 0, 0] * 255).round().long(), y)
    in_order = chain.from_iterable(y.tolist() for _, y in make_loader(ds, 8, False, 0))
    assert list(in_order) == list(range(50))


def test_sharded_loaders_split_one_permutation_over_ranks():
    ds = _labelled(50)
    shards = [list(chain.from_iterable(y.tolist() for _, y in make_loader(
        ds, 4, True, 3, rank=r, world_size=3, drop_last=True))) for r in range(3)]
    assert all(len(s) == 16 for s in shards)
    assert len(set(chain.from_iterable(shards))) == 48


def test_loader_over_a_plain_dataset_is_seeded_too():
    ds = torch.utils.data.TensorDataset(torch.arange(20).float().view(20, 1), torch.arange(20))
    a = [y.tolist() for _, y in make_loader(ds, 6, True, 4)]
    assert a == [y.tolist() for _, y in make_loader(ds, 6, True, 4)]
    assert sorted(chain.from_iterable(a)) == list(range(20))


def test_stack_takes_the_first_n_or_a_seeded_subset():
    ds = _labelled(30)
    x, y = stack(ds, 5)
    assert y.tolist() == [0, 1, 2, 3, 4] and x.shape == (5, 1, 4, 4)
    s1, s2, s3 = (stack(ds, 10, generator_seed=g)[1] for g in (7, 7, 8))
    assert torch.equal(s1, s2) and not torch.equal(s1, s3) and len(set(s1.tolist())) == 10
    assert len(stack(ds, 1000)[1]) == 30 and len(stack(ds)[1]) == 30
    plain = torch.utils.data.TensorDataset(torch.arange(6).float().view(6, 1), torch.arange(6))
    assert stack(plain, 3)[1].tolist() == [0, 1, 2]
