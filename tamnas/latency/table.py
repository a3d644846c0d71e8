"""The latency table: per-unit timings keyed by signature, and how they add up to an arch's latency.

A table is data (JSON), never code. `entries` maps a unit's signature (its
kind and shapes, e.g. one block at one width and input size) to the timing
statistics measured for it (median, p90, count, in ms). `fixed` lists the
signatures every net runs (stem, head, DARTS cell preprocessing); `decisions`
has one nested list per decision of the space, shaped like the space's
`cost_table("params")` entry, each cell the signatures that option adds (a
ShuffleNet block; a DARTS op once per cell sharing the gene). So

    latency(arch) = scale * fsum(fixed) + offset + sum over decisions of scale * fsum(cell)

(each unit read at the table's `statistic`: its median by default, or its
minimum, which calls preempted by other jobs on a loaded machine do not
move), and the space holds it as one more additive cost table. `correction`
is what `latency check` fitted against whole nets: a constant per-call
overhead (`offset_ms`) or a factor (`scale`); none until a check stores one.
"""

from __future__ import annotations

import hashlib
import json
import math
import platform
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tamnas.files import atomic_write_json, read_json

FORMAT = "tamnas-latency-table/1"
NO_CORRECTION = {"kind": "none", "offset_ms": 0.0, "scale": 1.0}
STATISTICS = ("median", "p90", "count")      # stored for every entry; "min" too since format 1
PREDICT_WITH = ("median", "min")


