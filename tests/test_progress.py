"""Progress for a terminal and for a log: plain timed lines with no carriage returns when the
output is not a terminal, stage k of n with the whole job's ETA, and "k of N" counters."""

from __future__ import annotations

import io

import pytest
from cli_configs import set_args

from tamnas import progress as prog
from tamnas.cli import main


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock(monkeypatch):
    c = Clock()
    monkeypatch.setattr(prog.time, "monotonic", c)
    return c


def test_durations_read_as_a_person_would_write_them():
    assert [prog.duration(s) for s in (0, 12.4, 185, 3725, None, float("inf"))] == \
        ["0s", "12s", "3m05s", "1h02m", "?", "?"]


def test_a_log_gets_plain_lines_at_the_interval_and_one_at_the_end(clock):
    out = io.StringIO()
    bar = prog.progress(range(10), desc="work", unit="step", stream=out, interval=5.0)
    for _ in bar:
        clock.t += 2.0              # a line every third step (6 s >= 5 s), then the final one
        bar.set_postfix(loss="0.5")
    bar.close()
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    assert lines[0].startswith("work: 3/10 step (30%), 6s elapsed, ETA 14s")
    assert lines[0].endswith("loss=0.5")
    assert lines[-1].startswith("work: 10/10 step (100%), 20s elapsed") and "ETA" not in lines[-1]
    assert len(lines) == 4          # the loop's end closes the bar: one final line, not two
    bar.close()
    assert len(out.getvalue().splitlines()) == 4


def test_a_final_count_already_written_is_not_written_again(clock):
    out = io.StringIO()
    bar = prog.progress(total=2, desc="w", stream=out, interval=1.0)
    clock.t += 5.0
    bar.update(2)                   # written at 2/2 by the interval
    bar.close()
    assert len(out.getvalue().splitlines()) == 1


def test_a_disabled_bar_says_nothing(clock):
    out = io.StringIO()
    for _ in prog.progress(range(3), desc="x", stream=out, interval=0.0, disable=True):
        clock.t += 1
    assert out.getvalue() == ""


def test_stages_give_stage_k_of_n_and_the_whole_jobs_eta(clock):
    log = io.StringIO()
    stages = prog.Stages([("a", 10), ("b", 30), ("c", 60)], "run", stream=log)
    with stages.stage("a"):
        clock.t += 10.0
    with stages.stage("b"):
        bar = prog.progress(total=4, desc="b", stream=io.StringIO(), interval=1e9)
        inner = prog.progress(total=100, desc="inner", leave=False, stream=io.StringIO())
        inner.update(100)           # an inner bar does not move the stage
        assert stages.fraction == 0.0
        clock.t += 10.0
        bar.update(2)               # half of b: 10 + 15 of 100 units done in 20 s
        assert stages.done_work == 25.0
        assert stages.eta() == pytest.approx(20.0 * 75 / 25)
        assert stages.label() == "stage 2 of 3, run ETA 1m00s"
    said = log.getvalue().splitlines()
    assert said[0] == "run: stage 1 of 3: a (0s elapsed, run ETA ?)"
    assert said[1] == "run: stage 2 of 3: b (10s elapsed, run ETA 1m30s)"   # 10 of 100 in 10 s


def test_work_a_resumed_run_found_done_does_not_set_the_pace(clock):
    stages = prog.Stages([("a", 50), ("b", 50)], "run", quiet=True)
    with stages.stage("a"):
        pass                        # complete already: no bar, no time
    with stages.stage("b"):
        bar = prog.progress(total=10, initial=4, desc="b", stream=io.StringIO(), interval=1e9)
        clock.t += 30.0
        bar.update(3)               # 3 of the 10 steps (15 units) now, in 30 s
        assert stages.done_work == 85.0 and stages.skipped == 70.0
        assert stages.eta() == pytest.approx(30.0 * 15 / 15)


def test_counter_says_k_of_n_with_the_pace_of_the_jobs_done(clock):
    start = clock.t
    assert prog.counter(1, 4, start) == "1 of 4, 0s elapsed, ETA ?"
    clock.t += 60.0
    assert prog.counter(3, 4, start) == "3 of 4, 1m00s elapsed, ETA 1m00s"


def test_run_in_a_log_shows_stages_and_has_no_carriage_returns(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(prog, "LINE_INTERVAL", 0.0)
    args = set_args(search__pop_size="4", search__n_offsprings="4", search__generations="1",
                    search__bn_images="64", search__eval_images="50", output__top_k="2")
    assert main(["run", "quickstart", "--out", str(tmp_path / "r"), *args,
                 "--device", "cpu"]) == 0
    said = capsys.readouterr()
    text = said.out + said.err
    assert "\r" not in text
    for k, name in enumerate(("supernet", "search", "lego", "plots and report"), 1):
        assert f"run: stage {k} of 4: {name}" in said.out
    assert "supernet: 2/2 epoch (100%)" in said.err and "stage 1 of 4, run ETA" in said.err
