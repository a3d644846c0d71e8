"""Datasets, splits, loaders and out-of-distribution sets; models receive [0, 1] images."""

from __future__ import annotations

from dataclasses import dataclass


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