def cpu_name() -> str:
    """The CPU model as the OS names it (Linux /proc/cpuinfo, else platform)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown cpu"


def device_fingerprint(device: str, threads: int, backend: str, dtype: str = "float32") -> dict:
    """What a timing depends on: the chip, threads, software, dtype and backend."""
    import torch

    if device.startswith("cuda"):
        name = torch.cuda.get_device_name(torch.device(device))
    else:
        name = cpu_name()
    fp = {"device": "cuda" if device.startswith("cuda") else "cpu", "name": name,
          "threads": int(threads), "torch": torch.__version__, "dtype": dtype, "backend": backend,
          "machine": platform.machine(), "os": platform.system()}
    if backend == "onnxruntime":
        import onnxruntime

        fp["onnxruntime"] = onnxruntime.__version__
    return fp


def same_device(a: Mapping, b: Mapping) -> bool:
    """Whether two fingerprints name the same chip (kind and model)."""
    return (a.get("device"), a.get("name")) == (b.get("device"), b.get("name"))


def describe_device(fp: Mapping) -> str:
    """One short line: `cpu AMD EPYC, 1 thread, torch 2.4, onnxruntime`."""
    t = int(fp.get("threads", 0))
    return (f"{fp.get('device')} {fp.get('name')}, {t} thread{'s' if t != 1 else ''}, "
            f"torch {fp.get('torch')}, {fp.get('backend')}")


def device_slug(fp: Mapping, batch: int) -> str:
    """The file name part of a table: backend, chip, threads, batch (letters, digits, '-')."""
    name = re.sub(r"[^a-z0-9]+", "-", str(fp.get("name", "device")).lower()).strip("-")[:40]
    return f"{fp.get('backend')}-{fp.get('device')}-{name or 'device'}-t{fp.get('threads')}-b{batch}"


def space_digest(config: Mapping) -> str:
    """sha256 of a space's config (the layout and widths the table was measured for)."""
    text = json.dumps(config, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class LatencyTable:
    """One device's timings for one space (module docstring); JSON in, arrays out."""

    device: dict
    space: dict                      # {"name", "config", "digest"}
    batch: int
    entries: dict[str, dict]         # signature -> {"median", "p90", "count"} (ms)
    fixed: list[str]
    decisions: list[Any]             # nested lists of signature lists, shaped like cost_table
    settings: dict = field(default_factory=dict)   # repeats, warm-up, budget, build seconds
    statistic: str = "median"                      # which entry statistic predictions add up
    correction: dict = field(default_factory=lambda: dict(NO_CORRECTION))

    # -- arrays ----------------------------------------------------------------------------
    def value(self, sig: str) -> float:
        """A unit's time (ms) at the table's statistic."""
        if sig not in self.entries:
            raise ValueError(f"latency table: no entry {sig!r}; rebuild the table")
        return float(self.entries[sig][self.statistic])

    @property
    def scale(self) -> float:
        return float(self.correction.get("scale", 1.0))

    @property
    def offset_ms(self) -> float:
        return float(self.correction.get("offset_ms", 0.0))

    def cell(self, sigs: list[str]) -> float:
        """One option: its units' times added up, times the correction's scale."""
        return self.scale * math.fsum(self.value(s) for s in sigs)

    def constant(self) -> float:
        """Fixed parts (scaled) plus the correction's offset, in ms."""
        return math.fsum([self.cell(self.fixed), self.offset_ms])

    def tables(self) -> list[np.ndarray]:
        """Per decision, the option latencies (ms, float64), shaped like the space's tables."""
        def grid(node: Any) -> Any:
            if node and isinstance(node[0], list):
                return [grid(n) for n in node]
            return self.cell(node)

        return [np.asarray(grid(d), dtype=np.float64) for d in self.decisions]

    def predict(self, picks: list[list[str]]) -> float:
        """Latency of the chosen cells (one signature list per decision)."""
        return math.fsum([self.constant(), *(self.cell(c) for c in picks)])

    def digest(self) -> str:
        """sha256 of the table's content (what archive rows record beside the fingerprint)."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]

    # -- JSON -------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"format": FORMAT, "unit": "ms", "statistic": "median", "device": self.device,
                "space": self.space, "batch": self.batch, "settings": self.settings,
                "predict_with": self.statistic, "correction": self.correction,
                "fixed": self.fixed, "decisions": self.decisions, "entries": self.entries}

    def save(self, path: str | Path) -> None:
        atomic_write_json(path, self.to_dict())

    @classmethod
    def from_dict(cls, d: Mapping, source: str = "latency table") -> LatencyTable:
        if not isinstance(d, Mapping) or d.get("format") != FORMAT:
            raise ValueError(f"{source} is not a tamnas latency table (format {FORMAT}); build one "
                             "with `tamnas latency build`")
        try:
            entries = {str(k): {s: (int(v[s]) if s == "count" else float(v[s]))
                                for s in (*STATISTICS, "min") if s in v or s != "min"}
                       for k, v in d["entries"].items()}
            table = cls(device=dict(d["device"]), space=dict(d["space"]), batch=int(d["batch"]),
                        entries=entries, fixed=[str(s) for s in d["fixed"]],
                        decisions=list(d["decisions"]), settings=dict(d.get("settings", {})),
                        statistic=str(d.get("predict_with", "median")),
                        correction={**NO_CORRECTION, **dict(d.get("correction", {}))})
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{source} is malformed ({err}); build it again") from None
        if table.statistic not in PREDICT_WITH or any(table.statistic not in v
                                                      for v in entries.values()):
            raise ValueError(f"{source}: predict_with {table.statistic!r} is not stored for every "
                             f"entry; use one of {', '.join(PREDICT_WITH)}")
        bad = [k for k, v in entries.items()
               if not (math.isfinite(v[table.statistic]) and v[table.statistic] >= 0)]
        if bad:
            raise ValueError(f"{source}: entry {bad[0]} has no finite non-negative median")
        return table


def load_table(path: str | Path) -> LatencyTable:
    """A table file; FileNotFoundError / ValueError in one line."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise ValueError(f"{path} is a folder; name a latency table file (RUN/latency/*.json)")
    return LatencyTable.from_dict(read_json(path, "build it with `tamnas latency build`"),
                                  source=str(path))


def check_covers(table: LatencyTable, space) -> None:
    """Refuse, in one line, a table measured for another space (layout, widths, encoding)."""
    mine = space.config()
    if table.space.get("name") != space.name or table.space.get("digest") != space_digest(mine):
        diff = sorted(k for k in set(mine) | set(table.space.get("config", {}))
                      if mine.get(k) != table.space.get("config", {}).get(k))
        raise ValueError(f"the latency table was measured for another space ({table.space.get('name')}"
                         f", differing in {', '.join(diff[:4]) or 'its name'}); build one for this "
                         "run with `tamnas latency build RUN`")
    shapes = [tuple(s) for s in space.decision_shapes()]
    got = [t.shape for t in table.tables()]
    if shapes != got:
        raise ValueError(f"the latency table does not cover this space ({len(got)} decisions, "
                         f"expected {len(shapes)} shaped like its cost tables); rebuild it")


def attach_latency(space, table: LatencyTable | str | Path) -> LatencyTable:
    """Give `space` the `latency` cost kind from a table (checked to cover it)."""
    if not isinstance(table, LatencyTable):
        table = load_table(table)
    check_covers(table, space)
    space.attach_costs("latency", table.constant(), table.tables())
    return table


def run_table(cfg, run) -> LatencyTable | None:
    """The latency table a run's commands read: `search.latency_table`, else the run's only table
    in RUN/latency/; None when there is none and no latency objective needs one."""
    name = str(cfg.search.latency_table or "")
    if name:
        path = Path(name).expanduser()
        if not path.is_absolute() and not path.exists() and (run.root / path).exists():
            path = run.root / path
        return load_table(path)
    tables = run.latency_tables()
    if len(tables) == 1:
        return load_table(tables[0])
    if "latency" in cfg.search.objectives:
        have = ", ".join(p.name for p in tables) or "none"
        raise ValueError(f"search.objectives has latency but no single table is chosen (tables in "
                         f"{run.latency_dir}: {have}); build one with `tamnas latency build "
                         f"{run.root}` or --set search.latency_table=PATH")
    return None


def table_record(table: LatencyTable) -> dict:
    """What search results record of the table behind their `latency` column."""
    return {"latency_device": describe_device(table.device), "latency_batch": table.batch,
            "latency_table_digest": table.digest()}


def with_latency(space, df: pd.DataFrame, table: LatencyTable | str | Path | None = None
                 ) -> pd.DataFrame:
    """`df` with a `latency` column (ms, predicted) for its archs (genes g0..gN).

    So a selector's `latency<=3ms` constraint can read archive or front rows of
    a run searched without latency. Attaches `table` first when given.
    """
    if table is not None:
        attach_latency(space, table)
    genes = [f"g{i}" for i in range(space.n_genes)]
    missing = [g for g in genes if g not in df.columns]
    if missing:
        raise ValueError(f"with_latency: the table lacks gene columns {missing[:3]}")
    out = df.copy()
    out["latency"] = [space.cost("latency", tuple(int(v) for v in row))
                      for row in df[genes].to_numpy()]
    return out


__all__ = [
    "FORMAT",
    "NO_CORRECTION",
    "LatencyTable",
    "attach_latency",
    "check_covers",
    "cpu_name",
    "describe_device",
    "device_fingerprint",
    "device_slug",
    "load_table",
    "same_device",
    "space_digest",
    "table_record",
    "with_latency",
]
