"""TensorBoard logging (optional extra): the CSV rows of training and search become scalars."""

from __future__ import annotations

import pytest
from cli_configs import on_cpu, set_args

from tamnas.cli import main

pytest.importorskip("tensorboard")


def scalars(folder) -> dict[str, list[float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder)).Reload()
    return {tag: [e.value for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_a_run_with_tensorboard_logs_its_training_and_search_curves(tmp_path):
    out = tmp_path / "run"
    tiny = set_args(search__pop_size="4", search__n_offsprings="4", search__generations="2",
                    search__bn_images="32", search__eval_images="40", output__top_k="2",
                    output__formats='["png"]', output__tensorboard="true")
    assert main(on_cpu("run", "quickstart", "--out", str(out), *tiny)) == 0
    train = scalars(out / "supernet" / "tensorboard")
    assert len(train["supernet/loss"]) == 2 and len(train["supernet/clean_acc"]) == 2
    search = scalars(out / "search" / "tensorboard")
    assert len(search["search/nsga2/hv"]) == 3      # generation 0 and two more
    assert search["search/nsga2/archive_size"] == sorted(search["search/nsga2/archive_size"])
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    images = EventAccumulator(str(out / "search" / "tensorboard")).Reload().Tags()["images"]
    assert "search/front" in images                   # `tamnas plot` added the front figure


def test_without_the_option_nothing_is_logged(tmp_path):
    out = tmp_path / "run"
    tiny = set_args(search__pop_size="4", search__n_offsprings="4", search__generations="1",
                    search__bn_images="32", search__eval_images="40", output__top_k="2",
                    output__formats='["png"]')
    assert main(on_cpu("train-supernet", "quickstart", "--out", str(out), *tiny)) == 0
    assert not list(out.rglob("tensorboard"))
