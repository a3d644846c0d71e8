"""The DARTS cell search space (papers 000-003), registered as `darts`."""

from __future__ import annotations

from tamnas.supernets.darts.layout import Layout
from tamnas.supernets.darts.ops import PRIMITIVES
from tamnas.supernets.darts.space import DartsSpace
from tamnas.supernets.darts.standalone import DartsNetwork
from tamnas.supernets.darts.supernet import DartsSupernet

__all__ = ["PRIMITIVES", "DartsNetwork", "DartsSpace", "DartsSupernet", "Layout"]
