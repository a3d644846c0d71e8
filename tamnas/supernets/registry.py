"""The space registry: names (what presets put in `space.name`) to SearchSpace classes.

Kept apart from `tamnas.supernets`, whose `build_space` imports the built-in
spaces, so that a space module registering itself imports nothing that
imports it back.
"""

from __future__ import annotations

from collections.abc import Callable

from tamnas.supernets.base import SearchSpace

SPACES: dict[str, Callable[..., SearchSpace]] = {}


def register_space(name: str) -> Callable:
    """Class decorator: make a space buildable by `build_space` under `name`."""

    def wrap(cls):
        SPACES[name] = cls
        cls.name = name
        return cls

    return wrap


__all__ = ["SPACES", "register_space"]
