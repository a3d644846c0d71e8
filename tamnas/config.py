"""Typed run configuration: dataclasses, TOML presets, overrides and validation.

A config is built from a preset (or a TOML file), then `--config` files and
`--set key=value` overrides are merged in. Every key is checked against the
dataclass fields below: an unknown key, a wrong type or an out-of-range value
raises ValueError with one line naming the key and what is allowed.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, get_type_hints

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

DATASETS = ("digits", "cifar10", "cifar100", "svhn")
OBJECTIVES = ("standard", "pgd_at", "fgsm_rs", "trades", "trades_yopo")
SCORE_NAMES = ("adv_err", "clean_err", "params", "flops", "ood_aupr_err")
FIGURE_FORMATS = ("png", "svg", "pdf")
RATIOS = (0.2, 0.4, 0.6, 0.8, 1.0, 1.2, 1.4, 1.6, 1.8, 2.0)


def _f(default: Any, *, choices: tuple | None = None, low: float | None = None,
       high: float | None = None, item: Any = None, help: str = "") -> Any:
    """A dataclass field carrying its validation rule.

    For a list, `item` is the type of its elements and `low`/`high`/`choices`
    apply to each element, so a bad element fails here, not epochs later.
    """
    meta = {"choices": choices, "low": low, "high": high, "item": item, "help": help}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class DataConfig:
    dataset: str = _f("digits", choices=DATASETS)
    root: str = _f("~/data", help="folder holding the dataset files")
    download: bool = _f(False, help="let torchvision download missing files")
    resolution: int = _f(32, low=8, high=512)
    val_size: int = _f(5000, low=1, help="training images held out as search validation")
    train_limit: int = _f(0, low=0, help="use only this many training images (0: all)")
    test_limit: int = _f(0, low=0, help="use only this many test images (0: all)")
    batch_size: int = _f(128, low=1)
    eval_batch_size: int = _f(256, low=1)
    augment: bool = _f(True, help="pad-4 crop + horizontal flip (CIFAR-style)")
    num_workers: int = _f(0, low=0)
    ood: str = _f("auto", choices=("auto", "none", "svhn", "cifar10", "noise", "permuted"))
    ood_size: int = _f(1000, low=1)


@dataclass
class SpaceConfig:
    name: str = _f("shufflenet", choices=("shufflenet", "darts"))
    width_mult: float = _f(1.0, low=0.05, high=8.0)
    stem_channels: int = _f(24, low=1)
    stage_channels: list = _f([48, 96, 192], item=int, low=1)
    stage_layers: list = _f([4, 8, 4], item=int, low=1)
    head_channels: int = _f(176, low=1)
    fc_channels: int = _f(1024, low=1)
    head: str = _f("compact", choices=("compact", "table1"),
                   help="head after the pool: compact SE -> fc_channels, or Table I's SE -> "
                        "head_mid_channels -> fc_channels (DESIGN.md 4.1)")
    head_mid_channels: int = _f(920, low=1, help="width of Table I's 'SE 920' row (head = table1)")
    ratio_base: str = _f("half", choices=("half", "full"),
                         help="the channel ratio scales half the block's output width or all of it")
    ratios: list = _f(list(RATIOS), item=float, choices=RATIOS, help="channel ratios offered to every layer")
    blocks: list = _f(list(range(22)), item=int, low=0, high=21, help="block ids offered (DESIGN.md 4.1)")
    nonlocal_reduction: int = _f(2, low=1, help="non-local inner channels = channels // this")
    se_reduction: int = _f(4, low=1)
    weight_sharing: str = _f("family", choices=("none", "projection", "kernel", "family"),
                             help="which candidates of a choice layer share weights in the supernet")
    # DARTS cell space (papers 000-003)
    cells: int = _f(8, low=3)
    init_channels: int = _f(16, low=1)
    nodes: int = _f(4, low=1, high=8)
    placement: str = _f("standard", choices=("standard", "dsara"))


@dataclass
class AttackConfig:
    """The attack that scores architectures during search and evaluation."""

    eps: float = _f(8 / 255, low=0.0, high=1.0)
    steps: int = _f(10, low=0)
    step_size: float = _f(2 / 255, low=0.0, high=1.0)
    restarts: int = _f(1, low=1)
    loss: str = _f("ce", choices=("ce", "kl"))


@dataclass
class TrainConfig:
    """Supernet training (Algorithm 1 of paper 004) and its objective."""

    objective: str = _f("trades_yopo", choices=OBJECTIVES)
    phase1_epochs: int = _f(500, low=0)
    phase2_epochs: int = _f(500, low=0)
    batches_per_epoch: int = _f(0, low=0, help="stop an epoch after this many batches (0: all)")
    lr: float = _f(0.1, low=0.0)
    momentum: float = _f(0.9, low=0.0, high=1.0)
    weight_decay: float = _f(5e-4, low=0.0)
    lr_milestones: list = _f([200, 400, 450, 600, 700, 800], item=int, low=0)
    lr_gamma: float = _f(0.1, low=0.0, high=1.0)
    phase2_lr_reset: bool = _f(True, help="phase 2 starts again at lr (paper: 0.1)")
    params_range_phase1: list = _f([1_823_000, 2_375_000], item=int, low=0)
    params_range_phase2: list = _f([1_610_000, 2_370_000], item=int, low=0)
    enlarge_every: int = _f(20, low=1, help="phase 2 adds the next smaller ratio every N epochs")
    block_enlarge_every: int = _f(0, low=0, help="progressive blocks: start with the first two "
                                  "offered blocks, add the next one every N epochs (0: all from "
                                  "the start)")
    warmup_epochs: int = _f(0, low=0, help="lr rises linearly to train.lr over the first N epochs")
    resample_every: str = _f("batch", help="'batch' or a number of epochs")
    sandwich: bool = _f(False, help="each step also trains the widest and the narrowest path of "
                                    "the ratios offered (random blocks), gradients averaged over "
                                    "the three (the sandwich rule); 3x the work per step")
    eps: float = _f(8 / 255, low=0.0, high=1.0)
    beta: float = _f(1.0, low=0.0, help="TRADES weight of the KL term (1/lambda)")
    yopo_m: int = _f(5, low=1)
    yopo_n: int = _f(3, low=1)
    yopo_sigma: float = _f(0.007, low=0.0)
    first_layer_grad: str = _f("discard", choices=("discard", "hamiltonian"))
    adversary_bn: str = _f("batch", choices=("eval", "batch"),
                           help="BatchNorm of the supernet-training adversary: running (eval) or batch "
                                "statistics; retraining has its own retrain.adversary_bn")
    pgd_steps: int = _f(10, low=1)
    pgd_step_size: float = _f(2 / 255, low=0.0)
    fgsm_step: float = _f(1.25, low=0.0, help="FGSM-RS step as a multiple of eps")
    precision: str = _f("fp32", choices=("fp32", "bf16"),
                        help="arithmetic of the training passes (supernet training and retraining, "
                             "their adversaries included): bf16 runs them under autocast; weights, "
                             "gradients and the optimiser stay float32, and the attacks that score "
                             "archs (search, validate, report) always run in float32")
    channels_last: bool = _f(True, help="on CUDA, train (and retrain) in the channels-last memory "
                                        "format that cuDNN's fastest convolutions use; ignored on CPU")


@dataclass
class SearchConfig:
    strategy: str = _f("nsga2", choices=("nsga2", "mgda"))
    pop_size: int = _f(50, low=2)
    n_offsprings: int = _f(50, low=1)
    generations: int = _f(20, low=1)
    p_m: float = _f(0.1, low=0.0, high=1.0)
    p_c: float = _f(0.9, low=0.0, high=1.0)
    tournament_size: int = _f(2, low=2)
    objectives: list = _f(["adv_err", "clean_err", "params"], item=str, choices=SCORE_NAMES)
    params_range: list = _f([0, 0], item=int, low=0, help="[low, high]; [0, 0]: the phase-2 training range")
    bn_images: int = _f(2000, low=0, help="training images used to recalibrate BatchNorm")
    eval_images: int = _f(2000, low=1, help="validation images every candidate is scored on")
    ood: bool = _f(False, help="also score OoD AUPR")
    # MGDA (papers 000-003)
    mgda_variant: str = _f("e2rnas", choices=("darts", "e2rnas", "dsara", "sdarts-rs", "sdarts-adv"))
    mgda_epochs: int = _f(50, low=1)
    mgda_targets: list = _f([], item=float, low=1.0, help="parameter counts")
    mgda_normalization: str = _f("loss+", choices=("none", "l2", "loss", "loss+"))
    mgda_arch_lr: float = _f(3e-4, low=0.0)
    mgda_weight_lr: float = _f(0.025, low=0.0)
    mgda_second_order: bool = _f(False)
    mgda_batches_per_epoch: int = _f(0, low=0)
    mgda_finetune_epochs: float = _f(0.0, low=0.0, help="train the derived archs' paths of the "
                                     "searched supernet this many epochs before scoring them")


@dataclass
class RetrainConfig:
    epochs: int = _f(100, low=1)
    batches_per_epoch: int = _f(0, low=0)
    lr: float = _f(0.1, low=0.0)
    momentum: float = _f(0.9, low=0.0, high=1.0)
    weight_decay: float = _f(5e-3, low=0.0)
    lr_milestones: list = _f([20, 40, 80], item=int, low=0)
    lr_gamma: float = _f(0.1, low=0.0, high=1.0)
    adversary_bn: str = _f("eval", choices=("eval", "batch"),
                           help="BatchNorm of the retraining adversary (train.adversary_bn: the supernet's)")


@dataclass
class OutputConfig:
    top_k: int = _f(10, low=1)
    top_by: str = _f("adv_err", choices=("adv_err", "weighted", "crowding"))
    formats: list = _f(["png", "svg"], item=str, choices=FIGURE_FORMATS)
    eval_eps: list = _f([2 / 255, 4 / 255, 6 / 255, 8 / 255], item=float, low=0.0, high=1.0)
    eval_steps: list = _f([10, 30, 50], item=int, low=0)


@dataclass
class Config:
    preset: str = "custom"
    seed: int = _f(0, low=0)
    data: DataConfig = field(default_factory=DataConfig)
    space: SpaceConfig = field(default_factory=SpaceConfig)
    attack: AttackConfig = field(default_factory=AttackConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    retrain: RetrainConfig = field(default_factory=RetrainConfig)
    output: OutputConfig = field(default_factory=OutputConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


SECTIONS = {"data": DataConfig, "space": SpaceConfig, "attack": AttackConfig, "train": TrainConfig,
            "search": SearchConfig, "retrain": RetrainConfig, "output": OutputConfig}


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
    if choices and value not in choices:
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
            raise ValueError(f"{name}: expected a table of keys, got {sub!r}")
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
        raise ValueError("space.blocks: block ids must be integers in 0..21 (DESIGN.md 4.1)")
    if not any(b <= 17 for b in s.blocks):
        raise ValueError("space.blocks: at least one of the ids 0..17 is needed for stride-2 layers")
    bad = [o for o in cfg.search.objectives if o not in SCORE_NAMES]
    if bad or len(cfg.search.objectives) < 2:
        raise ValueError(f"search.objectives: need two or more of {', '.join(SCORE_NAMES)}; got "
                         f"{cfg.search.objectives}")
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
    """A run directory's config.toml, which must be complete: a run never falls back to defaults."""
    path = Path(path)
    _, values = _read_toml(path)
    missing = [k for k in ("seed", *SECTIONS) if k not in values]
    if missing:
        what = "empty" if not values else f"incomplete (no {', '.join(missing)})"
        raise ValueError(f"{path} is {what}; restore it from a copy, or start the run again with "
                         "`tamnas run PRESET --out DIR --no-resume`")
    return load_config(path, overrides, extra_files)


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def to_toml(cfg: Config) -> str:
    """Serialise a config to TOML that `load_config` reads back to an equal Config."""
    d = cfg.to_dict()
    lines = [f"preset = {_toml_value(d.pop('preset'))}", f"seed = {d.pop('seed')}"]
    for section, values in d.items():
        lines += ["", f"[{section}]"] + [f"{k} = {_toml_value(v)}" for k, v in values.items()]
    return "\n".join(lines) + "\n"


def save_config(cfg: Config, path: str | Path) -> None:
    from tamnas.checkpoint import atomic_write_text

    atomic_write_text(path, to_toml(cfg))


__all__ = [
    "RATIOS",
    "AttackConfig",
    "Config",
    "DataConfig",
    "OutputConfig",
    "RetrainConfig",
    "SearchConfig",
    "SpaceConfig",
    "TrainConfig",
    "from_dict",
    "load_config",
    "load_run_config",
    "parse_override",
    "preset_names",
    "save_config",
    "to_toml",
]
