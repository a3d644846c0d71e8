"""Command-line front: parse, resolve the config, call one pipeline function per command.

User mistakes (bad preset, path, key, arch, checkpoint) arrive here as
ValueError / FileNotFoundError and leave as one line on stderr, exit code 2.
"""

from __future__ import annotations

import argparse
import errno
import sys
from collections.abc import Sequence
from pathlib import Path

from tamnas import __version__

EXIT_USER_ERROR = 2


class UserError(Exception):
    """An error whose message is the whole story for the user (exit 2)."""


def _common(p: argparse.ArgumentParser, preset: bool) -> None:
    g = p.add_argument_group("common options")
    g.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default: auto)")
    g.add_argument("--seed", type=int, default=None, help="override the config's seed")
    g.add_argument("--quiet", action="store_true", help="no progress bars")
    g.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True,
                   help="continue from the state in the run directory (default: on)")
    g.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set search.pop_size=20 (repeatable)")
    g.add_argument("--config", dest="config_files", action="append", default=[], metavar="TOML",
                   help="merge a TOML file over the preset (repeatable)")
    g.add_argument("--data", default=None, metavar="DIR", help="dataset folder (data.root)")
    g.add_argument("--download", action="store_true", help="let torchvision download datasets")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tamnas", description="Robust, tiny neural architecture search: train a supernet "
        "with TRADES-YOPO, search its Pareto front, plot, export.")
    parser.add_argument("--version", action="version", version=f"tamnas {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, help: str, target: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        if target == "preset":
            p.add_argument("preset", help="preset name (see `tamnas space-info --list`) or a .toml path")
        else:
            p.add_argument("run", help="run directory (made by `tamnas run` or `train-supernet`)")
        _common(p, target == "preset")
        return p

    p = add("run", "the main job: supernet -> search -> plots -> LEGO export -> report", "preset")
    p.add_argument("--out", required=True, help="run directory")
    p = add("train-supernet", "train the weight-sharing supernet (Algorithm 1)", "preset")
    p.add_argument("--out", required=True, help="run directory")
    p = add("search", "search the trained supernet for the Pareto front", "run")
    p.add_argument("--strategy", choices=("nsga2", "mgda"), default=None)
    p.add_argument("--targets", default=None,
                   help="MGDA: comma-separated parameter targets, one search each")
    p = add("evaluate", "robustness of an exported or retrained net: PGD grid, FGSM, AutoAttack",
            "run")
    p.add_argument("--arch", default=None, help="front:K | lego | FILE.json (default: all retrained)")
    p.add_argument("--grid", action=argparse.BooleanOptionalAction, default=True,
                   help="the eps x steps PGD grid (default: on)")
    p.add_argument("--autoattack", action="store_true", help="also run standard AutoAttack")
    p = add("retrain", "train a front member or the LEGO net as a standalone network", "run")
    p.add_argument("--arch", default="lego", help="front:K | lego | FILE.json (default: lego)")
    p.add_argument("--init", choices=("scratch", "supernet"), default="scratch")
    p.add_argument("--all-front", action="store_true", help="retrain every front member")
    add("plot", "fronts, hypervolume curve, per-layer statistics", "run")
    p = add("lego", "the LEGO net from the front's most frequent choices", "run")
    p.add_argument("--top", type=int, default=None, help="top-k front members (output.top_k)")
    p = add("export", "arch JSON + standalone PyTorch weights (+ ONNX)", "run")
    p.add_argument("--arch", default="lego", help="front:K | lego | FILE.json")
    p.add_argument("--format", choices=("torch", "onnx"), default="torch")
    p.add_argument("--weights", choices=("inherited", "retrained"), default=None,
                   help="default: retrained when present, else inherited")
    add("report", "gather a run into report.md", "run")
    p = add("validate", "rank fidelity: do inherited scores rank archs as standalone training "
            "does?", "run")
    p.add_argument("--archs", type=int, default=10, metavar="N",
                   help="archs drawn by parameter count, 3 or more (default: 10)")
    p.add_argument("--seeds", type=int, default=1, metavar="S",
                   help="standalone trainings per arch: 1 or 2 (default: 1)")
    p.add_argument("--bootstrap", type=int, default=1000, metavar="B",
                   help="resamples for the 95%% intervals (default: 1000)")
    p = sub.add_parser("space-info", help="space size, gene table, params/FLOPs of sampled subnets")
    p.add_argument("preset", nargs="?", default="quickstart")
    p.add_argument("--list", action="store_true", help="list the presets")
    p.add_argument("--samples", type=int, default=500)
    _common(p, True)
    return parser


def resolve_config(args: argparse.Namespace):
    """Config from a preset (preset commands) or from RUN/config.toml, plus overrides."""
    from tamnas.config import load_config, load_run_config, parse_override

    overrides = dict(parse_override(s) for s in args.overrides)
    if args.seed is not None:
        overrides["seed"] = args.seed
    if args.data is not None:
        overrides["data.root"] = args.data
    if args.download:
        overrides["data.download"] = True
    if hasattr(args, "run") and not hasattr(args, "preset"):
        config = Path(args.run) / "config.toml"
        if not config.is_file():
            raise FileNotFoundError(f"{args.run} is not a tamnas run directory (no config.toml); "
                                    "make one with `tamnas run PRESET --out DIR`")
        return load_run_config(config, overrides, args.config_files)
    return load_config(args.preset, overrides, args.config_files)


def resolve_device(name: str):
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"--device: {name!r} is not a device; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: CUDA is not available here; use --device cpu")
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"--device: {name!r} is not supported; use auto, cpu, cuda or cuda:N")
    return device


