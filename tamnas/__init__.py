"""tamnas: robust, tiny neural architecture search."""

from __future__ import annotations

from tamnas.config import Config
from tamnas.version import __version__


def load_config(source="quickstart", overrides=None, extra_files=None) -> Config:
    """A preset (or TOML path) with `--config` files and `section.key` overrides, every key
    checked, registry names included (spaces, strategies, objectives)."""
    from tamnas.checks import check_names
    from tamnas.config import load_config as _load

    return check_names(_load(source, overrides, extra_files))


def build_space(cfg: Config):
    """The SearchSpace a config names, sized for its dataset."""
    from tamnas.supernets import build_space as _build

    return _build(cfg)


def load_arch(path, weights: bool = True, device: str = "cpu"):
    """An exported arch JSON back as a ready nn.Module (eval mode), weights loaded when asked."""
    from tamnas.analysis.export import load_arch as _load

    return _load(path, weights=weights, device=device)


__all__ = ["Config", "__version__", "build_space", "load_arch", "load_config"]
