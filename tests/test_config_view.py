"""`tamnas config --preset NAME` / `--run DIR`: the values a command would use, each with
where it comes from; the positional section filter still works."""

from __future__ import annotations

from cli_configs import on_cpu, set_args

from tamnas.cli import main


def _rows(text: str) -> dict[str, tuple[str, str]]:
    out = {}
    for line in text.splitlines()[2:]:
        key, *middle, source = line.split()
        out[key] = (" ".join(middle), source)
    return out


def test_preset_values_name_their_source(tmp_path, capsys):
    extra = tmp_path / "x.toml"
    extra.write_text("[train]\nlr = 0.2\n")
    assert main(["config", "--preset", "quickstart", "--set", "search.pop_size=8",
                 "--config", str(extra)]) == 0
    rows = _rows(capsys.readouterr().out)
    assert rows["search.pop_size"] == ("8", "--set")
    assert rows["search.generations"] == ("8", "preset")       # quickstart.toml says 8
    assert rows["search.p_m"] == ("0.1", "default")            # quickstart leaves it
    assert rows["train.lr"] == ("0.2", "--config")
    assert rows["seed"] == ("0", "preset")


def test_run_values_and_the_section_filter(tmp_path, capsys):
    out = tmp_path / "r"
    assert main(on_cpu("train-supernet", "quickstart", "--out", str(out), *set_args(
        search__bn_images="64", search__eval_images="50"))) == 0
    capsys.readouterr()
    assert main(["config", "data", "--run", str(out), "--set", "data.eval_batch_size=7"]) == 0
    rows = _rows(capsys.readouterr().out)
    assert {k.split(".")[0] for k in rows} == {"data"}
    assert rows["data.val_size"] == ("100", "run") and rows["data.resolution"] == ("8", "run")
    assert rows["data.eval_batch_size"] == ("7", "--set")


def test_set_without_a_preset_or_run_is_one_line(capsys):
    assert main(["config", "--set", "search.pop_size=8"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "add --preset NAME or --run DIR" in err[0]
