"""Where each value of a config comes from: the schema default, the preset, the run, a --config
file or --set; what `tamnas config --preset/--run` shows and what fitting image counts reads."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tamnas.config.loading import _read_toml
from tamnas.config.schema import Config

DEFAULT, PRESET, RUN, CONFIG_FILE, SET = "default", "preset", "run", "--config", "--set"
EXPLICIT = (CONFIG_FILE, SET)  # what the user typed for this call: never changed behind their back


def flatten(values: Mapping, prefix: str = "") -> dict[str, Any]:
    """A nested dict as {"section.key": value}; lists stay values."""
    out: dict[str, Any] = {}
    for k, v in values.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten(v, f"{key}."))
        else:
            out[key] = v
    return out


def config_sources(base: str | Path, overrides: Mapping[str, Any] | None = None,
                   extra_files: list[str | Path] | None = None, *, base_kind: str = PRESET,
                   labels: Mapping[str, str] | None = None) -> dict[str, str]:
    """{key: source} for every key of the config that `load_config(base, overrides,
    extra_files)` builds: the last of default, `base_kind` (preset or run), --config, --set
    that sets it. `labels` renames the source of some overrides (data.root -> --data)."""
    sources = {k: DEFAULT for k in flatten(Config().to_dict()) if k != "preset"}
    for key in flatten(_read_toml(base)[1]):
        if key in sources:
            sources[key] = base_kind
    for extra in extra_files or []:
        for key in flatten(_read_toml(extra)[1]):
            if key in sources:
                sources[key] = CONFIG_FILE
    for key in overrides or {}:
        if key in sources:
            sources[key] = (labels or {}).get(key, SET)
    return sources


def is_explicit(sources: Mapping[str, str] | None, key: str) -> bool:
    """True when this call's --set/--config (or an option standing for one) set `key`."""
    return sources is not None and sources.get(key, DEFAULT) not in (DEFAULT, PRESET, RUN)


__all__ = ["CONFIG_FILE", "DEFAULT", "EXPLICIT", "PRESET", "RUN", "SET", "config_sources",
           "flatten", "is_explicit"]
