"""`tamnas latency build|check|probes|import`: latency tables measured on a device."""

from __future__ import annotations

import argparse
from pathlib import Path

from tamnas.commands import Call, command
from tamnas.session import say

ACTIONS = ("build", "check", "probes", "import")


def space_of(target: str | None, preset: str | None, overrides: list[str]):
    """(space, run or None): from a run's config.toml, a preset, or a table's recorded space."""
    from tamnas.checks import check_names
    from tamnas.config import load_config, load_run_config, parse_override
    from tamnas.rundir import RunDir
    from tamnas.supernets import SPACES, build_space, space_names

    sets = dict(parse_override(s) for s in overrides)
    if preset:
        return build_space(check_names(load_config(preset, sets))), None
    if target is None:
        raise ValueError("name a run directory (or --preset NAME)")
    path = Path(target).expanduser()
    if path.is_dir():
        run = RunDir(path)
        if not run.config.is_file():
            raise FileNotFoundError(f"{target} is not a tamnas run directory (no config.toml)")
        return build_space(check_names(load_run_config(run.config, sets))), run
    from tamnas.latency.table import load_table

    table = load_table(path)
    name = table.space.get("name")
    if name not in space_names():
        raise ValueError(f"{target}: space {name!r} is unknown here")
    return SPACES[name].from_config(table.space["config"]), None


def _settings(args: argparse.Namespace):
    from tamnas.latency.timing import TimingSettings

    return TimingSettings(batch=args.batch, repeats=args.repeats, warmup=args.warmup,
                          budget_s=args.budget, threads=args.threads, backend=args.backend,
                          device=args.device, clock=args.clock).check()


def build(args: argparse.Namespace) -> Path:
    from tamnas.latency.build import build_table
    from tamnas.latency.table import device_slug
    from tamnas.rundir import writing

    space, run = space_of(args.target, args.preset, args.overrides)
    if run is None and not args.out:
        raise ValueError("--preset needs --out FILE (where the table goes)")
    settings = _settings(args)
    table = build_table(space, settings, statistic=args.statistic, say=lambda m: say(m, args.quiet))
    if args.out:
        out = Path(args.out).expanduser()
        table.save(out)
    else:
        out = run.latency_table(device_slug(table.device, table.batch))
        with writing(run.root, "tamnas latency build", "latency"):
            table.save(out)
    say(f"latency table: {len(table.entries)} entries in {table.settings['build_seconds']:.1f} s -> "
        f"{out}")
    return out


def table_path(args: argparse.Namespace) -> Path:
    """The table a check/search reads: a file, or the run's table of this device and settings."""
    from tamnas.latency.table import device_fingerprint, device_slug
    from tamnas.rundir import RunDir

    path = Path(args.target).expanduser()
    if path.is_file():
        return path
    run = RunDir(path)
    fp = device_fingerprint(args.device, args.threads, args.backend)
    want = run.latency_table(device_slug(fp, args.batch))
    if not want.exists():
        have = ", ".join(p.name for p in run.latency_tables()) or "none"
        raise FileNotFoundError(f"{want} does not exist (tables here: {have}); build it with "
                                f"`tamnas latency build {args.target}` with the same --batch, "
                                "--backend and --threads, or name a table file")
    return want


def check(args: argparse.Namespace) -> dict:
    from tamnas.files import atomic_write_json, atomic_write_text
    from tamnas.latency.check import format_summary, plot_check, run_check, store_correction
    from tamnas.latency.table import device_slug, load_table

    path = table_path(args)
    table = load_table(path)
    space, _ = space_of(str(path), None, args.overrides)
    result = run_check(space, table, n_archs=args.archs, seed=args.seed,
                       say=lambda m: say(m, args.quiet))
    text = format_summary(result.summary)
    print(text)
    out = path.parent / f"check-{device_slug(table.device, table.batch)}"
    out.mkdir(parents=True, exist_ok=True)
    result.frame.to_csv(out / "check.csv", index=False)
    atomic_write_json(out / "check.json", result.summary)
    atomic_write_text(out / "check.txt", text + "\n")
    plot_check(result, out / "predicted_vs_measured")
    if args.store and store_correction(table, result):
        table.save(path)
        say(f"stored the {table.correction['kind']} correction in {path}", args.quiet)
    say(f"check: {out}", args.quiet)
    return result.summary


