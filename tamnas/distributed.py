"""torch.distributed helpers: one code path for a single process and for `torchrun`.

Without `torchrun` (no WORLD_SIZE in the environment) every helper is a
no-op, so the rest of the code never asks whether it runs distributed.
Training averages gradients over ranks before each optimiser step (every
rank runs the same sampled path, drawn from a shared seed); search shards a
list of archs over ranks and gathers the scores in order on every rank.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import torch
import torch.distributed as tdist
from torch import nn


def is_distributed() -> bool:
    return tdist.is_available() and tdist.is_initialized() and tdist.get_world_size() > 1


def rank() -> int:
    return tdist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return tdist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    return rank() == 0


def init_from_env(device: str = "auto") -> bool:
    """Join the process group `torchrun` describes; NCCL on GPU, gloo on CPU. False when alone."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or is_distributed():
        return is_distributed()
    use_cuda = device != "cpu" and torch.cuda.is_available()
    if use_cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    tdist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return True


def local_device(device: torch.device) -> torch.device:
    """Each rank on its own GPU under torchrun."""
    if device.type == "cuda" and is_distributed():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def barrier() -> None:
    if is_distributed():
        tdist.barrier()


def average_metrics(sums: dict[str, float], n: int) -> dict[str, float]:
    """Sum per-rank metric sums and counts, so every rank logs the global mean (times n)."""
    if not is_distributed() or not sums:
        return sums
    keys = sorted(sums)
    t = torch.tensor([sums[k] for k in keys] + [float(n)], dtype=torch.float64)
    tdist.all_reduce(t)
    total_n = t[-1].item()
    return {k: t[i].item() * n / max(total_n, 1.0) for i, k in enumerate(keys)}


def allreduce_gradients(params: Sequence[nn.Parameter]) -> None:
    """Average gradients over ranks in one flat buffer; a param unused on this path stays None."""
    if not is_distributed():
        return
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    tdist.all_reduce(flat)
    flat /= world_size()
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()


class GradAveragingSGD(torch.optim.SGD):
    """SGD whose step first averages gradients over ranks (a no-op in a single process).

    Objectives run their own forward/backward passes (YOPO runs several per
    step, some only to the first layer), so gradients are averaged once, at
    the step, instead of by DDP hooks on every backward.
    """

    @torch.no_grad()
    def step(self, closure=None):  # noqa: D102
        allreduce_gradients([p for g in self.param_groups for p in g["params"]])
        return super().step(closure)


def broadcast_module(module: nn.Module) -> None:
    """Make every rank start from rank 0's weights and buffers."""
    if not is_distributed():
        return
    for t in list(module.parameters()) + list(module.buffers()):
        tdist.broadcast(t.data, src=0)


def shard(items: Sequence[Any]) -> list[Any]:
    """This rank's share of `items` (round robin, so shares differ by at most one)."""
    return list(items[rank()::world_size()])


def gather_sharded(local: list[Any], total: int) -> list[Any]:
    """Inverse of `shard`: every rank gets all results in the original order."""
    if not is_distributed():
        return list(local)
    parts: list[list[Any]] = [None] * world_size()  # type: ignore[list-item]
    tdist.all_gather_object(parts, local)
    out: list[Any] = [None] * total
    for r, part in enumerate(parts):
        for j, value in enumerate(part):
            out[r + j * world_size()] = value
    return out


def broadcast_object(obj: Any) -> Any:
    if not is_distributed():
        return obj
    box = [obj]
    tdist.broadcast_object_list(box, src=0)
    return box[0]
