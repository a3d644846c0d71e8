"""TensorBoard logging, an optional extra: `pip install 'tamnas[tensorboard]'`.

With `output.tensorboard = true`, every training (supernet, retrain) writes
its per-epoch row, every search its per-generation row (hypervolume, archive
size, ...) and `tamnas plot` the front figure as TensorBoard events beside
the CSVs: `tensorboard --logdir RUN` shows them all. Off by default, and then
nothing imports TensorBoard.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tamnas.errors import require

BOARD_DIR = "tensorboard"


class Board:
    """A TensorBoard writer for one stage's folder, or a no-op when disabled."""

    def __init__(self, folder: str | Path | None, enabled: bool):
        self.writer = None
        if enabled and folder is not None:
            module = require("torch.utils.tensorboard", "tensorboard", "output.tensorboard")
            self.writer = module.SummaryWriter(log_dir=str(Path(folder) / BOARD_DIR))

    @property
    def enabled(self) -> bool:
        return self.writer is not None

    def scalars(self, prefix: str, row: Mapping[str, Any], step: int) -> None:
        """Every finite number of `row` as `prefix/key` at `step`."""
        if self.writer is None:
            return
        for key, value in row.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) \
                    and math.isfinite(float(value)):
                self.writer.add_scalar(f"{prefix}/{key}", float(value), int(step))
        self.writer.flush()

    def figure(self, tag: str, fig, step: int = 0) -> None:
        if self.writer is not None:
            self.writer.add_figure(tag, fig, global_step=step, close=False)
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


__all__ = ["BOARD_DIR", "Board"]
