"""The plain net of one `tamnas compare` budget: sized by parameters exactly, by time measured.

Under a params budget the plain net is the widest whose exact parameter count
fits (`supernets.plain.plain_width`). Under a latency budget it is the widest
whose whole-net time, measured here the way `tamnas latency check` times nets
(the table's batch, threads, backend, clock and statistic), fits: a plain conv
stack runs many times faster than a searched net of the same parameters, so
sizing it by parameters would hand the search an easy win. That needs this
machine to be the table's device; for a table of another device the budget
gets no plain net, and compare says why. A timed width is kept in
compare/plain_widths.json (per budget, with the table's digest), so a resumed
compare trains the same plain net instead of re-timing into a neighbour width.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from tamnas.analysis.compare_groups import Member
from tamnas.analysis.selector import Constraint, budget_label
from tamnas.files import atomic_write_json, read_json

WIDTHS_FILE = "plain_widths.json"
MAX_TIMED_PARAMS = 100_000_000   # 400 MB of float32: no wider plain net is built to be timed


def _fits(c: Constraint, value: float) -> bool:
    return value < c.value if c.op == "<" else value <= c.value


def timed_width(session, limit: Constraint, store: Path,
                say: Callable[[str], None]) -> tuple[int, float] | None:
    """(width, measured ms) of the widest plain net within the latency limit, timed on this
    machine; None, after one printed line, when the run's table describes another device."""
    from tamnas.latency.check import settings_of
    from tamnas.latency.table import describe_device, device_fingerprint, run_table, same_device
    from tamnas.latency.timing import time_module
    from tamnas.supernets.plain import PlainNet, plain_width, widest_within

    table = run_table(session.cfg, session.run)
    if table is None:
        raise ValueError(f"a {budget_label([limit])} budget needs a latency table; build one "
                         f"with `tamnas latency build {session.run.root}`")
    settings = settings_of(table).check()
    here = device_fingerprint(settings.device, settings.threads, settings.backend)
    label = budget_label([limit])
    if not same_device(table.device, here):
        say(f"note: no plain net at {label}: the latency table describes "
            f"{describe_device(table.device)}, this machine is {describe_device(here)}, and a "
            "plain net's time can only be measured on the table's device")
        return None
    saved = read_json(store, "plain widths") if store.is_file() else {}
    kept = saved.get(label)
    if kept and kept.get("table_digest") == table.digest():
        return int(kept["width"]), float(kept["latency_ms"])
    info = session.data.info
    shape = (info.in_channels, session.cfg.data.resolution, session.cfg.data.resolution)
    stat = np.min if table.statistic == "min" else np.median
    timed: dict[int, float] = {}

    def fits(width: int) -> bool:
        net = PlainNet(width, info.in_channels, info.num_classes, info.mean, info.std)
        timed[width] = float(stat(time_module(net, shape, settings)))
        return _fits(limit, timed[width])

    upper = plain_width(MAX_TIMED_PARAMS, info.in_channels, info.num_classes)
    width = widest_within(fits, upper)
    if width is None:
        say(f"note: no plain net at {label}: even width 1 takes {timed[1]:.3f} ms here")
        return None
    say(f"compare: plain net at {label}: width {width}, {timed[width]:.3f} ms measured here "
        f"({len(timed)} widths timed" + (f"; the widest built, {MAX_TIMED_PARAMS:,} params"
                                         if width == upper else "") + ")")
    saved[label] = {"width": width, "latency_ms": timed[width], "table_digest": table.digest(),
                    "device": describe_device(table.device)}
    atomic_write_json(store, saved)
    return width, timed[width]


def plain_member(session, constraints: Sequence[Constraint], store: Path,
                 say: Callable[[str], None]) -> Member | None:
    """The plain net of a budget: the widest within every params and latency limit of it; None
    for a budget with neither (FLOPs alone), or a latency one whose table is of another device."""
    from tamnas.supernets.plain import plain_key, plain_params, plain_width

    info = session.data.info
    by_cost = {c.cost: c for c in constraints}
    if "params" not in by_cost and "latency" not in by_cost:
        return None
    width, latency = None, None
    if "params" in by_cost:
        c = by_cost["params"]
        cap = int(c.value) - (1 if c.op == "<" and c.value == int(c.value) else 0)
        width = plain_width(cap, info.in_channels, info.num_classes)
    if "latency" in by_cost:
        timed = timed_width(session, by_cost["latency"], store, say)
        if timed is None:
            return None
        width, latency = (timed if width is None or timed[0] <= width else
                          (width, None))   # the params limit binds: its width, not timed
    return Member("plain", plain_key(width), plain_params(width, info.in_channels,
                                                          info.num_classes),
                  width=width, latency_ms=latency)


__all__ = ["WIDTHS_FILE", "plain_member", "timed_width"]
