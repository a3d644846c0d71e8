"""Opening a shared arch JSON and its weights safely: the weights file beside the JSON, read
with `weights_only=True` only, and sizes checked before a space or network is built.

Arch JSON and weights are passed around like pretrained weights, so nothing
in them may run code, reach outside the JSON's folder or exhaust memory.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from tamnas.files import MEMORY_SHARE, load_checkpoint, machine_memory, safe_torch_load

WEIGHT_KIND = "standalone_weights"   # retrain's model.pt; exports are plain state dicts
OLD_EXPORT_KIND = "standalone"       # exports of earlier versions: tagged, refused
MAX_CONFIG_INT = 1 << 16             # no space tamnas builds has a count or width above this
WEIGHT_COPIES = 2                    # the network's weights and the state dict loaded into it


def check_config_sizes(path: Path, config: Mapping) -> None:
    """Refuse counts and widths no real space has, before a space is built from them (building
    takes time and memory in proportion to them)."""
    for key, value in config.items():
        values = value if isinstance(value, list) else [value]
        ints = [v for v in values if isinstance(v, int) and not isinstance(v, bool)]
        total = sum(abs(v) for v in ints)
        if total > MAX_CONFIG_INT:
            raise ValueError(f"{path}: space_config.{key} = {str(value)[:60]} is larger than any "
                             f"space tamnas builds (limit {MAX_CONFIG_INT}); the file is damaged "
                             "or was not written by tamnas")


def check_net_memory(path: str | Path, space, arch, available: int | None = None) -> None:
    """Refuse an arch whose weights would not fit in memory, with the estimate."""
    available = machine_memory() if available is None else available
    try:
        need = int(space.params(arch)) * 4 * WEIGHT_COPIES
    except NotImplementedError:  # a space without a parameter table: nothing to estimate from
        return
    if available > 0 and need > MEMORY_SHARE * available:
        raise ValueError(f"{path}: the network it describes needs about {need / 2**30:,.1f} GiB "
                         f"of memory, more than this machine's {available / 2**30:,.1f} GiB "
                         "allow; open it on a larger machine")


def weights_beside(path: Path, name: Any) -> Path:
    """The weights file an arch JSON names: a plain file name in the JSON's own folder.

    A path, `..` or a link leading elsewhere is refused: a shared JSON must not
    make `load_arch` read a file the user did not hand over with it.
    """
    if name is None:
        return path.parent / f"{path.stem}.pt"
    if not isinstance(name, str) or not name or name in (".", "..") \
            or any(c in name for c in "/\\\0") or Path(name).is_absolute():
        raise ValueError(f"{path}: 'weights' must name a file beside the JSON, got "
                         f"{str(name)[:80]!r}; put the weights file next to it and give its name")
    weights = path.parent / name
    if weights.is_symlink() and weights.resolve().parent != path.parent.resolve():
        raise ValueError(f"{path}: weights file {weights} is a link out of the JSON's folder; "
                         "copy the file there instead")
    return weights


def read_weights(path: Path) -> Mapping[str, torch.Tensor]:
    """State dict of an export (a plain state dict) or of a retrained net's tagged
    `standalone_weights` checkpoint; nothing is ever unpickled."""
    fix = "export it again (`tamnas export`)"
    state = safe_torch_load(path, f"weights file {path}", fix)
    if isinstance(state, Mapping) and str(state.get("format", "")).startswith("tamnas-checkpoint"):
        if state.get("kind") == OLD_EXPORT_KIND:
            raise ValueError(f"weights file {path} is an export of an earlier tamnas version "
                             f"(a tagged checkpoint); {fix}")
        state = load_checkpoint(path, kind=WEIGHT_KIND, map_location="cpu",
                                fix="retrain it or export it again")
    if not isinstance(state, Mapping) or not all(torch.is_tensor(v) for v in state.values()):
        raise ValueError(f"weights file {path} does not hold a state dict of tensors; {fix}")
    return state


__all__ = ["MAX_CONFIG_INT", "OLD_EXPORT_KIND", "WEIGHT_KIND", "check_config_sizes",
           "check_net_memory", "read_weights", "weights_beside"]
