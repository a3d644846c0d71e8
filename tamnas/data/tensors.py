"""The in-memory image dataset every split is made of, and its seeded loaders.

Images live as uint8 (or float) tensors at the run's resolution; a batch is
gathered, converted and augmented in one step, in an order fixed by the seed.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from tamnas.seeds import mix_seed

log = logging.getLogger(__name__)


CROP_PADDING = 4
_GRAY = (0.299, 0.587, 0.114)              # ITU-R 601 luma, for RGB -> grayscale


# --------------------------------------------------------------------------------------
# The in-memory dataset every split is made of
# --------------------------------------------------------------------------------------
def resize(x: torch.Tensor, resolution: int) -> torch.Tensor:
    """Bilinear resize of a float batch to resolution x resolution (antialiased when shrinking)."""
    if x.shape[-2:] == (resolution, resolution):
        return x
    shrink = x.shape[-1] > resolution or x.shape[-2] > resolution
    out = F.interpolate(x, size=(resolution, resolution), mode="bilinear", align_corners=False,
                        antialias=shrink)
    return out.clamp_(0.0, 1.0)


def _random_crop_flip(x: torch.Tensor, gen: torch.Generator, padding: int) -> torch.Tensor:
    """Zero-pad, crop back at a random offset and flip half the images: one vectorised step."""
    b, _c, h, w = x.shape
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
        x = resize(x, self.resolution)
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


def float_images(x: torch.Tensor) -> torch.Tensor:
    return x.float().div(255.0) if x.dtype == torch.uint8 else x.float()


def match_channels(x: torch.Tensor, channels: int) -> torch.Tensor:
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
