"""Config presets, overrides and validation messages."""

from __future__ import annotations

import pytest

import tamnas
from tamnas.config import Config, from_dict, load_config, parse_override, preset_names, to_toml


def test_every_preset_loads_and_validates():
    names = preset_names()
    for required in ("quickstart", "cifar10-tamnas", "svhn-tamnas", "cifar10-e2rnas", "cifar10-dsara"):
        assert required in names
    for name in names:
        cfg = load_config(name)
        assert isinstance(cfg, Config) and cfg.preset == name


def test_paper_preset_keeps_paper_settings():
    cfg = load_config("cifar10-tamnas")
    assert (cfg.train.yopo_m, cfg.train.yopo_n, cfg.train.beta) == (5, 3, 1.0)
    # section III-C's windows, unscaled, with the head/ratio reading that reaches them
    assert cfg.train.params_range_phase1 == [1_823_000, 2_375_000]
    assert cfg.train.params_range_phase2 == [1_610_000, 2_370_000]
    assert (cfg.space.head, cfg.space.ratio_base) == ("table1", "full")
    lo, hi = tamnas.build_space(cfg).params_bounds()
    assert lo < cfg.train.params_range_phase2[0] and cfg.train.params_range_phase1[1] < hi
    assert (cfg.search.pop_size, cfg.search.n_offsprings, cfg.search.generations) == (50, 50, 20)
    assert cfg.search.p_m == pytest.approx(0.1)
    assert cfg.space.stage_channels == [48, 96, 192] and cfg.space.stage_layers == [4, 8, 4]
    assert cfg.data.batch_size == 512 and cfg.attack.eps == pytest.approx(8 / 255)


def test_overrides_are_typed_and_applied():
    cfg = load_config("quickstart", {"search.pop_size": 20, "attack.eps": 0, "seed": 3})
    assert cfg.search.pop_size == 20
    assert cfg.attack.eps == 0.0 and isinstance(cfg.attack.eps, float)
    assert cfg.seed == 3


@pytest.mark.parametrize("text, key, value", [
    ("search.pop_size=20", "search.pop_size", 20),
    ("data.dataset=cifar10", "data.dataset", "cifar10"),
    ('data.dataset="svhn"', "data.dataset", "svhn"),
    ("train.lr_milestones=[1, 2]", "train.lr_milestones", [1, 2]),
    ("data.augment=false", "data.augment", False),
])
def test_parse_override(text, key, value):
    assert parse_override(text) == (key, value)


@pytest.mark.parametrize("overrides, fragment", [
    ({"search.pop_sise": 20}, "search.pop_sise: unknown key"),
    ({"search.pop_size": "many"}, "search.pop_size: expected int"),
    ({"search.pop_size": 1}, "search.pop_size: 1 is out of range"),
    ({"search.p_m": 1.5}, "search.p_m: 1.5 is out of range"),
    ({"data.dataset": "emnist"}, "data.dataset: 'emnist' is not allowed; choose one of digits"),
    ({"bogus.key": 1}, "bogus: unknown config section"),
    ({"search.objectives": ["adv_err"]}, "search.objectives"),
    ({"space.ratios": [0.3]}, "space.ratios"),
    ({"train.resample_every": "often"}, "train.resample_every"),
])
def test_bad_values_fail_with_one_line_naming_the_key(overrides, fragment):
    with pytest.raises(ValueError) as info:
        tamnas.load_config("quickstart", overrides)
    message = str(info.value)
    assert fragment in message
    assert "\n" not in message


def test_unknown_preset_lists_the_presets():
    with pytest.raises(ValueError, match="unknown preset 'nope'.*quickstart"):
        load_config("nope")


def test_missing_toml_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_config(tmp_path / "missing.toml")


def test_toml_round_trip_and_extra_file(tmp_path):
    cfg = load_config("cifar10-tamnas", {"search.pop_size": 12})
    path = tmp_path / "resolved.toml"
    path.write_text(to_toml(cfg))
    assert load_config(path) == cfg
    extra = tmp_path / "mine.toml"
    extra.write_text("[search]\ngenerations = 3\n")
    merged = load_config("quickstart", extra_files=[extra])
    assert merged.search.generations == 3 and merged.search.pop_size == load_config("quickstart").search.pop_size


def test_from_dict_defaults():
    cfg = from_dict({})
    assert cfg.space.name == "shufflenet" and cfg.seed == 0


def test_every_key_has_help_and_the_docs_page_is_current(capsys):
    import dataclasses
    from pathlib import Path

    from tamnas.cli import main
    from tamnas.config import SECTIONS

    missing = [f"{s}.{f.name}" for s, cls in SECTIONS.items() for f in dataclasses.fields(cls)
               if not f.metadata.get("help")]
    assert not missing, f"keys without help: {missing}"
    # a fresh process: tests register toy spaces and strategies, the docs list the built-in ones
    import subprocess
    import sys

    table = subprocess.run([sys.executable, "-m", "tamnas", "config", "--markdown"],
                           capture_output=True, text=True, check=True).stdout.strip()
    page = (Path(__file__).resolve().parents[1] / "docs" / "config.md").read_text()
    assert table in page, "docs/config.md is stale: regenerate it with `tamnas config --markdown`"
    assert main(["config", "search"]) == 0
    text = capsys.readouterr().out
    assert "search.pop_size" in text and "data.dataset" not in text
