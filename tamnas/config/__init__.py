"""Typed run configuration: the schema (one dataclass per section) and its loading."""

from __future__ import annotations

from tamnas.config.loading import (
    from_dict,
    load_config,
    load_run_config,
    parse_override,
    preset_names,
    record_sections,
    save_config,
    to_toml,
    toml_value,
)
from tamnas.config.schema import (
    FIGURE_FORMATS,
    RATIOS,
    SCORE_NAMES,
    SECTIONS,
    AttackConfig,
    Config,
    DataConfig,
    OutputConfig,
    Registered,
    RetrainConfig,
    SearchConfig,
    SpaceConfig,
    TrainConfig,
)

__all__ = [
    "FIGURE_FORMATS",
    "RATIOS",
    "SCORE_NAMES",
    "SECTIONS",
    "AttackConfig",
    "Config",
    "DataConfig",
    "OutputConfig",
    "Registered",
    "RetrainConfig",
    "SearchConfig",
    "SpaceConfig",
    "TrainConfig",
    "from_dict",
    "load_config",
    "load_run_config",
    "parse_override",
    "preset_names",
    "record_sections",
    "save_config",
    "to_toml",
    "toml_value",
]
