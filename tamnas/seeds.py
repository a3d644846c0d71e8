"""One way to mix integers into a seed, for every stream that needs one of its own."""

from __future__ import annotations

import numpy as np


def mix_seed(*parts: int) -> int:
    """A well-spread 64-bit seed from integers (seed, epoch, batch number, ...): the same on
    every run and platform, and far apart for neighbouring inputs."""
    seq = np.random.SeedSequence([int(p) % 2**63 for p in parts])
    return int(seq.generate_state(1, np.uint64)[0])


__all__ = ["mix_seed"]
