"""The datasets on disk: torchvision's sets, Debian's packaged Fashion-MNIST, scikit-learn's
digits; their fixed statistics and class names."""

from __future__ import annotations

import logging
import os
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tamnas.data.tensors import resize

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DatasetInfo:
    num_classes: int
    in_channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    classes: tuple[str, ...] = ()          # class names, index = label (reports)


FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                   "Sneaker", "Bag", "Ankle boot")
_DIGIT_NAMES = tuple(str(i) for i in range(10))
# Fixed statistics of the built-in sets (training images, [0, 1] pixels).
DATASET_INFO = {
    "digits": DatasetInfo(10, 1, (0.3,), (0.38,), _DIGIT_NAMES),
    "fashion-mnist": DatasetInfo(10, 1, (0.2860,), (0.3530,), FASHION_CLASSES),
    "mnist": DatasetInfo(10, 1, (0.1307,), (0.3081,), _DIGIT_NAMES),
    "cifar10": DatasetInfo(10, 3, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": DatasetInfo(100, 3, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "svhn": DatasetInfo(10, 3, (0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970), _DIGIT_NAMES),
}


DIGITS_TEST_FRACTION = 0.2
DIGITS_SPLIT_SEED = 0                      # fixed: the digits test set ignores the run seed


# --------------------------------------------------------------------------------------
# Raw arrays: torchvision sets on disk and scikit-learn's digits
# --------------------------------------------------------------------------------------
def _tv_class(name: str):
    import torchvision.datasets as tvd

    return {"cifar10": tvd.CIFAR10, "cifar100": tvd.CIFAR100, "svhn": tvd.SVHN}[name]


def _expected_files(name: str, root: Path, split: str) -> tuple[Path, list[str]]:
    """The folder torchvision reads and the files it insists on for `split`."""
    cls = _tv_class(name)
    if name == "svhn":
        return root, [cls.split_list[split][1]]
    # CIFAR's integrity check wants the train and the test batches whatever the split.
    files = [f for f, _ in cls.train_list + cls.test_list] + [cls.meta["filename"]]
    return root / cls.base_folder, files


def _how_to_get(name: str, root: Path, files: list[str], ood: bool) -> str:
    if name == "svhn":
        copy = f"copy {', '.join(files)} there"
    else:   # the official archive unpacks into the folder torchvision reads
        copy = f"extract {_tv_class(name).filename} into {root}"
    tail = "; or set data.ood=\"noise\" to skip this OoD set" if ood else ""
    return f"pass --download (data.download=true) or {copy}{tail}"


def load_torchvision(name: str, root: str | Path, split: str, download: bool,
                      ood: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 N x C x H x W images and int64 labels of a torchvision set, with one-line errors."""
    root = Path(root).expanduser()
    folder, files = _expected_files(name, root, split)
    missing = [f for f in files if not (folder / f).is_file()]
    if missing and not download:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise FileNotFoundError(f"{name}: dataset files not found in {folder} (missing "
                                f"{', '.join(missing[:3])}{more}); "
                                + _how_to_get(name, root, files, ood))
    cls = _tv_class(name)
    kwargs: dict[str, Any] = {"split": split} if name == "svhn" else {"train": split == "train"}
    try:
        if download:
            root.mkdir(parents=True, exist_ok=True)
        ds = cls(root=str(root), download=download, **kwargs)
    except RuntimeError as e:
        if download and missing:
            raise FileNotFoundError(f"{name}: download into {root} failed ({type(e).__name__}); "
                                    + _how_to_get(name, root, files, ood)) from None
        raise ValueError(f"{name}: the files in {folder} fail torchvision's md5 check (corrupted "
                         f"or not the official release); delete them and pass --download, or "
                         f"copy the official files there") from None
    except (OSError, EOFError, tarfile.TarError) as e:
        raise FileNotFoundError(f"{name}: could not {'download or ' if download else ''}read the "
                                f"files in {folder} ({type(e).__name__}); "
                                + _how_to_get(name, root, files, ood)) from None
    if name == "svhn":
        images = torch.from_numpy(np.ascontiguousarray(ds.data))            # already N, C, H, W
        labels = torch.from_numpy(np.asarray(ds.labels, dtype=np.int64))
    else:
        images = torch.from_numpy(np.ascontiguousarray(ds.data.transpose(0, 3, 1, 2)))
        labels = torch.as_tensor(ds.targets, dtype=torch.int64)
    return images, labels


def _digits_split(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Stratified 80/20 train/test indices of load_digits, fixed forever (seed 0)."""
    rng = np.random.default_rng(DIGITS_SPLIT_SEED)
    test = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        test.append(rng.permutation(idx)[: round(DIGITS_TEST_FRACTION * len(idx))])
    test_idx = np.sort(np.concatenate(test))
    return np.setdiff1d(np.arange(len(y)), test_idx), test_idx


def load_digits(split: str, resolution: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Float 1 x res x res digits in [0, 1] (values 0..16 divided by 16), resized once."""
    from sklearn.datasets import load_digits

    d = load_digits()
    train_idx, test_idx = _digits_split(d.target)
    idx = train_idx if split == "train" else test_idx
    x = torch.from_numpy(d.images[idx].astype(np.float32) / 16.0).unsqueeze(1)
    return resize(x, resolution), torch.from_numpy(d.target[idx].astype(np.int64))


# --------------------------------------------------------------------------------------
# MNIST-format sets: torchvision's layout under data.root, or Debian's packaged copy
# --------------------------------------------------------------------------------------
# Read-only system copies of the official .gz files (Debian: apt-get install PACKAGE).
SYSTEM_FOLDERS = {"fashion-mnist": Path("/usr/share/datasets/fashion-mnist")}
SYSTEM_PACKAGES = {"fashion-mnist": "dataset-fashion-mnist"}


def _mnist_class(name: str):
    import torchvision.datasets as tvd

    return {"fashion-mnist": tvd.FashionMNIST, "mnist": tvd.MNIST}[name]


def _mnist_how_to_get(name: str, raw: Path) -> str:
    package = SYSTEM_PACKAGES.get(name)
    apt = f"`apt-get install {package}`, " if package else ""
    return f"run {apt}pass --download (data.download=true), or put the unpacked IDX files in {raw}"


def _unpack_system_copy(name: str, system: Path, files: list[str], raw: Path) -> None:
    """Unpack the packaged .gz files into torchvision's layout under data.root: the system
    folder is read-only, and once there the files are read exactly as after a --download.
    (Debian recompresses the files, so the .gz md5s differ from torchvision's; the content
    is checked when torchvision parses it.)"""
    from torchvision.datasets.utils import extract_archive

    try:
        raw.mkdir(parents=True, exist_ok=True)
        for f in files:
            if (raw / f).is_file():
                continue
            with tempfile.TemporaryDirectory(dir=raw) as tmp:   # a crash leaves no half file
                out = Path(extract_archive(str(system / f"{f}.gz"), tmp))
                os.replace(out, raw / f)
    except (OSError, EOFError) as e:
        raise FileNotFoundError(f"{name}: could not unpack {system} into {raw} "
                                f"({type(e).__name__}); pass --data a writable folder, or "
                                f"reinstall {SYSTEM_PACKAGES.get(name, 'the package')}") from None
    log.info("%s: unpacked %s into %s", name, system, raw)


IDX_UBYTE = 0x08                           # the only IDX type code of the MNIST-format sets
MNIST_SHAPE = (28, 28)


def _idx_header(path: Path) -> tuple[int, tuple[int, ...]]:
    """(type code, dims) of an IDX file, checked against its size; ValueError if they disagree."""
    import struct

    with path.open("rb") as f:
        head = f.read(4)
        if len(head) < 4 or head[:2] != b"\0\0" or not 1 <= head[3] <= 4:
            raise ValueError(f"{path} is not an IDX file (bad magic number)")
        raw = f.read(4 * head[3])
    if len(raw) < 4 * head[3]:
        raise ValueError(f"{path} is cut inside its IDX header")
    dims = struct.unpack(f">{head[3]}I", raw)
    need = 4 + 4 * len(dims) + int(np.prod(dims, dtype=np.int64))
    if path.stat().st_size != need:
        raise ValueError(f"{path}: its IDX header claims {' x '.join(map(str, dims))} bytes of "
                         f"data, the file holds {path.stat().st_size - 4 - 4 * len(dims)}")
    return head[2], tuple(dims)


def check_idx_files(name: str, raw: Path, files: list[str], fix: str) -> None:
    """Every IDX file of an MNIST-format set holds 8-bit N x 28 x 28 images or N labels, with
    one N per split, before torchvision reads it (it trusts the header's type and shape)."""
    sizes: dict[str, dict[str, int]] = {}
    for f in files:
        path = raw / f
        kind = "images" if "images" in f else "labels"
        try:
            code, dims = _idx_header(path)
        except (ValueError, OSError) as e:
            raise ValueError(f"{name}: {e}; {fix}") from None
        want = (3, MNIST_SHAPE) if kind == "images" else (1, ())
        if code != IDX_UBYTE or len(dims) != want[0] or tuple(dims[1:]) != want[1]:
            shape = " x ".join(["N", *map(str, want[1])]) if want[1] else "N"
            raise ValueError(f"{name}: {path} holds {' x '.join(map(str, dims))} values of IDX "
                             f"type 0x{code:02x}, not {kind} of {shape} unsigned bytes (type "
                             f"0x{IDX_UBYTE:02x}); {fix}")
        split = "train" if f.startswith("train") else "test"
        sizes.setdefault(split, {})[kind] = dims[0]
    for split, n in sizes.items():
        if len(set(n.values())) > 1:
            raise ValueError(f"{name}: the {split} files hold {n.get('images')} images and "
                             f"{n.get('labels')} labels in {raw}; {fix}")


def load_mnist_like(name: str, root: str | Path, split: str,
                     download: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 N x 1 x 28 x 28 images and int64 labels through torchvision's (Fashion)MNIST."""
    cls = _mnist_class(name)
    root = Path(root).expanduser()
    raw = root / cls.__name__ / "raw"
    files = [gz[: -len(".gz")] for gz, _ in cls.resources]
    missing = [f for f in files if not (raw / f).is_file()]
    if missing and not download:
        system = SYSTEM_FOLDERS.get(name)
        if system is None or not all((system / f"{f}.gz").is_file() for f in files):
            raise FileNotFoundError(f"{name}: dataset files not found in {raw} (missing "
                                    f"{', '.join(missing)}); " + _mnist_how_to_get(name, raw))
        _unpack_system_copy(name, system, files, raw)
    if not download or not missing:
        check_idx_files(name, raw, files, "delete them and " + _mnist_how_to_get(name, raw))
    try:
        if download:
            root.mkdir(parents=True, exist_ok=True)
        ds = cls(root=str(root), train=split == "train", download=download)
    except RuntimeError as e:
        if download and missing:
            raise FileNotFoundError(f"{name}: download into {raw} failed ({type(e).__name__}); "
                                    + _mnist_how_to_get(name, raw)) from None
        raise ValueError(f"{name}: the files in {raw} are not valid IDX files; delete them and "
                         + _mnist_how_to_get(name, raw)) from None
    except (OSError, EOFError, ValueError, AssertionError) as e:
        raise ValueError(f"{name}: could not {'download or ' if download else ''}read the IDX "
                         f"files in {raw} ({type(e).__name__}); delete them and "
                         + _mnist_how_to_get(name, raw)) from None
    images, labels = ds.data, ds.targets
    if (images.dim() != 3 or images.dtype != torch.uint8 or len(images) != len(labels)
            or len(labels) == 0 or int(labels.min()) < 0 or int(labels.max()) >= len(cls.classes)):
        raise ValueError(f"{name}: the files in {raw} are not 8-bit image and label IDX files of "
                         f"one length with labels 0..{len(cls.classes) - 1}; delete them and "
                         + _mnist_how_to_get(name, raw))
    return images.unsqueeze(1).contiguous(), labels.to(torch.int64)
