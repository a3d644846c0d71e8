"""`tamnas config`: every config key with its type, default, allowed values and help."""

from __future__ import annotations

import argparse

from tamnas.commands import Call, command
from tamnas.config import key_reference


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
