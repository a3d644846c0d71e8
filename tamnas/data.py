"""Datasets, splits, loaders and out-of-distribution sets; models receive [0, 1] images."""

from __future__ import annotations

import logging
import os
import tarfile
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from tamnas.seeds import mix_seed

if TYPE_CHECKING:
    from tamnas.config import DataConfig

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


OOD_CHOICES = ("auto", "none", "svhn", "cifar10", "noise", "permuted")
DIGITS_TEST_FRACTION = 0.2
DIGITS_SPLIT_SEED = 0                      # fixed: the digits test set ignores the run seed
CROP_PADDING = 4
_GRAY = (0.299, 0.587, 0.114)              # ITU-R 601 luma, for RGB -> grayscale OoD sets


# --------------------------------------------------------------------------------------
# The in-memory dataset every split is made of
# --------------------------------------------------------------------------------------
def _resize(x: torch.Tensor, resolution: int) -> torch.Tensor:
    """Bilinear resize of a float batch to resolution x resolution (antialiased when shrinking)."""
    if x.shape[-2:] == (resolution, resolution):
        return x
    shrink = x.shape[-1] > resolution or x.shape[-2] > resolution
    out = F.interpolate(x, size=(resolution, resolution), mode="bilinear", align_corners=False,
                        antialias=shrink)
    return out.clamp_(0.0, 1.0)


def _random_crop_flip(x: torch.Tensor, gen: torch.Generator, padding: int) -> torch.Tensor:
    """Zero-pad, crop back at a random offset and flip half the images: one vectorised step."""
    b, c, h, w = x.shape
    padded = F.pad(x, (padding, padding, padding, padding))
    oy = torch.randint(0, 2 * padding + 1, (b,), generator=gen)
    ox = torch.randint(0, 2 * padding + 1, (b,), generator=gen)
    flip = torch.rand(b, generator=gen) < 0.5
    rows = (oy[:, None] + torch.arange(h))[:, :, None]                  # b, h, 1
    cols = ox[:, None] + torch.arange(w)                                 # b, w
    cols = torch.where(flip[:, None], cols.flip(1), cols)[:, None, :]    # b, 1, w
    dev = x.device                   # offsets drawn on the CPU generator, wherever the images live
    out = padded[torch.arange(b, device=dev)[:, None, None], :, rows.to(dev), cols.to(dev)]
    return out.permute(0, 3, 1, 2).contiguous()


class ImageTensorDataset(Dataset):
    """Images kept in one tensor (uint8 or float in [0, 1]); a whole batch is fetched,
    resized and augmented in one vectorised step, so loaders pay no per-image Python cost.

    Augmentation randomness comes from a torch.Generator seeded by `key` (per batch in a
    loader, per index for `ds[i]`), so the same seed always yields the same images.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, resolution: int,
                 augment: bool = False, seed: int = 0, padding: int = CROP_PADDING):
        if images.dim() != 4 or len(images) != len(labels):
            raise ValueError("ImageTensorDataset: images must be N x C x H x W with one label each")
        self.images = images
        self.labels = labels.to(torch.int64)
        self.resolution = int(resolution)
        self.augment = bool(augment)
        self.seed = int(seed)
        self.padding = int(padding)

    def __len__(self) -> int:
        return len(self.images)

    @property
    def channels(self) -> int:
        return int(self.images.shape[1])

    def with_augment(self, augment: bool) -> ImageTensorDataset:
        """The same images (shared storage) with augmentation switched on or off."""
        return ImageTensorDataset(self.images, self.labels, self.resolution, augment, self.seed,
                                  self.padding)

    def fetch(self, indices: torch.Tensor | Sequence[int],
              key: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """Images (float, [0, 1], resized, augmented if on) and labels of `indices`."""
        idx = torch.as_tensor(indices, dtype=torch.int64)
        x = self.images[idx]
        x = x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()
        x = _resize(x, self.resolution)
        if self.augment:
            x = _random_crop_flip(x, torch.Generator().manual_seed(key), self.padding)
        return x, self.labels[idx]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        i = int(i)
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} images")
        x, y = self.fetch([i], key=mix_seed(self.seed, i))
        return x[0], int(y[0])


def _float_images(x: torch.Tensor) -> torch.Tensor:
    return x.float().div(255.0) if x.dtype == torch.uint8 else x.float()


def _match_channels(x: torch.Tensor, channels: int) -> torch.Tensor:
    """Grayscale <-> RGB so that an OoD set fits the in-distribution model."""
    c = x.shape[1]
    if c == channels:
        return x
    if c == 1:
        return x.expand(-1, channels, -1, -1).contiguous()
    if c == 3 and channels == 1:
        w = torch.tensor(_GRAY, dtype=x.dtype).view(1, 3, 1, 1)
        return (x * w).sum(1, keepdim=True)
    raise ValueError(f"cannot convert {c}-channel images to {channels} channels")


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


def _load_torchvision(name: str, root: str | Path, split: str, download: bool,
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
        test.append(rng.permutation(idx)[: int(round(DIGITS_TEST_FRACTION * len(idx)))])
    test_idx = np.sort(np.concatenate(test))
    return np.setdiff1d(np.arange(len(y)), test_idx), test_idx


def _load_digits(split: str, resolution: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Float 1 x res x res digits in [0, 1] (values 0..16 divided by 16), resized once."""
    from sklearn.datasets import load_digits

    d = load_digits()
    train_idx, test_idx = _digits_split(d.target)
    idx = train_idx if split == "train" else test_idx
    x = torch.from_numpy(d.images[idx].astype(np.float32) / 16.0).unsqueeze(1)
    return _resize(x, resolution), torch.from_numpy(d.target[idx].astype(np.int64))


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


