"""`tamnas config`: every config key with its type, default, allowed values and help."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any, get_type_hints

from tamnas.checks import registered_names
from tamnas.commands import Call, command
from tamnas.config import SECTIONS, Registered, toml_value


def _type_name(typ: Any, meta: Mapping) -> str:
    item = meta.get("item")
    return f"list[{item.__name__}]" if typ is list and item is not None else typ.__name__


def _allowed(meta: Mapping) -> str:
    choices = meta.get("choices")
    if isinstance(choices, Registered):
        return ", ".join(registered_names(choices.kind))
    if choices:
        return ", ".join(map(str, choices))
    low, high = meta.get("low"), meta.get("high")
    if low is None and high is None:
        return ""
    return f"[{low if low is not None else '-inf'}, {high if high is not None else 'inf'}]"


def key_reference(section: str | None = None, markdown: bool = False) -> str:
    """Every config key (or one section's): type, default, allowed values, one line of help."""
    if section is not None and section not in SECTIONS:
        raise ValueError(f"config: unknown section {section!r}; choose one of "
                         f"{', '.join(SECTIONS)}")
    seed_help = "one seed for the whole run (data split, sampling, attacks)"
    rows = [("seed", "int", "0", "[0, inf]", seed_help)] if section is None else []
    for name, cls in SECTIONS.items():
        if section not in (None, name):
            continue
        hints = get_type_hints(cls)
        for f in dataclasses.fields(cls):
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            rows.append((f"{name}.{f.name}", _type_name(hints[f.name], f.metadata),
                         toml_value(default), _allowed(f.metadata), f.metadata.get("help", "")))
    head = ("key", "type", "default", "allowed", "help")
    if markdown:
        esc = [[c.replace("|", "\\|") for c in r] for r in rows]
        return "\n".join(["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
                         + ["| " + " | ".join(f"`{c}`" if j < 3 and c else c
                                              for j, c in enumerate(r)) + " |" for r in esc])

    def short(text: str, n: int = 32) -> str:
        return text if len(text) <= n else text[:n - 3] + "..."

    cells = [[r[0], r[1], short(r[2]), short(r[3])] for r in rows]
    widths = [max(len(h), *(len(c[j]) for c in cells)) for j, h in enumerate(head[:4])]
    lines = ["  ".join(h.ljust(w) for h, w in zip(head[:4], widths)) + "  help"]
    lines += ["  ".join(c.ljust(w) for c, w in zip(cell, widths)) + "  " + r[4]
              for cell, r in zip(cells, rows)]
    return "\n".join(lines)


def used_values(section: str | None = None, *, preset: str | None = None,
                run: str | Path | None = None, overrides: list[str] | None = None,
                files: list[str] | None = None, markdown: bool = False) -> str:
    """The values a command would use on `preset` or on the run `run` with these --set and
    --config, each with where it comes from (default, preset, run, --config, --set)."""
    from tamnas.config import load_config, load_run_config, parse_override
    from tamnas.config.sources import PRESET, RUN, config_sources, flatten
    from tamnas.rundir import RunDir

    if section is not None and section not in SECTIONS:
        raise ValueError(f"config: unknown section {section!r}; choose one of "
                         f"{', '.join(SECTIONS)}")
    sets = dict(parse_override(s) for s in overrides or [])
    if run is not None:
        base = RunDir(run).config
        if not base.is_file():
            raise FileNotFoundError(f"--run {run}: not a tamnas run directory (no config.toml)")
        cfg, kind = load_run_config(base, sets, files), RUN
    else:
        base, kind = preset or "quickstart", PRESET
        cfg = load_config(base, sets, files)
    sources = config_sources(base, sets, files, base_kind=kind)
    values = flatten(cfg.to_dict())
    rows = [(k, toml_value(values[k]), sources[k]) for k in sources
            if section is None or k.split(".")[0] == section]
    head = ("key", "value", "from")
    if markdown:
        return "\n".join(["| key | value | from |", "| --- | --- | --- |"]
                         + [f"| `{k}` | `{v}` | {f} |" for k, v, f in rows])
    widths = [max(len(h), *(len(r[j]) for r in rows)) for j, h in enumerate(head[:2])]
    title = f"{'run ' + str(run) if run is not None else 'preset ' + str(base)}"
    lines = [f"# the values a command on {title} would use, and where each comes from"]
    lines += ["  ".join(h.ljust(w) for h, w in zip(head[:2], widths)) + "  from"]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r[:2], widths)) + "  " + r[2] for r in rows]
    return "\n".join(lines)


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("section", nargs="?", default=None,
                   help="show one section only (data, space, attack, train, search, retrain, "
                        "output)")
    p.add_argument("--markdown", action="store_true", help="a Markdown table (for docs)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--preset", default=None, metavar="NAME",
                   help="show the values of this preset (or .toml), each with where it comes "
                        "from: default, preset, --config, --set")
    g.add_argument("--run", default=None, metavar="DIR",
                   help="show the values a command on this run would use, with where each "
                        "comes from: run, --config, --set")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="with --preset/--run: an override to show, as commands take it")
    p.add_argument("--config", dest="config_files", action="append", default=[],
                   metavar="TOML", help="with --preset/--run: a TOML file merged over it")


def _check(args: argparse.Namespace) -> None:
    if (args.overrides or args.config_files) and args.preset is None and args.run is None:
        raise ValueError("config: --set and --config show their effect on a preset or a run; "
                         "add --preset NAME or --run DIR")


@command("config", "list every config key, or the values a preset or run would use", "none",
         arguments=_arguments, options=(), check=_check,
         description="The keys that presets, --config files and --set accept, generated from the "
                     "config dataclasses: `tamnas config train` shows one section. With "
                     "--preset NAME or --run DIR: the values that would be used and where each "
                     "comes from (default, preset, run, --config, --set).")
def main(call: Call) -> str:
    a = call.args
    if a.preset is not None or a.run is not None:
        text = used_values(a.section, preset=a.preset, run=a.run, overrides=a.overrides,
                           files=a.config_files, markdown=a.markdown)
    else:
        text = key_reference(a.section, markdown=a.markdown)
    print(text)
    return text
