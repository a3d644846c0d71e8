"""tamnas: robust, tiny neural architecture search."""

from __future__ import annotations

__version__ = "0.1.0"

from tamnas.config import Config, load_config  # noqa: E402


def build_space(cfg: Config):
    """The SearchSpace a config names (DESIGN.md section 4)."""
    from tamnas.supernets import build_space as _build

    return _build(cfg)


__all__ = ["Config", "load_config", "build_space", "__version__"]