def _load_mnist_like(name: str, root: str | Path, split: str,
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


# --------------------------------------------------------------------------------------
# Image folders: DIR/train/CLASS/*.png [DIR/test/CLASS/*.png]
# --------------------------------------------------------------------------------------
FOLDER_TEST_FRACTION = 0.2                 # without DIR/test/: a stratified 20 % of DIR/train/
FOLDER_SPLIT_SEED = 0                      # fixed: the test images ignore the run seed
_GREY_MODES = ("1", "L", "LA")
_16_BIT_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N")


def _folder_samples(folder: Path) -> tuple[list[str], list[tuple[str, int]]]:
    """Class names (sorted sub-folders) and (path, label) of every image file, by torchvision's
    own rules (ImageFolder's find_classes / make_dataset, its image extensions)."""
    from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

    try:
        classes, class_to_idx = find_classes(folder)
    except FileNotFoundError:
        raise FileNotFoundError(f"imagefolder: {folder} has no class folders; put the images of "
                                f"each class in {folder}/CLASS_NAME/") from None
    samples = make_dataset(folder, class_to_idx, extensions=IMG_EXTENSIONS, allow_empty=True)
    counts = np.bincount([y for _, y in samples], minlength=len(classes))
    empty = [c for c, n in zip(classes, counts) if n == 0]
    if empty:
        raise FileNotFoundError(f"imagefolder: no images ({', '.join(IMG_EXTENSIONS)}) in class "
                                f"folder(s) {', '.join(empty)} of {folder}; add images or remove "
                                f"the folder(s)")
    return classes, samples


def _read_image(path: str, resolution: int) -> torch.Tensor:
    """One image as uint8 C x res x res (C = 1 for greyscale files, else 3; alpha dropped),
    resized by the same antialiased bilinear step as every other set."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in _16_BIT_MODES:               # 16-bit greyscale: scale, do not clip
                arr = np.asarray(im, dtype=np.float64) / 65535.0 * 255.0
                arr = np.clip(np.rint(arr), 0, 255).astype(np.uint8)[None]
            elif im.mode in _GREY_MODES:
                arr = np.asarray(im.convert("L"))[None]
            else:
                arr = np.asarray(im.convert("RGB")).transpose(2, 0, 1)
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise ValueError(f"imagefolder: cannot read {path} as an image ({type(e).__name__}); "
                         f"delete or replace the file") from None
    x = torch.from_numpy(np.array(arr, dtype=np.float32)).div_(255.0).unsqueeze(0)
    return _resize(x, resolution).mul_(255.0).round_().to(torch.uint8)[0]


def _read_folder(folder: Path, resolution: int) -> tuple[list[str], torch.Tensor, torch.Tensor]:
    classes, samples = _folder_samples(folder)
    images = [_read_image(p, resolution) for p, _ in samples]
    if any(x.shape[0] == 3 for x in images):           # one RGB file makes the set RGB
        images = [x.expand(3, -1, -1) for x in images]
    return (classes, torch.stack(images).contiguous(),
            torch.tensor([y for _, y in samples], dtype=torch.int64))


def _stratified_test(labels: np.ndarray, fraction: float,
                     seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Train and test indices: `fraction` of every class (at least one image, never all of
    it) goes to test."""
    rng = np.random.default_rng(seed)
    test = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        k = min(max(round(fraction * len(idx)), 1), len(idx) - 1)
        test.append(rng.permutation(idx)[:k])
    test_idx = np.sort(np.concatenate(test))
    return np.setdiff1d(np.arange(len(labels)), test_idx), test_idx


@dataclass(frozen=True)
class _FolderSet:
    info: DatasetInfo
    train: tuple[torch.Tensor, torch.Tensor]
    test: tuple[torch.Tensor, torch.Tensor]


_FOLDER_CACHE: dict[tuple, _FolderSet] = {}


def _folder_key(root: Path, resolution: int) -> tuple:
    """What a folder's tensors depend on: every file's path, size and modification time."""
    stats = tuple((str(p), st.st_size, st.st_mtime_ns)
                  for p in sorted(root.rglob("*")) if p.is_file() for st in [p.stat()])
    return (str(root), int(resolution), stats)


def _image_folder(root: str | Path, resolution: int) -> _FolderSet:
    """DIR/train/ (and DIR/test/, or a fixed stratified split of train/), read once per
    process; the info (classes, channels, mean/std) comes from the training images."""
    root = Path(root).expanduser()
    train_dir, test_dir = root / "train", root / "test"
    if not train_dir.is_dir():
        raise FileNotFoundError(f"imagefolder: {train_dir} does not exist; pass --data DIR with "
                                f"DIR/train/CLASS/*.png (and optionally DIR/test/CLASS/*.png)")
    key = _folder_key(root, resolution)
    if key in _FOLDER_CACHE:
        return _FOLDER_CACHE[key]
    classes, x, y = _read_folder(train_dir, resolution)
    if test_dir.is_dir():
        test_classes, tx, ty = _read_folder(test_dir, resolution)
        if test_classes != classes:
            only_train = sorted(set(classes) - set(test_classes))
            only_test = sorted(set(test_classes) - set(classes))
            raise ValueError(f"imagefolder: the class folders of {train_dir} and {test_dir} differ "
                             f"(only in train: {', '.join(only_train) or '-'}; only in test: "
                             f"{', '.join(only_test) or '-'}); give both the same classes")
        if tx.shape[1] != x.shape[1]:                   # one RGB split makes both RGB
            x, tx = x.expand(-1, 3, -1, -1).contiguous(), tx.expand(-1, 3, -1, -1).contiguous()
    else:
        if int(np.bincount(y.numpy()).min()) < 2:
            raise ValueError(f"imagefolder: without {test_dir} every class of {train_dir} needs "
                             f"two or more images to split off test images; add images or a "
                             f"test/ folder")
        tr, te = _stratified_test(y.numpy(), FOLDER_TEST_FRACTION, FOLDER_SPLIT_SEED)
        x, tx, y, ty = x[tr], x[te], y[tr], y[te]
    pixels = x.double().div_(255.0).transpose(0, 1).reshape(x.shape[1], -1)
    mean = tuple(float(v) for v in pixels.mean(1))
    std = tuple(max(float(v), 1e-3) for v in pixels.std(1))       # a blank channel stays finite
    out = _FolderSet(DatasetInfo(len(classes), int(x.shape[1]), mean, std, tuple(classes)),
                     (x, y), (tx, ty))
    _FOLDER_CACHE.clear()                              # hold one folder's tensors, not every one
    _FOLDER_CACHE[key] = out
    return out


# --------------------------------------------------------------------------------------
# The registry: every name `data.dataset` accepts
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DatasetEntry:
    """How one dataset name reads a split ("train" or "test") into uint8 (or [0, 1] float)
    N x C x H x W images and labels, and what the models need to know about it."""

    load: Callable[[DataConfig, str], tuple[torch.Tensor, torch.Tensor]]
    info: Callable[[DataConfig], DatasetInfo]
    crop_flip: bool = False                # pad-4 crop + flip when data.augment (CIFAR-style)
    ood_auto: str = "noise"                # what data.ood = "auto" means


def _fixed(name: str) -> Callable[[DataConfig], DatasetInfo]:
    return lambda _cfg: DATASET_INFO[name]


def _torchvision_entry(name: str, **kw: Any) -> DatasetEntry:
    return DatasetEntry(lambda c, split: _load_torchvision(name, c.root, split, c.download),
                        _fixed(name), **kw)


def _mnist_entry(name: str) -> DatasetEntry:
    return DatasetEntry(lambda c, split: _load_mnist_like(name, c.root, split, c.download),
                        _fixed(name))


def _folder_split(c: DataConfig, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    return getattr(_image_folder(c.root, c.resolution), split)


DATASETS: dict[str, DatasetEntry] = {
    "digits": DatasetEntry(lambda c, split: _load_digits(split, c.resolution), _fixed("digits")),
    "fashion-mnist": _mnist_entry("fashion-mnist"),
    "mnist": _mnist_entry("mnist"),
    "cifar10": _torchvision_entry("cifar10", crop_flip=True, ood_auto="svhn"),
    "cifar100": _torchvision_entry("cifar100", crop_flip=True, ood_auto="svhn"),
    "svhn": _torchvision_entry("svhn", ood_auto="cifar10"),
    "imagefolder": DatasetEntry(_folder_split, lambda c: _image_folder(c.root, c.resolution).info),
}
CIFAR_LIKE = tuple(n for n, e in DATASETS.items() if e.crop_flip)
OOD_AUTO = {n: e.ood_auto for n, e in DATASETS.items()}


def _entry(name: str) -> DatasetEntry:
    if name not in DATASETS:
        raise ValueError(f"data.dataset: unknown dataset {name!r}; choose one of "
                         f"{', '.join(DATASETS)}")
    return DATASETS[name]


def dataset_info(data: str | DataConfig) -> DatasetInfo:
    """Classes, channels and mean/std the models are built for. A name suffices for the
    built-in sets; an image folder's come from its images, so it needs the data config."""
    if isinstance(data, str):
        entry = _entry(data)
        if data not in DATASET_INFO:
            raise ValueError(f"data.dataset: {data!r} takes its classes and channels from its "
                             f"images; pass the data config (dataset_info(cfg.data))")
        return entry.info(None)  # type: ignore[arg-type]
    return _entry(data.dataset).info(data)


def _load_split(data_cfg: DataConfig, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    return _entry(data_cfg.dataset).load(data_cfg, split)


# --------------------------------------------------------------------------------------
# Splits, OoD sets and the bundle
# --------------------------------------------------------------------------------------
@dataclass
class DataBundle:
    """Every split one run needs; `val` is held out of the training set for search scores.

    The OoD images come as two disjoint sets: `ood_train` for whatever trains
    (the OoD loss of the weights and of alpha), `ood_eval` for OoD AUPR, so
    that AUPR is never measured on images that trained the net.
    """

    train: Dataset            # augmented when data.augment and the set is CIFAR-like
    train_plain: Dataset      # the same images, never augmented (BatchNorm recalibration)
    val: Dataset              # held-out training images, never augmented
    test: Dataset
    ood_train: Dataset | None  # yields (image, -1)
    ood_eval: Dataset | None   # disjoint from ood_train
    info: DatasetInfo
    resolution: int
    name: str = ""

    @property
    def ood(self) -> Dataset | None:
        """The OoD images training may use (`ood_train`)."""
        return self.ood_train


def _ood_dataset(kind: str, data_cfg: DataConfig, seed: int, info: DatasetInfo,
                 test: ImageTensorDataset
                 ) -> tuple[ImageTensorDataset, ImageTensorDataset] | tuple[None, None]:
    """The OoD set `kind` as float images at the run's resolution and channel count, in two
    disjoint halves (train, eval) of up to `ood_size` images each."""
    res, c, n = data_cfg.resolution, info.in_channels, data_cfg.ood_size
    if kind == "none":
        return None, None
    if kind == "auto":
        kind = OOD_AUTO[data_cfg.dataset]
    if kind == "noise":   # two independent draws: disjoint with probability one
        x = torch.rand(2 * n, c, res, res, generator=torch.Generator().manual_seed(mix_seed(seed, 2)))
    elif kind == "permuted":
        k = min(2 * n, len(test))
        gen = torch.Generator().manual_seed(mix_seed(seed, 3))
        x, _ = test.with_augment(False).fetch(torch.randperm(len(test), generator=gen)[:k])
        perms = torch.rand(k, res * res, generator=gen).argsort(dim=1)   # one permutation per image
        flat = x.reshape(k, c, res * res)
        x = flat.gather(2, perms[:, None, :].expand(-1, c, -1)).reshape(k, c, res, res)
    elif kind in ("svhn", "cifar10"):
        if kind == data_cfg.dataset:
            raise ValueError(f"data.ood: {kind!r} is the in-distribution set; choose one of "
                             f"{', '.join(o for o in OOD_CHOICES if o != kind)}")
        images, _ = _load_torchvision(kind, data_cfg.root, "test", data_cfg.download, ood=True)
        gen = torch.Generator().manual_seed(mix_seed(seed, 4))
        pick = torch.randperm(len(images), generator=gen)[: min(2 * n, len(images))]
        x = _resize(_match_channels(_float_images(images[pick]), c), res)
    else:
        raise ValueError(f"data.ood: unknown OoD set {kind!r}; choose one of "
                         f"{', '.join(OOD_CHOICES)}")
    if len(x) < 2:
        raise ValueError(f"data.ood: {kind!r} gives {len(x)} image(s), too few to hold training "
                         "and evaluation OoD images apart; choose another OoD set")
    half = min(n, len(x) // 2)   # a pool short of 2 * ood_size is split in halves
    labels = torch.full((len(x),), -1, dtype=torch.int64)
    return (ImageTensorDataset(x[:half].contiguous(), labels[:half], res),
            ImageTensorDataset(x[half:half + min(n, len(x) - half)].contiguous(),
                               labels[half:half + min(n, len(x) - half)], res))


def load_data(data_cfg: DataConfig, seed: int) -> DataBundle:
    """Load `data_cfg.dataset` and split it deterministically under `seed`.

    The validation split comes out of the training set (a numpy permutation drawn from
    `seed`), so that search never looks at the test set; `train_limit` then caps what is
    left for training, `test_limit` caps the test set (its first images, the same for
    every seed).
    """
    name = data_cfg.dataset
    info = dataset_info(data_cfg)
    res = int(data_cfg.resolution)
    images, labels = _load_split(data_cfg, "train")
    test_images, test_labels = _load_split(data_cfg, "test")

    n = len(images)
    if data_cfg.val_size >= n:
        raise ValueError(f"data.val_size: {data_cfg.val_size} leaves no training images ({name} "
                         f"has {n} training images); choose at most {n - 1}")
    perm = torch.from_numpy(np.random.default_rng(seed).permutation(n))
    val_idx, train_idx = perm[: data_cfg.val_size], perm[data_cfg.val_size:]
    if data_cfg.train_limit:
        train_idx = train_idx[: data_cfg.train_limit]
    if data_cfg.test_limit:
        test_images = test_images[: data_cfg.test_limit]
        test_labels = test_labels[: data_cfg.test_limit]

    augment = bool(data_cfg.augment) and name in CIFAR_LIKE
    if data_cfg.augment and not augment:
        log.info("data.augment: no crop/flip augmentation for %s (CIFAR-style only)", name)
    train = ImageTensorDataset(images[train_idx], labels[train_idx], res, augment=augment,
                               seed=mix_seed(seed, 1))
    val = ImageTensorDataset(images[val_idx], labels[val_idx], res)
    test = ImageTensorDataset(test_images, test_labels, res)
    ood_train, ood_eval = _ood_dataset(data_cfg.ood, data_cfg, seed, info, test)
    return DataBundle(train=train, train_plain=train.with_augment(False), val=val, test=test,
                      ood_train=ood_train, ood_eval=ood_eval, info=info, resolution=res,
                      name=name)


# --------------------------------------------------------------------------------------
# Loaders and fixed tensors
# --------------------------------------------------------------------------------------
class _Batches(Dataset):
    """Item k is batch k, fetched in one step: a DataLoader over this needs no collation."""

    def __init__(self, dataset: ImageTensorDataset, batches: list[torch.Tensor], key: int):
        self.dataset, self.batches, self.key = dataset, batches, key

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.dataset.fetch(self.batches[k], key=mix_seed(self.key, k))


RESIDENT_SHARE = 0.25   # device-resident images may take at most this share of free memory


def resident(dataset: Dataset, device: torch.device) -> Dataset:
    """On CUDA, the same dataset with its images in device memory when they fit; else unchanged.

    The fastest CIFAR-10 trainers keep the whole set on the GPU: a batch is then
    gathered, converted and augmented there, with no host copy per step. Order
    and augmentation offsets still come from the same CPU generators (seeded
    by the same keys), so the batches are those of a CPU run.
    """
    if torch.device(device).type != "cuda" or not isinstance(dataset, ImageTensorDataset):
        return dataset
    need = dataset.images.nbytes + dataset.labels.nbytes
    free, _ = torch.cuda.mem_get_info(device)
    if need > RESIDENT_SHARE * free:
        log.info("data: %.0f MB of images do not fit in %.0f%% of the free device memory; "
                 "batches are copied per step", need / 2**20, 100 * RESIDENT_SHARE)
        return dataset
    return ImageTensorDataset(dataset.images.to(device), dataset.labels.to(device),
                              dataset.resolution, dataset.augment, dataset.seed, dataset.padding)


def make_loader(dataset: Dataset, batch_size: int, shuffle: bool, seed: int, num_workers: int = 0,
                drop_last: bool = False, rank: int = 0, world_size: int = 1) -> DataLoader:
    """Batches in an order (and with augmentations) fixed by `seed`, whatever `num_workers`.

    With `world_size` > 1 every rank draws the same permutation and keeps its own stride;
    the remainder (< world_size images) is dropped so that all ranks run the same steps.
    Device-resident images (`resident`) are fetched in this process (num_workers 0).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size: {batch_size} is not allowed; use at least 1")
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is outside world size {world_size}")
    gen = torch.Generator().manual_seed(mix_seed(seed, 0))
    n = len(dataset)
    order = torch.randperm(n, generator=gen) if shuffle else torch.arange(n)
    if world_size > 1:
        order = order[: n - n % world_size][rank::world_size]
    batches = list(order.split(batch_size))
    if drop_last and batches and len(batches[-1]) < batch_size:
        batches.pop()
    if isinstance(dataset, ImageTensorDataset):
        workers = 0 if dataset.images.is_cuda else num_workers   # CUDA tensors stay in this process
        return DataLoader(_Batches(dataset, batches, mix_seed(seed, rank, 1)), batch_size=None,
                          shuffle=False, num_workers=workers)
    return DataLoader(dataset, batch_sampler=[b.tolist() for b in batches], num_workers=num_workers,
                      generator=torch.Generator().manual_seed(mix_seed(seed, rank, 2)))


def stack(dataset: Dataset, n: int | None = None,
          generator_seed: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, y) tensors of the first `n` items, or of a seeded random `n` when `generator_seed`
    is given; n beyond the dataset's size (or None) takes all. For fixed on-device sets."""
    size = len(dataset)
    k = size if n is None else max(0, min(int(n), size))
    if generator_seed is None:
        idx = torch.arange(k)
    else:
        idx = torch.randperm(size, generator=torch.Generator().manual_seed(int(generator_seed)))[:k]
    if isinstance(dataset, ImageTensorDataset):
        return dataset.fetch(idx, key=mix_seed(dataset.seed, size, k))
    if k == 0:
        raise ValueError("stack: the dataset is empty")
    items = [dataset[int(i)] for i in idx]
    return (torch.stack([torch.as_tensor(x) for x, _ in items]),
            torch.as_tensor([int(y) for _, y in items], dtype=torch.int64))


__all__ = ["DATASETS", "DATASET_INFO", "DataBundle", "DatasetEntry", "DatasetInfo",
           "ImageTensorDataset", "dataset_info", "load_data", "make_loader", "resident", "stack"]
