"""Build a latency table: time every unit of a space's plan on this device."""

from __future__ import annotations

import time
from collections.abc import Callable

from tamnas.latency.plan import make_plan
from tamnas.latency.table import PREDICT_WITH, LatencyTable, device_fingerprint, space_digest
from tamnas.latency.timing import TimingSettings, summarise, time_module
from tamnas.supernets.base import SearchSpace


def _signatures(node) -> list[str]:
    if node and isinstance(node[0], list):
        return [s for n in node for s in _signatures(n)]
    return list(node)


def build_table(space: SearchSpace, settings: TimingSettings, statistic: str = "median",
                say: Callable[[str], None] = print) -> LatencyTable:
    """Time the fixed units, then each decision's new units, one progress line per decision.

    `statistic` is what predictions add up: "median" (default) or "min" (steadier where other
    jobs share the cores: see `table.py`); every entry stores both either way.
    """
    if statistic not in PREDICT_WITH:
        raise ValueError(f"--statistic {statistic!r}: choose {', '.join(PREDICT_WITH)}")
    settings = settings.check()
    plan = make_plan(space)
    fp = device_fingerprint(settings.device, settings.threads, settings.backend)
    entries: dict[str, dict] = {}
    tic = time.perf_counter()

    def run(sigs: list[str]) -> list[float]:
        medians = []
        for sig in sigs:
            if sig not in entries:
                unit = plan.units[sig]
                entries[sig] = summarise(time_module(unit.make(), unit.shape, settings))
            medians.append(entries[sig][statistic])
        return medians

    groups = [("fixed (stem, head" + (", cell inputs" if len(plan.fixed) > 2 else "") + ")",
               plan.fixed)]
    groups += [(name, _signatures(d)) for name, d in zip(plan.names, plan.decisions)]
    for i, (name, sigs) in enumerate(groups):
        t0 = time.perf_counter()
        new = len({s for s in sigs if s not in entries})
        medians = run(list(dict.fromkeys(sigs)))
        span = f"{min(medians):.3f}-{max(medians):.3f} ms" if medians else "nothing to time"
        say(f"[{i}/{len(groups) - 1}] {name}: {new} new units, {span}, "
            f"{time.perf_counter() - t0:.1f} s")
    record = settings.record()
    record["build_seconds"] = round(time.perf_counter() - tic, 2)
    config = space.config()
    return LatencyTable(device=fp, space={"name": space.name, "config": config,
                                          "digest": space_digest(config)},
                        batch=settings.batch, entries=entries, fixed=list(plan.fixed),
                        decisions=plan.decisions, settings=record, statistic=statistic)


__all__ = ["build_table"]
