"""Progress that suits a terminal and a log: tqdm bars on a terminal, plain timed lines elsewhere.

Every long loop of every command goes through `progress(...)`. On a terminal
it is a tqdm bar; when the stream is not a terminal (a log file, a pipe, CI)
it writes one plain line at most every `LINE_INTERVAL` seconds and one at the
end, with no carriage returns, so a captured log reads like a log. `Stages`
names the steps of a command that chains several (`tamnas run`): each bar
opened inside a stage says "stage k of n" and the whole job's ETA, estimated
from the work each stage is expected to do and the pace measured so far.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from contextvars import ContextVar
from typing import IO, Any

from tqdm.auto import tqdm

SKIPPED_SECONDS = 1.0         # a stage done this fast without a bar had nothing left to do
LINE_INTERVAL = float(os.environ.get("TAMNAS_PROGRESS_INTERVAL", "30"))  # seconds between lines


def duration(seconds: float | None) -> str:
    """12s, 3m05s, 1h02m: short enough for a progress line."""
    if seconds is None or not math.isfinite(seconds):
        return "?"
    s = round(max(seconds, 0.0))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


def eta(done: float, total: float, elapsed: float) -> float | None:
    """Seconds left at the pace so far (None before any progress)."""
    if done <= 0 or total <= 0:
        return None
    return elapsed * max(total - done, 0.0) / done


def is_terminal(stream: IO | None = None) -> bool:
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


class Stages:
    """The stages of one chained command, with the work each is expected to do (any unit, the
    same for all); `with stages.stage(name):` runs one, and bars opened inside report to it."""

    def __init__(self, work: Sequence[tuple[str, float]], name: str = "run",
                 quiet: bool = False, stream: IO | None = None):
        self.names = [n for n, _ in work]
        self.work = [max(float(w), 0.0) for _, w in work]
        self.name, self.quiet, self.stream = name, quiet, stream
        self.index = -1
        self.fraction = 0.0          # of the current stage, from its main bar
        self.skipped = 0.0           # work found done already (resumed): not part of the pace
        self.start = time.monotonic()

    @property
    def done_work(self) -> float:
        past = sum(self.work[: max(self.index, 0)])
        return past + (self.work[self.index] * self.fraction if self.index >= 0 else 0.0)

    def eta(self) -> float | None:
        """Seconds left of the whole job at the pace measured so far (on the work done now,
        not on what a resumed run found done)."""
        done, elapsed = self.done_work, time.monotonic() - self.start
        paced = done - self.skipped
        if paced <= 0:
            return None
        return elapsed * max(sum(self.work) - done, 0.0) / paced

    def resumed(self, fraction: float) -> None:
        """The current stage starts `fraction` done (a resumed loop)."""
        self.skipped += self.work[self.index] * min(max(fraction, 0.0), 1.0)
        self.fraction = max(self.fraction, fraction)

    def label(self) -> str:
        return (f"stage {self.index + 1} of {len(self.names)}, {self.name} ETA "
                f"{duration(self.eta())}")

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[Stages]:
        self.index, self.fraction = self.names.index(name), 0.0
        if not self.quiet:
            print(f"{self.name}: stage {self.index + 1} of {len(self.names)}: {name} "
                  f"({duration(time.monotonic() - self.start)} elapsed, {self.name} ETA "
                  f"{duration(self.eta())})", file=self.stream or sys.stdout, flush=True)
        token, began = _CURRENT.set(self), time.monotonic()
        try:
            yield self
        finally:
            _CURRENT.reset(token)
            if self.fraction == 0.0 and time.monotonic() - began < SKIPPED_SECONDS:
                self.skipped += self.work[self.index]    # nothing left to do: found done
            self.fraction = 1.0


_CURRENT: ContextVar[Stages | None] = ContextVar("tamnas_stages", default=None)


class Progress:
    """tqdm's small API (iterate, update, set_postfix, set_description, close) over a bar on a
    terminal or timed plain lines elsewhere. A bar that `leave`s (the stage's main loop)
    reports its fraction to the running `Stages`."""

    def __init__(self, iterable: Iterable | None = None, *, total: float | None = None,
                 desc: str = "", initial: float = 0, disable: bool = False, leave: bool = True,
                 unit: str = "it", stream: IO | None = None, interval: float | None = None):
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable) + initial  # type: ignore[arg-type]
        self.iterable, self.total, self.n, self.initial = iterable, total, initial, initial
        self.desc, self.unit, self.disable, self.leave = desc, unit, disable, leave
        self.stream = stream if stream is not None else sys.stderr
        self.interval = LINE_INTERVAL if interval is None else interval
        self.stages = _CURRENT.get() if leave else None
        if self.stages is not None and total and initial:
            self.stages.resumed(initial / total)
        self.postfix = ""
        self.printed = None          # the count of the last line written
        self.start = self.last = time.monotonic()
        self.bar = None
        if not disable and is_terminal(self.stream):
            self.bar = tqdm(total=total, initial=initial, desc=self._desc(), leave=leave,
                            unit=unit, file=self.stream)

    def _desc(self) -> str:
        return f"{self.desc} [{self.stages.label()}]" if self.stages is not None else self.desc

    def __iter__(self) -> Iterator[Any]:
        for item in self.iterable if self.iterable is not None else ():
            yield item
            self.update(1)
        self.close()                 # like tqdm: a finished loop closes its bar

    def __enter__(self) -> Progress:  # noqa: PYI034 (no typing.Self before Python 3.11)
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def update(self, n: float = 1) -> None:
        self.n += n
        if self.stages is not None and self.total:
            self.stages.fraction = min(self.n / self.total, 1.0)
        if self.bar is not None:
            if self.stages is not None:
                self.bar.set_description_str(self._desc(), refresh=False)
            self.bar.update(n)
        elif not self.disable and time.monotonic() - self.last >= self.interval:
            self._line()

    def set_postfix(self, ordered_dict: dict | None = None, **kwargs: Any) -> None:
        items = {**(ordered_dict or {}), **kwargs}
        self.postfix = ", ".join(f"{k}={v}" for k, v in items.items())
        if self.bar is not None:
            self.bar.set_postfix(items)

    def set_description(self, desc: str) -> None:
        self.desc = desc
        if self.bar is not None:
            self.bar.set_description_str(self._desc())

    def _line(self, final: bool = False) -> None:
        elapsed = time.monotonic() - self.start
        of = f"/{self.total:g}" if self.total else ""
        pct = f" ({100 * self.n / self.total:.0f}%)" if self.total else ""
        left = "" if final or not self.total else \
            f", ETA {duration(eta(self.n - self.initial, self.total - self.initial, elapsed))}"
        parts = [f"{self.desc}: {self.n:g}{of} {self.unit}{pct}, {duration(elapsed)} elapsed{left}"]
        if self.stages is not None:
            parts.append(self.stages.label())
        if self.postfix:
            parts.append(self.postfix)
        print(" · ".join(parts), file=self.stream, flush=True)
        self.last, self.printed = time.monotonic(), self.n

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        elif not self.disable and self.leave and self.n > self.initial and self.printed != self.n:
            self._line(final=True)
        self.disable = True


def progress(iterable: Iterable | None = None, **kwargs: Any) -> Progress:
    """A progress bar (terminal) or timed progress lines (log) over `iterable` or `total`."""
    return Progress(iterable, **kwargs)


def counter(k: int, total: int, start: float) -> str:
    """"k of N, 3m10s elapsed, ETA 5m" for a loop of whole jobs (validate, compare): the pace
    of the k - 1 jobs done so far."""
    elapsed = time.monotonic() - start
    return (f"{k} of {total}, {duration(elapsed)} elapsed, ETA "
            f"{duration(eta(k - 1, total, elapsed)) if k > 1 else '?'}")


__all__ = ["LINE_INTERVAL", "Progress", "Stages", "counter", "duration", "eta", "is_terminal",
           "progress"]
