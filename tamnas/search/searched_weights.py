"""The weights an MGDA search trained, named by a fingerprint of their tensors.

`search/supernet.pt` holds the bi-level search's weights, `search/finetuned.pt`
the same after the derived paths' warm start; archive rows scored on either
carry its fingerprint, so a score is only ever read back on its own weights.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from tamnas.files import load_checkpoint

SEARCHED_WEIGHTS = "supernet.pt"      # the bi-level search's weights
FINETUNED_WEIGHTS = "finetuned.pt"    # the same after the derived paths' warm start


def weights_fingerprint(state: Mapping[str, torch.Tensor]) -> str:
    """A short sha256 of a state dict's names, dtypes, shapes and bytes: names the weights."""
    h = hashlib.sha256()
    for key in sorted(state):
        t = state[key].detach().cpu().contiguous()
        h.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return "w" + h.hexdigest()[:15]


def searched_fingerprint(path: str | Path) -> str:
    """The fingerprint of the weights in an MGDA weight file (computed from its tensors)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no searched weights at {path}; run `tamnas search RUN "
                                "--strategy mgda` first")
    return weights_fingerprint(load_checkpoint(path, kind="supernet")["model"])


def weight_files(search_dir: str | Path) -> dict[str, Path]:
    """fingerprint -> file of every MGDA weight file in a search directory (to load the weights
    an archive row was scored on)."""
    out = {}
    for name in (SEARCHED_WEIGHTS, FINETUNED_WEIGHTS):
        path = Path(search_dir) / name
        if path.is_file():
            out[searched_fingerprint(path)] = path
    return out


def load_searched(search_dir: str | Path, supernet: nn.Module,
                  fingerprint: str | None = None) -> str | None:
    """Load an MGDA search's weights into `supernet`: the searched ones, or the file whose
    fingerprint is given; returns the loaded weights' fingerprint, None if there are none."""
    if fingerprint is None:
        path = Path(search_dir) / SEARCHED_WEIGHTS
        if not path.is_file():
            return None
    else:
        path = weight_files(search_dir).get(fingerprint)
        if path is None:
            raise FileNotFoundError(f"{search_dir} holds no weights with fingerprint "
                                    f"{fingerprint}; run the search again")
    state = load_checkpoint(path, kind="supernet")["model"]
    supernet.load_state_dict(state)
    return weights_fingerprint(state)


__all__ = ["FINETUNED_WEIGHTS", "SEARCHED_WEIGHTS", "load_searched", "searched_fingerprint",
           "weight_files", "weights_fingerprint"]
