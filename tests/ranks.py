"""Run a function as the ranks of a torchrun-like CPU process group, inside pytest."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Sequence


def run_ranks(target: Callable, args: tuple, world: int = 2, preload: Sequence[str] = (),
              timeout: float = 120) -> list[int | None]:
    """Call `target(rank, world, port, *args)` in `world` fresh processes; their exit codes.

    A hung process group is killed at `timeout` seconds instead of hanging pytest.
    """
    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["torch", "pandas", *preload])
    procs = [ctx.Process(target=target, args=(r, world, port, *args)) for r in range(world)]
    for p in procs:
        p.start()
    deadline = time.monotonic() + timeout
    for p in procs:
        p.join(max(deadline - time.monotonic(), 0))
        if p.is_alive():
            p.kill()
            p.join()
    return [p.exitcode for p in procs]
