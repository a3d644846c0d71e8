"""torch.distributed helpers: one code path for a single process and for `torchrun`.

Without `torchrun` (no WORLD_SIZE in the environment) every helper is a
no-op, so the rest of the code never asks whether it runs distributed.
Training averages gradients over ranks before each optimiser step (every
rank runs the same sampled path, drawn from a shared seed) and BatchNorm
statistics after it, so all ranks hold one model; search shards a list of
archs over ranks and gathers the scores in order on every rank.
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
import torch.distributed as tdist
from torch import nn

_LOCAL_ONLY = [False]   # set inside `local_only()`: this process acts as if it were alone


def is_distributed() -> bool:
    return (not _LOCAL_ONLY[0] and tdist.is_available() and tdist.is_initialized()
            and tdist.get_world_size() > 1)


def rank() -> int:
    return tdist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return tdist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    return rank() == 0


def init_from_env(device: str = "auto") -> bool:
    """Join the process group `torchrun` describes; NCCL on GPU, gloo on CPU. False when alone.

    The group is destroyed at interpreter exit, so a rank that finishes
    early (only rank 0 writes plots and reports) leaves cleanly.
    """
    try:
        size = int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise ValueError(f"WORLD_SIZE={os.environ['WORLD_SIZE']!r} is not a number; launch with "
                         "torchrun --nproc_per_node N or unset it") from None
    if size <= 1 or is_distributed():
        return is_distributed()
    for name in ("RANK", "MASTER_ADDR", "MASTER_PORT"):
        if name not in os.environ:
            raise ValueError(f"WORLD_SIZE={size} but {name} is not set; launch with torchrun "
                             "(it sets RANK, MASTER_ADDR and MASTER_PORT) or unset WORLD_SIZE")
    use_cuda = device != "cpu" and torch.cuda.is_available()
    if use_cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    tdist.init_process_group(backend="nccl" if use_cuda else "gloo")
    atexit.register(shutdown)
    return True


def shutdown() -> None:
    """Leave the process group (a no-op when there is none)."""
    if tdist.is_available() and tdist.is_initialized():
        tdist.destroy_process_group()


def backend() -> str | None:
    """"nccl" or "gloo" under torchrun, None in a single process."""
    return tdist.get_backend() if is_distributed() else None


@contextmanager
def local_only() -> Iterator[None]:
    """Inside, this process acts alone: no collectives, `rank()` 0, `world_size()` 1.

    For work that only rank 0 does (LEGO net, plots, report) but that goes
    through helpers which would otherwise wait for the other ranks.
    """
    saved = _LOCAL_ONLY[0]
    _LOCAL_ONLY[0] = True
    try:
        yield
    finally:
        _LOCAL_ONLY[0] = saved


def local_device(device: torch.device) -> torch.device:
    """Each rank on its own GPU under torchrun."""
    if device.type == "cuda" and is_distributed():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def barrier() -> None:
    if is_distributed():
        tdist.barrier()


def _comm_device() -> torch.device:
    """Where small host values go for a collective: NCCL reduces CUDA tensors only."""
    if backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def average_metrics(sums: dict[str, float], n: int) -> dict[str, float]:
    """Sum per-rank metric sums and counts, so every rank logs the global mean (times n)."""
    if not is_distributed() or not sums:
        return sums
    keys = sorted(sums)
    t = torch.tensor([sums[k] for k in keys] + [float(n)], dtype=torch.float64,
                     device=_comm_device())
    tdist.all_reduce(t)
    total_n = t[-1].item()
    return {k: t[i].item() * n / max(total_n, 1.0) for i, k in enumerate(keys)}


def _average_flat(tensors: list[torch.Tensor]) -> None:
    """Average `tensors` over ranks in place, one all-reduce per dtype."""
    by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
    for t in tensors:
        by_dtype.setdefault(t.dtype, []).append(t)
    for group in by_dtype.values():
        flat = torch.cat([t.reshape(-1) for t in group])
        tdist.all_reduce(flat)
        flat /= world_size()
        offset = 0
        for t in group:
            t.copy_(flat[offset:offset + t.numel()].view_as(t))
            offset += t.numel()


def allreduce_gradients(params: Sequence[nn.Parameter]) -> None:
    """Average gradients over ranks in one flat buffer; a param unused on this path stays None.

    Every rank runs the same sampled path, so the same params have gradients
    on every rank; a mismatch would mean the ranks drew different subnets.
    """
    if not is_distributed():
        return
    grads = [p.grad for p in params if p.grad is not None]
    if grads:
        _average_flat(grads)


def average_buffers(module: nn.Module) -> None:
    """Average floating buffers (BatchNorm running statistics) over ranks.

    Each rank's BatchNorm sees only its share of the batch; averaging after
    every step keeps one model on all ranks (the adversary of TRADES-YOPO runs
    in eval mode, on these statistics) and makes rank 0's checkpoint the
    state of every rank, so a resume continues exactly. Integer buffers
    (batch counters) are equal on all ranks already.
    """
    if not is_distributed():
        return
    floats = [b for b in module.buffers() if b.is_floating_point()]
    if floats:
        _average_flat(floats)


class GradAveragingSGD(torch.optim.SGD):
    """SGD whose step first averages gradients over ranks (a no-op in a single process).

    Objectives run their own forward/backward passes (YOPO runs several per
    step, some only to the first layer), so gradients are averaged once, at
    the step, instead of by DDP hooks on every backward.
    """

    @torch.no_grad()
    def step(self, closure=None):
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
