"""Planning: how many seeds and evaluation images a comparison or a ranking needs.

Tables computed from the noise model of `analysis.noise` (docs/trust.md prints
them through `benchmarks/precision_tables.py`), never typed by hand.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd

from tamnas.analysis import noise


def difference_halfwidth(seed_sd: float, image_var: float, seeds: int, images: int,
                         level: float = noise.LEVEL) -> float:
    """Half-width of the interval of a difference between two archs' seed-mean errors.

    Each arch trained with `seeds` seeds (seed standard deviation `seed_sd` of one net's
    error), both scored on the same `images`; `image_var` is the variance over images of
    the per-image difference of the two archs' seed-mean errors (at most the share of
    images on which two single nets disagree, right vs wrong; `group_difference`'s
    image_se^2 times the images). Variance 2 seed_sd^2 / seeds + image_var / images, with t on
    2 (seeds - 1) degrees of freedom, those of the seed variance estimated from the seeds
    (for planning the conservative end: Welch-Satterthwaite would give more when images
    dominate, but then a wider image set could look worse); NaN with one seed (the seed
    noise cannot be estimated).
    """
    if seeds < 2:
        return math.nan
    var = 2 * seed_sd ** 2 / seeds + image_var / images
    return noise.t_interval(0.0, math.sqrt(var), 2 * (seeds - 1), level)[1]


def precision_table(seed_sd: float, image_var: float, seeds: Sequence[int] = (2, 3, 5, 10),
                    images: Sequence[int] = (500, 1000, 2000, 5000, 10000),
                    level: float = noise.LEVEL) -> pd.DataFrame:
    """`difference_halfwidth` in error points, rows = seeds per arch, columns = images."""
    rows = {s: [100 * difference_halfwidth(seed_sd, image_var, s, n, level) for n in images]
            for s in seeds}
    out = pd.DataFrame.from_dict(rows, orient="index", columns=[f"{n} images" for n in images])
    out.index.name = "seeds"
    return out


def seeds_table(seed_taus: Sequence[float] = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8),
                image_taus: Sequence[float | None] = (None, 0.9, 0.8),
                target: float = noise.READABLE_TAU) -> pd.DataFrame:
    """Seeds needed for a readable ranking, by the tau of two trainings (one seed each) and
    the tau of two image samples (None: image noise left out)."""
    cols = {("no image noise" if it is None else f"image tau {it:.2f}"):
            [noise.seeds_needed(t, 1, it, target) for t in seed_taus] for it in image_taus}
    out = pd.DataFrame(cols, index=pd.Index([f"{t:.2f}" for t in seed_taus], name="seed tau"))
    return out


__all__ = ["difference_halfwidth", "precision_table", "seeds_table"]
