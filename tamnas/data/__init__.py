"""Datasets, splits, loaders and out-of-distribution sets; models receive [0, 1] images.

`sources` reads the sets on disk, `folders` a user's image folders, `registry`
names them for `data.dataset`, `bundle` makes a run's splits and OoD sets, and
`tensors` holds the in-memory dataset and its seeded loaders.
"""

from __future__ import annotations

from tamnas.data.bundle import OOD_CHOICES, DataBundle, Splits, load_data, load_splits
from tamnas.data.folders import FOLDER_TEST_FRACTION
from tamnas.data.registry import DATASETS, DatasetEntry, dataset_info
from tamnas.data.sources import DATASET_INFO, DatasetInfo, load_torchvision
from tamnas.data.tensors import ImageTensorDataset, make_loader, resident, stack

__all__ = ["DATASETS", "DATASET_INFO", "FOLDER_TEST_FRACTION", "OOD_CHOICES", "DataBundle",
           "DatasetEntry", "DatasetInfo", "ImageTensorDataset", "Splits", "dataset_info", "load_data",
           "load_splits",
           "load_torchvision", "make_loader", "resident", "stack"]
