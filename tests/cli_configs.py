"""Tiny quickstart settings as `--set` arguments, shared by the tests that drive the CLI."""

from __future__ import annotations

import hashlib
from pathlib import Path

# A 3-layer space on 8x8 digits, one epoch per phase: a whole run in seconds.
TINY_RUN = {
    "space.stem_channels": "4", "space.stage_channels": "[8,16]", "space.stage_layers": "[1,2]",
    "space.head_channels": "16", "space.fc_channels": "16", "data.resolution": "8",
    "data.train_limit": "256", "data.val_size": "100",
    "train.phase1_epochs": "1", "train.phase2_epochs": "1", "train.yopo_m": "2", "train.yopo_n": "1",
}


def set_args(**settings: str) -> list[str]:
    """TINY_RUN with `settings` (dots written as __) over it, as a --set argument list."""
    merged = {**TINY_RUN, **{k.replace("__", "."): v for k, v in settings.items()}}
    return [arg for key, value in merged.items() for arg in ("--set", f"{key}={value}")]


def on_cpu(*argv: str) -> list[str]:
    """`argv` quiet and on the CPU (--device only for commands that compute)."""
    computes = argv[0] not in ("plot", "report", "config")
    return [*argv, "--quiet", *(("--device", "cpu") if computes else ())]


def snapshot(root: Path) -> dict[str, str]:
    """Every file under `root` (relative path -> sha256), the byte-for-byte state of a run."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def front_key(run: Path, k: int = 0) -> str:
    """The arch key (the output folder name) of `front:K` of a run, from its front.json."""
    import json

    arch = json.loads((run / "search" / "front.json").read_text())["front"][k]["arch"]
    return "-".join(map(str, arch))


def lego_key(run: Path) -> str:
    """The arch key of the run's exported LEGO net."""
    import json

    return "-".join(map(str, json.loads((run / "exports" / "lego.json").read_text())["genes"]))
