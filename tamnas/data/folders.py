"""Your own images: DIR/train/CLASS/* and optionally DIR/test/CLASS/*."""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from tamnas.data.sources import DatasetInfo
from tamnas.data.tensors import resize

log = logging.getLogger(__name__)


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
    stray = [p for p in sorted(folder.rglob("*"))
             if (p.is_file() or p.is_symlink()) and not p.name.lower().endswith(IMG_EXTENSIONS)]
    if stray:
        shown = ", ".join(str(p.relative_to(folder)) for p in stray[:5])
        more = f" and {len(stray) - 5} more" if len(stray) > 5 else ""
        raise ValueError(f"imagefolder: {len(stray)} file(s) in {folder} are not images "
                         f"({shown}{more}); move them out of the image folder")
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
        with warnings.catch_warnings():
            # Pillow only warns between its limit and twice it; a bomb is refused either way.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                im.load()
                if im.mode in _16_BIT_MODES:           # 16-bit greyscale: scale, do not clip
                    arr = np.asarray(im, dtype=np.float64) / 65535.0 * 255.0
                    arr = np.clip(np.rint(arr), 0, 255).astype(np.uint8)[None]
                elif im.mode in _GREY_MODES:
                    arr = np.asarray(im.convert("L"))[None]
                else:
                    arr = np.asarray(im.convert("RGB")).transpose(2, 0, 1)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ValueError(f"imagefolder: {path} claims more pixels than Pillow opens safely "
                         f"({str(e).split('.')[0]}); a decompression bomb or a damaged file: "
                         "delete or replace it") from None
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise ValueError(f"imagefolder: cannot read {path} as an image ({type(e).__name__}); "
                         f"delete or replace the file") from None
    x = torch.from_numpy(np.array(arr, dtype=np.float32)).div_(255.0).unsqueeze(0)
    return resize(x, resolution).mul_(255.0).round_().to(torch.uint8)[0]


def _read_folder(folder: Path, resolution: int
                 ) -> tuple[list[str], torch.Tensor, torch.Tensor, tuple[str, ...]]:
    classes, samples = _folder_samples(folder)
    images = [_read_image(p, resolution) for p, _ in samples]
    if any(x.shape[0] == 3 for x in images):           # one RGB file makes the set RGB
        images = [x.expand(3, -1, -1) for x in images]
    files = tuple(Path(p).relative_to(folder.parent).as_posix() for p, _ in samples)
    return (classes, torch.stack(images).contiguous(),
            torch.tensor([y for _, y in samples], dtype=torch.int64), files)


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
    train_files: tuple[str, ...] = ()      # relative to the folder, in the order of the images
    test_files: tuple[str, ...] = ()


_FOLDER_CACHE: dict[tuple, _FolderSet] = {}


def _folder_key(root: Path, resolution: int) -> tuple:
    """What a folder's tensors depend on: every file's path, size and modification time."""
    stats = tuple((str(p), st.st_size, st.st_mtime_ns)
                  for p in sorted(root.rglob("*")) if p.is_file() for st in [p.stat()])
    return (str(root), int(resolution), stats)


def image_folder(root: str | Path, resolution: int) -> _FolderSet:
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
    classes, x, y, files = _read_folder(train_dir, resolution)
    if test_dir.is_dir():
        test_classes, tx, ty, test_files = _read_folder(test_dir, resolution)
        if test_classes != classes:
            only_train = sorted(set(classes) - set(test_classes))
            only_test = sorted(set(test_classes) - set(classes))
            raise ValueError(f"imagefolder: the class folders of {train_dir} and {test_dir} differ "
                             f"(only in train: {', '.join(only_train) or '-'}; only in test: "
                             f"{', '.join(only_test) or '-'}); give both the same classes")
        if tx.shape[1] != x.shape[1]:                   # one RGB split makes both RGB
            x, tx = x.expand(-1, 3, -1, -1).contiguous(), tx.expand(-1, 3, -1, -1).contiguous()
    if len(classes) < 2:
        raise ValueError(f"imagefolder: {train_dir} has one class folder ({classes[0]}); a "
                         "classifier needs two or more classes")
    if not test_dir.is_dir():
        if int(np.bincount(y.numpy()).min()) < 2:
            raise ValueError(f"imagefolder: without {test_dir} every class of {train_dir} needs "
                             f"two or more images to split off test images; add images or a "
                             f"test/ folder")
        tr, te = _stratified_test(y.numpy(), FOLDER_TEST_FRACTION, FOLDER_SPLIT_SEED)
        x, tx, y, ty = x[tr], x[te], y[tr], y[te]
        files, test_files = tuple(files[i] for i in tr), tuple(files[i] for i in te)
    pixels = x.double().div_(255.0).transpose(0, 1).reshape(x.shape[1], -1)
    mean = tuple(float(v) for v in pixels.mean(1))
    std = tuple(max(float(v), 1e-3) for v in pixels.std(1))       # a blank channel stays finite
    out = _FolderSet(DatasetInfo(len(classes), int(x.shape[1]), mean, std, tuple(classes)),
                     (x, y), (tx, ty), files, test_files)
    _FOLDER_CACHE.clear()                              # hold one folder's tensors, not every one
    _FOLDER_CACHE[key] = out
    return out
