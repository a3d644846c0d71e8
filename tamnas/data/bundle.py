"""The splits of one run (train, validation, test), its out-of-distribution sets, the bundle."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch.utils.data import Dataset

from tamnas.data.registry import CIFAR_LIKE, OOD_AUTO, dataset_info, load_split
from tamnas.data.sources import DatasetInfo, load_torchvision
from tamnas.data.tensors import ImageTensorDataset, float_images, match_channels, resize
from tamnas.seeds import mix_seed

if TYPE_CHECKING:
    from tamnas.config import DataConfig

log = logging.getLogger(__name__)


OOD_CHOICES = ("auto", "none", "svhn", "cifar10", "noise", "permuted")


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
                 train: ImageTensorDataset
                 ) -> tuple[ImageTensorDataset, ImageTensorDataset] | tuple[None, None]:
    """The OoD set `kind` as float images at the run's resolution and channel count, in two
    disjoint halves (train, eval) of up to `ood_size` images each. Permuted pixels come from
    the training split, so no test image ever shapes a search or its OoD score."""
    res, c, n = data_cfg.resolution, info.in_channels, data_cfg.ood_size
    if kind == "none":
        return None, None
    if kind == "auto":
        kind = OOD_AUTO[data_cfg.dataset]
    if kind == "noise":   # two independent draws: disjoint with probability one
        x = torch.rand(2 * n, c, res, res, generator=torch.Generator().manual_seed(mix_seed(seed, 2)))
    elif kind == "permuted":
        k = min(2 * n, len(train))
        gen = torch.Generator().manual_seed(mix_seed(seed, 3))
        x, _ = train.with_augment(False).fetch(torch.randperm(len(train), generator=gen)[:k])
        perms = torch.rand(k, res * res, generator=gen).argsort(dim=1)   # one permutation per image
        flat = x.reshape(k, c, res * res)
        x = flat.gather(2, perms[:, None, :].expand(-1, c, -1)).reshape(k, c, res, res)
    elif kind in ("svhn", "cifar10"):
        if kind == data_cfg.dataset:
            raise ValueError(f"data.ood: {kind!r} is the in-distribution set; choose one of "
                             f"{', '.join(o for o in OOD_CHOICES if o != kind)}")
        images, _ = load_torchvision(kind, data_cfg.root, "test", data_cfg.download, ood=True)
        gen = torch.Generator().manual_seed(mix_seed(seed, 4))
        pick = torch.randperm(len(images), generator=gen)[: min(2 * n, len(images))]
        x = resize(match_channels(float_images(images[pick]), c), res)
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


@dataclass(frozen=True)
class Splits:
    """A dataset's training and test images and labels as read, before any split is made."""

    train: tuple[torch.Tensor, torch.Tensor]
    test: tuple[torch.Tensor, torch.Tensor]


def load_splits(data_cfg: DataConfig) -> Splits:
    """Read the training and test images once (their counts fit the image counts of a run)."""
    return Splits(load_split(data_cfg, "train"), load_split(data_cfg, "test"))


def load_data(data_cfg: DataConfig, seed: int, splits: Splits | None = None) -> DataBundle:
    """Load `data_cfg.dataset` and split it deterministically under `seed`.

    The validation split comes out of the training set (a numpy permutation drawn from
    `seed`), so that search never looks at the test set; `train_limit` then caps what is
    left for training, `test_limit` caps the test set (its first images, the same for
    every seed).
    """
    name = data_cfg.dataset
    info = dataset_info(data_cfg)
    res = int(data_cfg.resolution)
    splits = splits if splits is not None else load_splits(data_cfg)
    (images, labels), (test_images, test_labels) = splits.train, splits.test

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
    ood_train, ood_eval = _ood_dataset(data_cfg.ood, data_cfg, seed, info, train)
    return DataBundle(train=train, train_plain=train.with_augment(False), val=val, test=test,
                      ood_train=ood_train, ood_eval=ood_eval, info=info, resolution=res,
                      name=name)