def probes(args: argparse.Namespace) -> Path:
    from tamnas.latency.probes import write_probes

    if not args.out:
        raise ValueError("latency probes needs --out DIR (a new or empty folder)")
    space, _ = space_of(args.target, args.preset, args.overrides)
    return write_probes(space, args.out, batch=args.batch, say=lambda m: say(m, args.quiet))


def import_(args: argparse.Namespace) -> Path:
    from tamnas.latency.probes import import_result
    from tamnas.latency.table import device_slug
    from tamnas.rundir import writing

    result = args.target if args.preset and not args.result else args.result
    if not result:
        raise ValueError("latency import needs RUN and the RESULT file time_probes.py wrote "
                         "(or RESULT --preset NAME --out FILE)")
    space, run = space_of(args.target, args.preset, args.overrides)
    table = import_result(space, result)
    if args.out:
        out = Path(args.out).expanduser()
        table.save(out)
    elif run is None:
        raise ValueError("--preset needs --out FILE (where the table goes)")
    else:
        out = run.latency_table(device_slug(table.device, table.batch))
        with writing(run.root, "tamnas latency import", "latency"):
            table.save(out)
    say(f"latency table of {table.device.get('name')}: {len(table.entries)} entries -> {out}",
        args.quiet)
    return out


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=ACTIONS, help="build a table here, check one against whole "
                   "nets, write probes for another device, or import their result")
    p.add_argument("target", nargs="?", default=None, help="run directory (check: or a table file)")
    p.add_argument("result", nargs="?", default=None, help="import: the result file of "
                   "time_probes.py")
    p.add_argument("--preset", default=None, help="build/probes for a preset's space, no run")
    p.add_argument("--out", default=None, help="build/import: the table file; probes: a folder")
    p.add_argument("--batch", type=int, default=1, help="images per call (default 1)")
    p.add_argument("--backend", choices=("torch", "onnxruntime"), default="torch",
                   help="eager PyTorch (default) or ONNX Runtime (pip install 'tamnas[onnx]')")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda / cuda:N")
    p.add_argument("--threads", type=int, default=1, help="threads, pinned (default 1)")
    p.add_argument("--repeats", type=int, default=100, help="timed calls per unit (default 100)")
    p.add_argument("--warmup", type=int, default=10, help="untimed calls first (default 10)")
    p.add_argument("--budget", type=float, default=2.0,
                   help="seconds per unit at most, never under 5 calls (default 2)")
    p.add_argument("--statistic", choices=("median", "min"), default="median",
                   help="build: what predictions add up (both are stored): median (default) or "
                        "min, steadier where other jobs share the cores")
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                   help="build: wall time (default) or the thread's CPU time (one thread, CPU: "
                        "what a call costs on a core of its own, on a machine shared with other "
                        "jobs)")
    p.add_argument("--archs", type=int, default=30, help="check: whole nets sampled (default 30)")
    p.add_argument("--seed", type=int, default=0, help="check: which nets are sampled")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key of the run or preset (changes the space)")
    p.add_argument("--store", action=argparse.BooleanOptionalAction, default=True,
                   help="check: store a systematic correction in the table (default on)")


def _check_args(args: argparse.Namespace) -> None:
    if args.target is None and not (args.preset and args.action in ("build", "probes")):
        raise ValueError(f"latency {args.action} needs a run directory"
                         + (" or a table file" if args.action == "check" else ""))


@command("latency", "latency tables measured on a device: build, check, probes, import", "none",
         arguments=_arguments, options=(), check=_check_args,
         description="Per-option latency table of a run's space on this device (build), checked "
                     "against whole nets (check), or measured on another device through ONNX "
                     "probes (probes, then import). The table is what the `latency` cost kind "
                     "reads (search.latency_table).")
def main(call: Call):
    args = call.args
    args.quiet = call.quiet
    return {"build": build, "check": check, "probes": probes, "import": import_}[args.action](args)
