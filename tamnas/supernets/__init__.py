"""Search spaces, registered by name (the names presets use in `space.name`)."""

from __future__ import annotations

from tamnas.supernets.base import Arch, Gene, SearchSpace, SubnetView, Supernet
from tamnas.supernets.registry import SPACES, register_space


def _load_builtin() -> None:
    # Imported lazily so that `import tamnas` stays light.
    import tamnas.supernets.darts
    import tamnas.supernets.shufflenet  # noqa: F401


def space_names() -> list[str]:
    """Every registered space (the built-in ones imported first)."""
    _load_builtin()
    return sorted(SPACES)


def build_space(cfg) -> SearchSpace:
    """Build the space a Config names, sized for its dataset."""
    from tamnas.data import dataset_info

    _load_builtin()
    if cfg.space.name not in SPACES:
        raise ValueError(f"space.name: unknown space {cfg.space.name!r}; choose one of "
                         f"{', '.join(sorted(SPACES))}")
    info = dataset_info(cfg.data)
    return SPACES[cfg.space.name](cfg.space, num_classes=info.num_classes,
                                  in_channels=info.in_channels, resolution=cfg.data.resolution,
                                  mean=info.mean, std=info.std)


__all__ = [
    "SPACES",
    "Arch",
    "Gene",
    "SearchSpace",
    "SubnetView",
    "Supernet",
    "build_space",
    "register_space",
    "space_names",
]
