"""Command-line front: one subcommand per registered command; parse, resolve, dispatch.

User mistakes (bad preset, path, key, arch, checkpoint) arrive here as
ValueError / FileNotFoundError and leave as one line on stderr, exit code 2.
"""

from __future__ import annotations

import argparse
import errno
import sys
from collections.abc import Sequence
from pathlib import Path

from tamnas.version import __version__

EXIT_USER_ERROR = 2


class UserError(Exception):
    """An error whose message is the whole story for the user (exit 2)."""


class _ResumeFlag(argparse.BooleanOptionalAction):
    """--resume / --no-resume, refused when both are given (the last one would win silently)."""

    def __call__(self, parser, namespace, values, option_string=None):
        namespace.resume_flags = [*getattr(namespace, "resume_flags", []), option_string]
        super().__call__(parser, namespace, values, option_string)


def _options(p: argparse.ArgumentParser, groups: Sequence[str]) -> None:
    from tamnas.commands import COMPUTE, CONFIG, DATA, PARTIAL, RESUME

    g = p.add_argument_group("common options")
    g.add_argument("--quiet", action="store_true",
                   help="no progress bars or progress lines; results and warnings still print")
    if CONFIG in groups:
        g.add_argument("--set", dest="overrides", action="append", default=[],
                       metavar="KEY=VALUE", help="override a config key for this call, e.g. "
                       "--set search.pop_size=20 (repeatable; `tamnas config` lists the keys)")
        g.add_argument("--config", dest="config_files", action="append", default=[],
                       metavar="TOML", help="merge a TOML file over the preset (repeatable)")
        g.add_argument("--seed", type=int, default=None, help="override the config's seed")
    if COMPUTE in groups:
        g.add_argument("--device", default="auto",
                       help="auto | cpu | cuda | cuda:N (default: auto: CUDA when present)")
        g.add_argument("--threads", type=int, default=None, metavar="N",
                       help="CPU threads for PyTorch (default: what torch picks); on a shared or "
                            "loaded machine 1 or 2 is often much faster")
    if DATA in groups:
        g.add_argument("--data", default=None, metavar="DIR", help="dataset folder (data.root)")
        g.add_argument("--download", action="store_true",
                       help="let torchvision download a missing dataset (data.download)")
    if PARTIAL in groups:
        g.add_argument("--partial-supernet", action="store_true",
                       help="use the run's supernet although its training has not finished "
                            "(refused otherwise); the results record how far it got")
    if RESUME in groups:
        g.add_argument("--resume", action=_ResumeFlag, default=True,
                       help="continue from the state in the run directory (default: on); "
                            "--no-resume moves earlier results to previous/N first")


def build_parser() -> argparse.ArgumentParser:
    from tamnas.commands import load_commands

    parser = argparse.ArgumentParser(
        prog="tamnas", description="Robust, tiny neural architecture search: train a supernet "
        "with TRADES-YOPO, search its Pareto front, plot, export.")
    parser.add_argument("--version", action="version", version=f"tamnas {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for cmd in load_commands().values():
        p = sub.add_parser(cmd.name, help=cmd.help, description=cmd.description)
        if cmd.target == "preset":
            p.add_argument("preset", nargs="?" if cmd.name == "space-info" else None,
                           default="quickstart" if cmd.name == "space-info" else None,
                           help="preset name (`tamnas space-info --list`) or a .toml path")
        elif cmd.target == "run":
            p.add_argument("run", help="run directory (made by `tamnas run` or `train-supernet`)")
        if cmd.arguments is not None:
            cmd.arguments(p)
        _options(p, cmd.options)
    return parser


def resolve_config(args: argparse.Namespace, target: str):
    """Config from a preset (preset commands) or from RUN/config.toml, plus this call's overrides."""
    from tamnas.checks import check_names
    from tamnas.config import load_config, load_run_config, parse_override

    overrides = dict(parse_override(s) for s in getattr(args, "overrides", []))
    if getattr(args, "seed", None) is not None:
        overrides["seed"] = args.seed
    if getattr(args, "data", None) is not None:
        overrides["data.root"] = args.data
    if getattr(args, "download", False):
        overrides["data.download"] = True
    files = getattr(args, "config_files", [])
    if target == "run":
        config = Path(args.run) / "config.toml"
        if not config.is_file():
            raise FileNotFoundError(f"{args.run} is not a tamnas run directory (no config.toml); "
                                    "make one with `tamnas run PRESET --out DIR`")
        return check_names(load_run_config(config, overrides, files))
    return check_names(load_config(args.preset, overrides, files))


def resolve_sources(args: argparse.Namespace, target: str) -> dict[str, str]:
    """Where each config value of this call comes from: default, preset or run, --config, --set
    (or --data, --seed, --download, which stand for one key each)."""
    from tamnas.config import parse_override
    from tamnas.config.sources import PRESET, RUN, config_sources
    from tamnas.rundir import RunDir

    overrides = dict(parse_override(s) for s in getattr(args, "overrides", []))
    labels = {}
    for key, option in (("seed", "seed"), ("data.root", "data"), ("data.download", "download")):
        if getattr(args, option, None) not in (None, False):
            overrides[key], labels[key] = True, f"--{option}"
    base = RunDir(args.run).config if target == "run" else args.preset
    return config_sources(base, overrides, getattr(args, "config_files", []),
                          base_kind=RUN if target == "run" else PRESET, labels=labels)


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


def set_threads(n: int | None) -> None:
    if n is None:
        return
    if n < 1:
        raise ValueError(f"--threads {n}: give 1 or more CPU threads")
    import torch

    torch.set_num_threads(n)


def dispatch(args: argparse.Namespace) -> int:
    from tamnas import distributed as dist
    from tamnas.commands import COMMANDS, Call

    cmd = COMMANDS[args.command]
    if len(set(getattr(args, "resume_flags", []))) > 1:
        raise ValueError("--resume and --no-resume contradict each other; give one")
    if cmd.check is not None:
        cmd.check(args)
    if cmd.name == "space-info" and args.list:  # needs no config
        cmd.main(Call(cfg=None, args=args))
        return 0
    cfg = resolve_config(args, cmd.target) if cmd.target != "none" else None
    call = Call(cfg=cfg, args=args, quiet=args.quiet, resume=getattr(args, "resume", True),
                sources=resolve_sources(args, cmd.target) if cmd.target != "none" else None)
    if hasattr(args, "device"):
        set_threads(args.threads)
        device = resolve_device(args.device)
        dist.init_from_env(args.device)
        call.device = dist.local_device(device)
    cmd.main(call)
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
    if e.errno == errno.ELOOP:
        return f"too many levels of symbolic links{where}; choose another --out"
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
    except BrokenPipeError:  # the output was piped into a reader that stopped (| head)
        sys.stderr.close()
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
