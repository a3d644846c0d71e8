"""Reading, checking and writing configs: presets, TOML files, `--set` overrides.

A config is built from a preset (or a TOML file), then `--config` files and
`--set key=value` overrides are merged in. Every key is checked against the
schema's fields: an unknown key, a wrong type or an out-of-range value
raises ValueError with one line naming the key and what is allowed.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any, get_type_hints

from tamnas.config.schema import RATIOS, SCORE_NAMES, SECTIONS, Config, Registered
from tamnas.files import atomic_write_text

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def preset_names() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files("tamnas.presets").iterdir()
                  if p.name.endswith(".toml"))


def _read_toml(source: str | Path) -> tuple[str, dict]:
    """Read a preset name or a TOML path into (name, nested dict)."""
    path = Path(str(source)).expanduser()
    if str(source).endswith(".toml") or path.exists():
        if not path.is_file():
            raise FileNotFoundError(f"config file {path} does not exist")
        text, name = path.read_text(), path.stem
    else:
        names = preset_names()
        if source not in names:
            raise ValueError(f"unknown preset {source!r}; choose one of {', '.join(names)} "
                             "or give a path to a .toml file")
        text, name = (resources.files("tamnas.presets") / f"{source}.toml").read_text(), str(source)
    try:
        return name, tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"{source}: not valid TOML ({e})") from None


def _check(key: str, value: Any, typ: Any, meta: Mapping) -> Any:
    """Coerce and validate one value; raise ValueError naming the key."""
    if typ is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if typ is list and isinstance(value, tuple):
        value = list(value)
    if typ is str and key.endswith("resample_every") and isinstance(value, int):
        value = str(value)
    ok = isinstance(value, typ) and not (typ is int and isinstance(value, bool))
    if not ok:
        raise ValueError(f"{key}: expected {typ.__name__}, got {type(value).__name__} {value!r}")
    item = meta.get("item")
    if typ is list and item is not None:
        rule = {k: meta.get(k) for k in ("choices", "low", "high")}
        return [_check(f"{key}[{i}]", v, item, rule) for i, v in enumerate(value)]
    choices = meta.get("choices")
    if choices and not isinstance(choices, Registered) and value not in choices:
        raise ValueError(f"{key}: {value!r} is not allowed; choose one of {', '.join(map(str, choices))}")
    low, high = meta.get("low"), meta.get("high")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{key}: must be a finite number, got {value}")
        if (low is not None and value < low) or (high is not None and value > high):
            rng = f"[{low if low is not None else '-inf'}, {high if high is not None else 'inf'}]"
            raise ValueError(f"{key}: {value} is out of range; allowed {rng}")
    return value


def _section_from(name: str, cls: type, values: Mapping) -> Any:
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in values.items():
        if key not in fields:
            raise ValueError(f"{name}.{key}: unknown key; allowed keys of [{name}]: "
                             f"{', '.join(fields)}")
        kwargs[key] = _check(f"{name}.{key}", value, hints[key], fields[key].metadata)
    return cls(**kwargs)


def _merge(base: dict, extra: Mapping) -> dict:
    out = dict(base)
    for k, v in extra.items():
        out[k] = _merge(out.get(k, {}), v) if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) else v
    return out


def parse_override(text: str) -> tuple[str, Any]:
    """Parse `section.key=value`; the value is read as TOML, falling back to a bare string."""
    if "=" not in text:
        raise ValueError(f"--set {text!r}: expected section.key=value, e.g. search.pop_size=20")
    key, raw = (s.strip() for s in text.split("=", 1))
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key, value


def from_dict(values: Mapping, preset: str = "custom") -> Config:
    """Build and validate a Config from a nested dict."""
    values = dict(values)
    top = {}
    for key in ("seed", "preset"):
        if key in values:
            top[key] = values.pop(key)
    sections = {}
    for name, sub in values.items():
        if name not in SECTIONS:
            raise ValueError(f"{name}: unknown config section or key; allowed: seed, "
                             f"{', '.join(SECTIONS)}")
        if not isinstance(sub, Mapping):
            raise ValueError(f"{name}: expected a table of keys, got {sub!r}")  # noqa: TRY004 (a user-facing one-line error)
        sections[name] = _section_from(name, SECTIONS[name], sub)
    seed = _check("seed", top.get("seed", 0), int, {"low": 0})
    cfg = Config(preset=str(top.get("preset", preset)), seed=seed, **sections)
    _check_consistency(cfg)
    return cfg


def _check_consistency(cfg: Config) -> None:
    s = cfg.space
    if len(s.stage_channels) != len(s.stage_layers) or not s.stage_layers:
        raise ValueError("space.stage_channels and space.stage_layers must be non-empty lists of "
                         "the same length")
    bad = [r for r in s.ratios if r not in RATIOS]
    if bad or not s.ratios:
        raise ValueError(f"space.ratios: {bad} not allowed; choose from {', '.join(map(str, RATIOS))}")
    if not s.blocks or any(not isinstance(b, int) or not 0 <= b <= 21 for b in s.blocks):
        raise ValueError("space.blocks: block ids must be integers in 0..21 (`tamnas space-info` lists them)")
    if not any(b <= 17 for b in s.blocks):
        raise ValueError("space.blocks: at least one of the ids 0..17 is needed for stride-2 layers")
    bad = [o for o in cfg.search.objectives if o not in SCORE_NAMES]
    if bad or len(cfg.search.objectives) < 2:
        raise ValueError(f"search.objectives: need two or more of {', '.join(SCORE_NAMES)}; got "
                         f"{cfg.search.objectives}")
    twice = sorted({o for o in cfg.search.objectives if cfg.search.objectives.count(o) > 1})
    if twice:
        raise ValueError(f"search.objectives: {', '.join(twice)} given twice; name each "
                         "objective once")
    for key in ("params_range_phase1", "params_range_phase2"):
        r = getattr(cfg.train, key)
        if len(r) != 2 or r[0] > r[1]:
            raise ValueError(f"train.{key}: expected [low, high] with low <= high, got {r}")
    r = cfg.search.params_range
    if len(r) != 2 or r[0] > r[1]:
        raise ValueError(f"search.params_range: expected [low, high] with low <= high, got {r}")
    if cfg.train.resample_every != "batch" and not cfg.train.resample_every.isdigit():
        raise ValueError(f"train.resample_every: expected 'batch' or a number of epochs, got "
                         f"{cfg.train.resample_every!r}")


def load_config(source: str | Path = "quickstart", overrides: Mapping[str, Any] | None = None,
                extra_files: list[str | Path] | None = None) -> Config:
    """Load a preset (or TOML path), merge extra TOML files and `section.key` overrides."""
    name, values = _read_toml(source)
    for extra in extra_files or []:
        values = _merge(values, _read_toml(extra)[1])
    for key, value in (overrides or {}).items():
        parts = key.split(".")
        nested: Any = value
        for part in reversed(parts):
            nested = {part: nested}
        values = _merge(values, nested)
    values.setdefault("preset", name)
    return from_dict(values, preset=name)


def load_run_config(path: str | Path, overrides: Mapping[str, Any] | None = None,
                    extra_files: list[str | Path] | None = None) -> Config:
    """A run's config (the run folder or its config.toml), which must be complete: a run never
    falls back to defaults."""
    path = Path(path).expanduser()
    if path.is_dir():
        from tamnas.rundir import RunDir

        path = RunDir(path).config
        if not path.is_file():
            raise FileNotFoundError(f"{path.parent} is not a tamnas run directory (no "
                                    f"{path.name}); make one with `tamnas run PRESET --out DIR`")
    _, values = _read_toml(path)
    missing = [k for k in ("seed", *SECTIONS) if k not in values]
    if missing:
        what = "empty" if not values else f"incomplete (no {', '.join(missing)})"
        raise ValueError(f"{path} is {what}; restore it from a copy, or start the run again with "
                         "`tamnas run PRESET --out DIR --no-resume`")
    return load_config(path, overrides, extra_files)


def toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def to_toml(cfg: Config) -> str:
    """Serialise a config to TOML that `load_config` reads back to an equal Config."""
    d = cfg.to_dict()
    lines = [f"preset = {toml_value(d.pop('preset'))}", f"seed = {d.pop('seed')}"]
    for section, values in d.items():
        lines += ["", f"[{section}]"] + [f"{k} = {toml_value(v)}" for k, v in values.items()]
    return "\n".join(lines) + "\n"


def save_config(cfg: Config, path: str | Path) -> None:
    atomic_write_text(path, to_toml(cfg))


def record_sections(path: str | Path, cfg: Config, sections: tuple[str, ...]) -> bool:
    """Put `sections` of `cfg` into the run config at `path` (the settings that produced
    a stage's results); the rest stays as recorded. True if the file changed."""
    recorded = load_run_config(path)
    merged = dataclasses.replace(recorded, **{s: getattr(cfg, s) for s in sections})
    if merged.to_dict() == recorded.to_dict():
        return False
    save_config(merged, path)
    return True
