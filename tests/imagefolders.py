"""A small folder of a user's own images, as a new user would bring it: four classes of a few
dozen images each, RGB and greyscale, mixed sizes, PNG and JPEG, with train/ and test/."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = ("checks", "disc", "hstripes", "vstripes")


def _pattern(name: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """One size x size image in [0, 1] of class `name`: a shape with random phase and noise."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    period = rng.uniform(0.25, 0.4)
    phase = rng.uniform(0, 1)
    if name == "hstripes":
        a = ((yy / period + phase) % 1.0) < 0.5
    elif name == "vstripes":
        a = ((xx / period + phase) % 1.0) < 0.5
    elif name == "checks":
        a = (((yy / period + phase) % 1.0) < 0.5) ^ (((xx / period + phase) % 1.0) < 0.5)
    else:
        cy, cx, r = rng.uniform(0.35, 0.65), rng.uniform(0.35, 0.65), rng.uniform(0.2, 0.35)
        a = (yy - cy) ** 2 + (xx - cx) ** 2 < r ** 2
    return np.clip(0.15 + 0.7 * a + rng.normal(0, 0.08, a.shape), 0, 1)


def write_folder(root: Path, train: int = 40, test: int = 10, seed: int = 0) -> Path:
    """`root`/train/CLASS/ and `root`/test/CLASS/: every third image greyscale, every other
    one JPEG, sizes 20-48 pixels a side (not square), colours drawn per image."""
    rng = np.random.default_rng(seed)
    for split, n in (("train", train), ("test", test)):
        for name in CLASSES:
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                h, w = int(rng.integers(20, 49)), int(rng.integers(20, 49))
                a = _pattern(name, max(h, w), rng)[:h, :w]
                if i % 3 == 0:
                    im = Image.fromarray((a * 255).round().astype(np.uint8), mode="L")
                else:
                    tint = rng.uniform(0.4, 1.0, 3)
                    rgb = (a[..., None] * tint * 255).round().astype(np.uint8)
                    im = Image.fromarray(rgb, mode="RGB")
                suffix = ".jpg" if i % 2 else ".png"
                im.save(folder / f"{name}_{i:03d}{suffix}", quality=90) if suffix == ".jpg" \
                    else im.save(folder / f"{name}_{i:03d}{suffix}")
    return root


if __name__ == "__main__":  # writes the README's example folder: python tests/imagefolders.py DIR
    import sys

    print(write_folder(Path(sys.argv[1])))
