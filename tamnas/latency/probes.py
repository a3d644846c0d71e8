"""Probes for devices that cannot run tamnas: one ONNX model per table unit, a timing script,
and the import of its result file as a latency table."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from tamnas.files import atomic_write_bytes, atomic_write_json, read_json
from tamnas.latency.plan import make_plan
from tamnas.latency.table import LatencyTable, space_digest
from tamnas.latency.timing import onnx_bytes
from tamnas.supernets.base import SearchSpace

RESULT_FORMAT = "tamnas-latency-probes-result/1"
SCRIPT = Path(__file__).with_name("probe_script.py")


def write_probes(space: SearchSpace, out: str | Path, batch: int = 1,
                 say: Callable[[str], None] = print) -> Path:
    """DIR/manifest.json, DIR/pNNNN.onnx (one per unit) and DIR/time_probes.py; returns DIR."""
    out = Path(out).expanduser()
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"--out {out} is not empty; name a new or empty folder")
    if batch < 1:
        raise ValueError(f"--batch {batch}: give 1 or more images")
    plan = make_plan(space)
    out.mkdir(parents=True, exist_ok=True)
    config = space.config()
    probes = []
    for i, (sig, unit) in enumerate(plan.units.items()):
        name = f"p{i:04d}.onnx"
        shape = [batch, *unit.shape]
        atomic_write_bytes(out / name, onnx_bytes(unit.make(), tuple(shape)))
        probes.append({"signature": sig, "file": name, "shape": shape})
    atomic_write_json(out / "manifest.json", {
        "format": "tamnas-latency-probes/1", "batch": batch,
        "space": {"name": space.name, "config": config, "digest": space_digest(config)},
        "probes": probes})
    shutil.copyfile(SCRIPT, out / "time_probes.py")
    say(f"probes: {len(probes)} ONNX models and time_probes.py in {out}; on the device run "
        "`python3 time_probes.py` there, then `tamnas latency import RUN result.json`")
    return out


def import_result(space: SearchSpace, result_path: str | Path) -> LatencyTable:
    """The latency table of a probes result file, checked to cover `space`."""
    d = read_json(result_path, "run time_probes.py in the probes folder to make it")
    if not isinstance(d, dict) or d.get("format") != RESULT_FORMAT:
        raise ValueError(f"{result_path} is not a probes result ({RESULT_FORMAT}); it is written "
                         "by time_probes.py")
    config = space.config()
    if d.get("space", {}).get("digest") != space_digest(config):
        raise ValueError(f"{result_path} was measured for another space than this run's; write "
                         "probes for this run with `tamnas latency probes RUN --out DIR`")
    plan = make_plan(space)
    missing = [s for s in plan.units if s not in d.get("entries", {})]
    if missing:
        raise ValueError(f"{result_path} lacks {len(missing)} probes (e.g. {missing[0]}); run "
                         "time_probes.py to the end")
    entries = {s: summarise_entry(d["entries"][s]) for s in plan.units}
    return LatencyTable(device=dict(d["device"]), space={"name": space.name, "config": config,
                                                        "digest": space_digest(config)},
                        batch=int(d["batch"]), entries=entries, fixed=list(plan.fixed),
                        decisions=plan.decisions, settings=dict(d.get("settings", {})))


def summarise_entry(e: dict) -> dict:
    """An entry of a result file, checked and typed as a table stores it."""
    try:
        out = {"median": float(e["median"]), "p90": float(e["p90"]), "count": int(e["count"])}
        if "min" in e:
            out["min"] = float(e["min"])
    except (KeyError, TypeError, ValueError):
        raise ValueError(f"a probes result entry is malformed: {e!r}") from None
    return out


__all__ = ["RESULT_FORMAT", "import_result", "summarise_entry", "write_probes"]
