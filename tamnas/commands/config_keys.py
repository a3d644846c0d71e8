"""`tamnas config`: every config key with its type, default, allowed values and help."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Mapping
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
    rows = [("seed", "int", "0", "[0, inf]", "one seed for the whole run (data split, sampling, "
             "attacks)")] if section is None else []
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


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("section", nargs="?", default=None,
                   help="show one section only (data, space, attack, train, search, retrain, "
                        "output)")
    p.add_argument("--markdown", action="store_true", help="a Markdown table (for docs)")


@command("config", "list every config key: type, default, allowed values, help", "none",
         arguments=_arguments, options=(),
         description="The keys that presets, --config files and --set accept, generated from the "
                     "config dataclasses: `tamnas config train` shows one section.")
def main(call: Call) -> str:
    text = key_reference(call.args.section, markdown=call.args.markdown)
    print(text)
    return text
