"""Datasets, splits, loaders and out-of-distribution sets; models receive [0, 1] images."""

from __future__ import annotations

import logging
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

if TYPE_CHECKING:
    from tamnas.config import DataConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DatasetInfo:
    num_classes: int
    in_channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]


DATASET_INFO = {
    "digits": DatasetInfo(10, 1, (0.3,), (0.38,)),
    "cifar10": DatasetInfo(10, 3, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": DatasetInfo(100, 3, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "svhn": DatasetInfo(10, 3, (0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970)),
}


def dataset_info(name: str) -> DatasetInfo:
    if name not in DATASET_INFO:
        raise ValueError(f"data.dataset: unknown dataset {name!r}; choose one of "
                         f"{', '.join(DATASET_INFO)}")
    return DATASET_INFO[name]


CIFAR_LIKE = ("cifar10", "cifar100")       # the sets that get pad-4 crop + flip when data.augment
OOD_AUTO = {"cifar10": "svhn", "cifar100": "svhn", "svhn": "cifar10", "digits": "noise"}
OOD_CHOICES = ("auto", "none", "svhn", "cifar10", "noise", "permuted")
DIGITS_TEST_FRACTION = 0.2
DIGITS_SPLIT_SEED = 0                      # fixed: the digits test set ignores the run seed
CROP_PADDING = 4
_GRAY = (0.299, 0.587, 0.114)              # ITU-R 601 luma, for RGB -> grayscale OoD sets


# --------------------------------------------------------------------------------------
# The in-memory dataset every split is made of
# --------------------------------------------------------------------------------------
def _mix(*ints: int) -> int:
    """A well-spread 64-bit seed from a tuple of ints (seed, batch number, ...)."""
    seq = np.random.SeedSequence([int(i) % 2**63 for i in ints])
    return int(seq.generate_state(1, np.uint64)[0])


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
        x, y = self.fetch([i], key=_mix(self.seed, i))
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


def _load_split(name: str, root: str, split: str, download: bool, resolution: int,
                ood: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    if name == "digits":
        return _load_digits(split, resolution)
    return _load_torchvision(name, root, split, download, ood=ood)


# --------------------------------------------------------------------------------------
# Splits, OoD sets and the bundle
# --------------------------------------------------------------------------------------
@dataclass
class DataBundle:
    """Every split one run needs; `val` is held out of the training set for search scores."""

    train: Dataset            # augmented when data.augment and the set is CIFAR-like
    train_plain: Dataset      # the same images, never augmented (BatchNorm recalibration)
    val: Dataset              # held-out training images, never augmented
    test: Dataset
    ood: Dataset | None       # yields (image, -1)
    info: DatasetInfo
    resolution: int
    name: str = ""


def _ood_dataset(kind: str, data_cfg: DataConfig, seed: int, info: DatasetInfo,
                 test: ImageTensorDataset) -> ImageTensorDataset | None:
    """The OoD set `kind` as float images at the run's resolution and channel count."""
    res, c, n = data_cfg.resolution, info.in_channels, data_cfg.ood_size
    if kind == "none":
        return None
    if kind == "auto":
        kind = OOD_AUTO[data_cfg.dataset]
    if kind == "noise":
        x = torch.rand(n, c, res, res, generator=torch.Generator().manual_seed(_mix(seed, 2)))
    elif kind == "permuted":
        k = min(n, len(test))
        gen = torch.Generator().manual_seed(_mix(seed, 3))
        x, _ = test.with_augment(False).fetch(torch.randperm(len(test), generator=gen)[:k])
        perms = torch.rand(k, res * res, generator=gen).argsort(dim=1)   # one permutation per image
        flat = x.reshape(k, c, res * res)
        x = flat.gather(2, perms[:, None, :].expand(-1, c, -1)).reshape(k, c, res, res)
    elif kind in ("svhn", "cifar10"):
        if kind == data_cfg.dataset:
            raise ValueError(f"data.ood: {kind!r} is the in-distribution set; choose one of "
                             f"{', '.join(o for o in OOD_CHOICES if o != kind)}")
        images, _ = _load_torchvision(kind, data_cfg.root, "test", data_cfg.download, ood=True)
        gen = torch.Generator().manual_seed(_mix(seed, 4))
        pick = torch.randperm(len(images), generator=gen)[: min(n, len(images))]
        x = _resize(_match_channels(_float_images(images[pick]), c), res)
    else:
        raise ValueError(f"data.ood: unknown OoD set {kind!r}; choose one of "
                         f"{', '.join(OOD_CHOICES)}")
    x = x.contiguous()
    return ImageTensorDataset(x, torch.full((len(x),), -1, dtype=torch.int64), res)


def load_data(data_cfg: DataConfig, seed: int) -> DataBundle:
    """Load `data_cfg.dataset` and split it deterministically under `seed`.

    The validation split comes out of the training set (a numpy permutation drawn from
    `seed`), so that search never looks at the test set; `train_limit` then caps what is
    left for training, `test_limit` caps the test set (its first images, the same for
    every seed).
    """
    name = data_cfg.dataset
    info = dataset_info(name)
    res = int(data_cfg.resolution)
    images, labels = _load_split(name, data_cfg.root, "train", data_cfg.download, res)
    test_images, test_labels = _load_split(name, data_cfg.root, "test", data_cfg.download, res)

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
                               seed=_mix(seed, 1))
    val = ImageTensorDataset(images[val_idx], labels[val_idx], res)
    test = ImageTensorDataset(test_images, test_labels, res)
    ood = _ood_dataset(data_cfg.ood, data_cfg, seed, info, test)
    return DataBundle(train=train, train_plain=train.with_augment(False), val=val, test=test,
                      ood=ood, info=info, resolution=res, name=name)


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
        return self.dataset.fetch(self.batches[k], key=_mix(self.key, k))


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
    gen = torch.Generator().manual_seed(_mix(seed, 0))
    n = len(dataset)
    order = torch.randperm(n, generator=gen) if shuffle else torch.arange(n)
    if world_size > 1:
        order = order[: n - n % world_size][rank::world_size]
    batches = list(order.split(batch_size))
    if drop_last and batches and len(batches[-1]) < batch_size:
        batches.pop()
    if isinstance(dataset, ImageTensorDataset):
        workers = 0 if dataset.images.is_cuda else num_workers   # CUDA tensors stay in this process
        return DataLoader(_Batches(dataset, batches, _mix(seed, rank, 1)), batch_size=None,
                          shuffle=False, num_workers=workers)
    return DataLoader(dataset, batch_sampler=[b.tolist() for b in batches], num_workers=num_workers,
                      generator=torch.Generator().manual_seed(_mix(seed, rank, 2)))


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
        return dataset.fetch(idx, key=_mix(dataset.seed, size, k))
    if k == 0:
        raise ValueError("stack: the dataset is empty")
    items = [dataset[int(i)] for i in idx]
    return (torch.stack([torch.as_tensor(x) for x, _ in items]),
            torch.as_tensor([int(y) for _, y in items], dtype=torch.int64))


__all__ = ["DATASET_INFO", "DataBundle", "DatasetInfo", "ImageTensorDataset", "dataset_info",
           "load_data", "make_loader", "resident", "stack"]
