"""Every name `data.dataset` accepts, with how to load it and where its statistics come from."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from tamnas.data.folders import image_folder
from tamnas.data.sources import (
    DATASET_INFO,
    DatasetInfo,
    load_digits,
    load_mnist_like,
    load_torchvision,
)

if TYPE_CHECKING:
    from tamnas.config import DataConfig

log = logging.getLogger(__name__)


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
    return DatasetEntry(lambda c, split: load_torchvision(name, c.root, split, c.download),
                        _fixed(name), **kw)


def _mnist_entry(name: str) -> DatasetEntry:
    return DatasetEntry(lambda c, split: load_mnist_like(name, c.root, split, c.download),
                        _fixed(name))


def _folder_split(c: DataConfig, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    return getattr(image_folder(c.root, c.resolution), split)


DATASETS: dict[str, DatasetEntry] = {
    "digits": DatasetEntry(lambda c, split: load_digits(split, c.resolution), _fixed("digits")),
    "fashion-mnist": _mnist_entry("fashion-mnist"),
    "mnist": _mnist_entry("mnist"),
    "cifar10": _torchvision_entry("cifar10", crop_flip=True, ood_auto="svhn"),
    "cifar100": _torchvision_entry("cifar100", crop_flip=True, ood_auto="svhn"),
    "svhn": _torchvision_entry("svhn", ood_auto="cifar10"),
    "imagefolder": DatasetEntry(_folder_split, lambda c: image_folder(c.root, c.resolution).info),
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


def load_split(data_cfg: DataConfig, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    return _entry(data_cfg.dataset).load(data_cfg, split)