def _targets(text: str) -> list[float]:
    try:
        return [float(t) for t in text.split(",")]
    except ValueError:
        raise ValueError(f"--targets {text!r}: give comma-separated parameter counts, "
                         "e.g. 150000,250000") from None


def dispatch(args: argparse.Namespace) -> int:
    from tamnas import distributed as dist
    from tamnas import pipeline

    if args.command == "space-info" and args.list:
        from tamnas.config import preset_names

        print("\n".join(preset_names()))
        return 0
    targets = _targets(args.targets) if getattr(args, "targets", None) else None
    cfg = resolve_config(args)
    device = resolve_device(args.device)
    dist.init_from_env(args.device)
    device = dist.local_device(device)
    opts = dict(device=device, quiet=args.quiet, resume=args.resume)
    if args.command == "space-info":
        print(pipeline.space_info(cfg, n_samples=args.samples))
    elif args.command == "run":
        pipeline.run_all(cfg, args.out, **opts)
    elif args.command == "train-supernet":
        pipeline.train_stage(cfg, args.out, **opts)
    elif args.command == "search":
        pipeline.search_stage(cfg, args.run, strategy=args.strategy, targets=targets, **opts)
    elif args.command == "plot":
        pipeline.plot_stage(cfg, args.run, **opts)
    elif args.command == "lego":
        pipeline.lego_stage(cfg, args.run, top=args.top, **opts)
    elif args.command == "export":
        pipeline.export_stage(cfg, args.run, arch=args.arch, fmt=args.format,
                              weights=args.weights, **opts)
    elif args.command == "retrain":
        pipeline.retrain_stage(cfg, args.run, arch=args.arch, init=args.init,
                               all_front=args.all_front, **opts)
    elif args.command == "evaluate":
        pipeline.evaluate_stage(cfg, args.run, arch=args.arch, grid=args.grid,
                                autoattack=args.autoattack, **opts)
    elif args.command == "report":
        pipeline.report_stage(cfg, args.run, **opts)
    elif args.command == "validate":
        pipeline.validate_stage(cfg, args.run, n_archs=args.archs, seeds=args.seeds,
                                bootstrap=args.bootstrap, **opts)
    return 0


def os_error_message(e: OSError) -> str:
    """One line for a file-system failure: what failed, where, and what to do."""
    where = f" ({e.filename})" if e.filename else ""
    if e.errno == errno.ENOSPC:
        return (f"no space left on the device{where}; the last checkpoint is intact: free some "
                "space and run the same command again to resume")
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return (f"cannot write{where}: {e.strerror}; choose a writable --out or fix the "
                "permissions of the run directory")
    if e.errno == errno.ENAMETOOLONG:
        return f"the path is too long for this file system{where}; choose a shorter --out"
    if e.errno in (errno.EEXIST, errno.ENOTDIR):
        return f"{e.strerror}{where}: a file is in the way; choose another --out"
    return f"{e.strerror or type(e).__name__}{where}"


def main(argv: Sequence[str] | None = None) -> int:
    from tamnas.errors import MissingExtraError

    args = build_parser().parse_args(argv)
    try:
        return dispatch(args)
    except (ValueError, UserError, MissingExtraError) as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        print(f"tamnas: error: {msg}", file=sys.stderr)
        return EXIT_USER_ERROR
    except OSError as e:  # the library's FileNotFoundError (no errno) carries its own message
        text = str(e).strip() if e.errno is None else os_error_message(e)
        print(f"tamnas: error: {text.splitlines()[0] if text else type(e).__name__}",
              file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("tamnas: interrupted; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
