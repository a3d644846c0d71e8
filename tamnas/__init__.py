"""tamnas: robust, tiny neural architecture search."""

from __future__ import annotations

__version__ = "0.1.0"

from tamnas.config import Config, load_config


def build_space(cfg: Config):
    """The SearchSpace a config names, sized for its dataset."""
    from tamnas.supernets import build_space as _build

    return _build(cfg)


def load_arch(path, weights: bool = True, device: str = "cpu"):
    """An exported arch JSON back as a ready nn.Module (eval mode), weights loaded when asked."""
    from tamnas.analysis.export import load_arch as _load

    return _load(path, weights=weights, device=device)


__all__ = ["Config", "__version__", "build_space", "load_arch", "load_config"]
