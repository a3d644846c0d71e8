"""TAM-NAS ShuffleNetV2 search space (paper 004), registered as "shufflenet"."""

from __future__ import annotations

from tamnas.supernets.shufflenet.layout import BLOCKS, ShuffleNetLayout
from tamnas.supernets.shufflenet.space import ShuffleNetSpace
from tamnas.supernets.shufflenet.standalone import build_standalone
from tamnas.supernets.shufflenet.supernet import ShuffleNetSupernet

__all__ = ["BLOCKS", "ShuffleNetLayout", "ShuffleNetSpace", "ShuffleNetSupernet", "build_standalone"]
