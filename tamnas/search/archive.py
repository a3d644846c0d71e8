"""Every evaluated architecture with its scores: lookup cache, Pareto fronts and persistence.

A score belongs to an arch *and the weights it was scored on*: every entry is
keyed by (arch, weights fingerprint), the `weights` column of the tables. An
arch scored on two weight sets (the one-shot supernet and the weights a
gradient search trained) has two rows, and a cache lookup only returns a
score made on the weights asked for. A front over rows of several weight sets
says so (`mixed_weights`). The archive is the one record of a search that every later stage reads (plots,
LEGO, export, retrain). Scores that carry `n_eval` (the number of evaluation
images) also get the binomial standard error `<err>_se` of each error rate, so
a reader sees when two archs cannot be told apart; archives written before
that have no such columns and load as they are. `archive.json` is authoritative and restores the
archive exactly; `archive.csv` is the same table for pandas and people.

One archive serves every strategy of a run, and each strategy has its own
front: an entry records every strategy that visited it (`strategies`, in
order of first visit; the `strategy` metadata names the first), so a random
search that meets an NSGA-II arch scores nothing again, yet never changes
NSGA-II's front. Archives written before that know only the first strategy.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from tamnas.config import SCORE_NAMES
from tamnas.files import atomic_write_json, atomic_write_text
from tamnas.metrics import with_standard_errors
from tamnas.rundir import FINGERPRINT_KEY
from tamnas.search.fronts import (
    NOISE_NAMES,
    STRATEGIES,
    WEIGHTS,
    archs_of,
    front_records,
    front_table,
    mixed_weights,
    non_dominated,
    plain_value,
    visited_by,
)
from tamnas.supernets.base import Arch

FORMAT = "tamnas-archive-v2"
READABLE_FORMATS = ("tamnas-archive-v1", FORMAT)   # v1 rows take the archive's fingerprint
JSON_NAME = "archive.json"
CSV_NAME = "archive.csv"


def arch_key(arch: Sequence[int]) -> str:
    """The readable key of an arch, e.g. "3-0-12-9"."""
    return "-".join(str(int(g)) for g in arch)


def parse_key(key: str) -> Arch:
    return tuple(int(g) for g in str(key).split("-"))


def _check_entry_scores(scores: Mapping[str, Any]) -> None:
    """ValueError if a saved score is impossible: an error rate NaN, negative or above 1."""
    for k, v in scores.items():
        if not (k.endswith(("_err", "_err_se")) or k in ("params", "flops")):
            continue
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) \
            and v >= 0 and (k in ("params", "flops") or v <= 1)
        if not ok:
            raise ValueError(f"{k} = {v!r} is not "
                             f"{'a count' if k in ('params', 'flops') else 'an error rate in [0, 1]'}")


class _Current:
    """Sentinel: the archive's current weights (`Archive.fingerprint`)."""

    def __repr__(self) -> str:
        return "CURRENT"


class _Any:
    """Sentinel: every weight set."""

    def __repr__(self) -> str:
        return "ANY_WEIGHTS"


CURRENT, ANY_WEIGHTS = _Current(), _Any()
Key = tuple[Arch, "str | None"]


class Archive:
    """Scores and metadata of every evaluated (arch, weights), in insertion order.

    `fingerprint` names the weights new scores are made on unless a call
    names others (the session sets it to the weights its evaluator holds).
    Metadata (e.g. strategy, generation) describe where an entry was first
    scored; `order` is its insertion index. Adding a known (arch, weights)
    again changes nothing: scores belong to the arch on those weights, not to
    the visit.
    """

    def __init__(self, space_name: str, n_genes: int, fingerprint: str | None = None):
        self.space_name = str(space_name)
        self.n_genes = int(n_genes)
        self.fingerprint = fingerprint  # the current weights: default of add/get/in
        self._scores: dict[Key, dict[str, Any]] = {}
        self._meta: dict[Key, dict[str, Any]] = {}
        self._visits: dict[Key, list[str]] = {}

    # -- container ----------------------------------------------------------------------
    def _arch(self, arch: Sequence[int]) -> Arch:
        arch = tuple(int(g) for g in arch)
        if len(arch) != self.n_genes:
            raise ValueError(f"archive of {self.space_name}: arch {arch_key(arch)} has {len(arch)} "
                             f"genes, expected {self.n_genes}")
        return arch

    def _weights(self, weights: Any) -> str | None:
        return self.fingerprint if weights is CURRENT else (None if weights is None
                                                            else str(weights))

    def add(self, arch: Sequence[int], scores: Mapping[str, Any], *, weights: Any = CURRENT,
            **meta: Any) -> bool:
        """Record an arch's scores on `weights` (default: the current ones); True if new.

        A known (arch, weights) keeps its scores; a `strategy` in `meta` is recorded as a visit.
        """
        key = (self._arch(arch), self._weights(weights))
        if key in self._scores:
            self._visit(key, meta.get("strategy"))
            return False
        if not scores:
            raise ValueError(f"archive: no scores given for arch {arch_key(key[0])}")
        clash = set(meta) & (set(scores) | {"arch", "order", WEIGHTS})
        if clash:
            raise ValueError(f"archive: meta keys {sorted(clash)} clash with score or reserved "
                             "names")
        self._scores[key] = {str(k): plain_value(v) for k, v in with_standard_errors(scores).items()}
        self._meta[key] = {"order": len(self._meta),
                           **{str(k): plain_value(v) for k, v in meta.items()}}
        self._visits[key] = []
        self._visit(key, meta.get("strategy"))
        return True

    def _visit(self, key: Key, strategy: Any) -> None:
        if strategy is not None and str(strategy) not in self._visits[key]:
            self._visits[key].append(str(strategy))

    def visit(self, arch: Sequence[int], strategy: str, weights: Any = CURRENT) -> None:
        """Record that `strategy` met an arch already scored on `weights` (a cache hit)."""
        key = self._key(arch, weights)
        if key is None:
            raise ValueError(f"archive: arch {arch_key(arch)} was never scored on weights "
                             f"{self._weights(weights)}; score it before recording a visit")
        self._visit(key, strategy)

    def strategies(self, arch: Sequence[int], weights: Any = CURRENT) -> list[str]:
        """Every strategy that visited an arch on `weights`, in order of first visit."""
        key = self._key(arch, weights)
        return list(self._visits[key]) if key is not None else []

    def strategy_names(self) -> list[str]:
        """Every strategy that visited any entry, in order of first appearance."""
        return list(dict.fromkeys(n for names in self._visits.values() for n in names))

    def _key(self, arch: Sequence[int], weights: Any) -> Key | None:
        """The key of `arch` on `weights`; with ANY_WEIGHTS the first entry of the arch."""
        arch = tuple(int(g) for g in arch)
        if weights is ANY_WEIGHTS:
            return next((k for k in self._scores if k[0] == arch), None)
        key = (arch, self._weights(weights))
        return key if key in self._scores else None

    def get(self, arch: Sequence[int], weights: Any = CURRENT) -> dict[str, Any] | None:
        """The scores of an arch on `weights` (a copy), or None if never scored on them."""
        key = self._key(arch, weights)
        return dict(self._scores[key]) if key is not None else None

    def meta(self, arch: Sequence[int], weights: Any = CURRENT) -> dict[str, Any] | None:
        key = self._key(arch, weights)
        return dict(self._meta[key]) if key is not None else None

    def __contains__(self, arch: object) -> bool:
        """Whether the arch has scores on the current weights."""
        try:
            return self._key(arch, CURRENT) is not None  # type: ignore[arg-type]
        except TypeError:
            return False

    def __len__(self) -> int:
        return len(self._scores)

    def archs(self, weights: Any = ANY_WEIGHTS) -> list[Arch]:
        """The archs of the entries on `weights` (default: all), in insertion order."""
        if weights is ANY_WEIGHTS:
            return list(dict.fromkeys(a for a, _ in self._scores))
        w = self._weights(weights)
        return [a for a, k in self._scores if k == w]

    def weight_sets(self) -> list[str | None]:
        """The fingerprints the entries were scored on, in order of first use."""
        return list(dict.fromkeys(w for _, w in self._scores))

    def subset(self, weights: Any) -> Archive:
        """A new archive holding only the entries scored on `weights` (metadata kept)."""
        w = self._weights(weights)
        out = Archive(self.space_name, self.n_genes, w)
        for (arch, kw), scores in self._scores.items():
            if kw == w:
                meta = {k: v for k, v in self._meta[(arch, kw)].items() if k != "order"}
                out.add(arch, scores, weights=kw, **meta)
                out._visits[(arch, kw)] = list(self._visits[(arch, kw)])
        return out

    def update(self, other: Archive) -> int:
        """Add the entries of `other` not yet here, keeping their weights and metadata."""
        if other.n_genes != self.n_genes or other.space_name != self.space_name:
            raise ValueError(f"cannot merge an archive of {other.space_name} ({other.n_genes} "
                             f"genes) into one of {self.space_name} ({self.n_genes} genes)")
        added = 0
        for key, scores in other._scores.items():
            meta = {k: v for k, v in other._meta[key].items() if k != "order"}
            added += self.add(key[0], scores, weights=key[1], **meta)
            for name in other._visits[key]:
                self._visit(key, name)
        return added

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Archive) and self.space_name == other.space_name
                and self.n_genes == other.n_genes
                and list(self._scores.items()) == list(other._scores.items())
                and self._meta == other._meta and self._visits == other._visits)

    # -- tables -------------------------------------------------------------------------
    def score_names(self) -> list[str]:
        """Score columns present, known scores first in their canonical order."""
        names: dict[str, None] = {}
        for scores in self._scores.values():
            names.update(dict.fromkeys(scores))
        known = [n for n in SCORE_NAMES if n in names]
        return known + sorted(n for n in names if n not in SCORE_NAMES)

    def meta_names(self) -> list[str]:
        names: dict[str, None] = {}
        for meta in self._meta.values():
            names.update(dict.fromkeys(meta))
        return sorted(n for n in names if n != "order") + ["order"] if names else []

    def frame(self, weights: Any = ANY_WEIGHTS) -> pd.DataFrame:
        """One row per entry (on `weights`, default all): arch key, genes g0..gN, every score,
        the `weights` fingerprint, the visiting `strategies` ("nsga2,random"), metadata
        (order last)."""
        genes = [f"g{i}" for i in range(self.n_genes)]
        scores, metas = self.score_names(), self.meta_names()
        keep = None if weights is ANY_WEIGHTS else self._weights(weights)
        rows = []
        for (arch, w), s in self._scores.items():
            if weights is not ANY_WEIGHTS and w != keep:
                continue
            m = self._meta[(arch, w)]
            rows.append([arch_key(arch), *arch, *(s.get(k, math.nan) for k in scores), w,
                         ",".join(self._visits[(arch, w)]), *(m.get(k) for k in metas)])
        df = pd.DataFrame(rows, columns=["arch", *genes, *scores, WEIGHTS, STRATEGIES, *metas])
        for g in genes:
            df[g] = df[g].astype("int64")
        if "order" in df:
            df["order"] = df["order"].astype("int64")
        return df

    def front(self, objectives: Sequence[str], rows: pd.DataFrame | None = None,
              weights: Any = ANY_WEIGHTS, strategy: str | None = None) -> pd.DataFrame:
        """Non-dominated rows (minimisation) of `rows` (default: the archive's entries on
        `weights`, all by default) over `objectives`; with `strategy`, of the rows that
        strategy visited only (its own front).

        Rows lacking a value for one of the objectives take no part. The
        result keeps the input order and index; `attrs["mixed_weights"]` (and
        `mixed_weights(front)`, from the `weights` column) says whether it
        mixes scores of several weight sets.
        """
        df = self.frame(weights) if rows is None else rows
        objectives = list(objectives)
        missing = [o for o in objectives if o not in df.columns]
        if not objectives or missing:
            raise ValueError(f"front: unknown objectives {missing or objectives}; this archive has "
                             f"scores {', '.join(self.score_names()) or '(none)'}")
        usable = df[df[objectives].notna().all(axis=1)]
        if strategy is not None:
            usable = usable[visited_by(usable, strategy)]
        idx = non_dominated(usable[objectives].to_numpy(dtype=float))
        front = usable.iloc[idx]
        front.attrs["mixed_weights"] = mixed_weights(front)
        return front

    # -- persistence ----------------------------------------------------------------------
    def to_dict(self) -> dict:
        blob: dict[str, Any] = {"format": FORMAT, "space": self.space_name, "n_genes": self.n_genes}
        if self.fingerprint is not None:
            blob[FINGERPRINT_KEY] = self.fingerprint
        blob["entries"] = [{"arch": list(a), WEIGHTS: w, "scores": self._scores[(a, w)],
                            "meta": self._meta[(a, w)], STRATEGIES: self._visits[(a, w)]}
                           for a, w in self._scores]
        return blob

    @classmethod
    def from_dict(cls, blob: Mapping, source: str = "archive") -> Archive:
        if not isinstance(blob, Mapping) or blob.get("format") not in READABLE_FORMATS:
            raise ValueError(f"{source} is not a tamnas archive (no {FORMAT} tag)")
        try:
            archive = cls(blob["space"], blob["n_genes"], blob.get(FINGERPRINT_KEY))
            entries = sorted(blob["entries"], key=lambda e: e["meta"]["order"])
            for e in entries:
                meta = {k: v for k, v in e["meta"].items() if k != "order"}
                # v1 entries name no weights: they were scored on the archive's fingerprint
                weights = e.get(WEIGHTS, archive.fingerprint)
                _check_entry_scores(e["scores"])
                if not archive.add(e["arch"], e["scores"], weights=weights, **meta):
                    raise ValueError(f"duplicate arch {arch_key(e['arch'])} on weights {weights}")
                for name in e.get(STRATEGIES, []):  # older archives: the first scorer only
                    archive.visit(e["arch"], str(name), weights=weights)
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{source} is corrupt ({type(err).__name__}: {err}); delete it or "
                             "pass --no-resume") from None
        return archive

    def save(self, directory: str | Path) -> Path:
        """Write archive.json (exact) and archive.csv (the frame) atomically into `directory`."""
        directory = Path(directory)
        atomic_write_json(directory / JSON_NAME, self.to_dict())
        atomic_write_text(directory / CSV_NAME, self.frame().to_csv(index=False))
        return directory / JSON_NAME

    @classmethod
    def load(cls, directory: str | Path, *, missing_ok: bool = False, space_name: str | None = None,
             n_genes: int | None = None) -> Archive:
        """Restore an archive saved by `save`.

        A missing file is a FileNotFoundError unless `missing_ok`, which then
        returns an empty archive of `space_name`/`n_genes`. Given those, a saved
        archive of another space is a ValueError.
        """
        path = Path(directory) / JSON_NAME
        if not path.is_file():
            if not missing_ok:
                raise FileNotFoundError(f"no archive at {path}; run a search first")
            if space_name is None or n_genes is None:
                raise ValueError("Archive.load(missing_ok=True) needs space_name and n_genes for "
                                 "the empty archive")
            return cls(space_name, n_genes)
        try:
            blob = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ValueError(f"archive {path} is corrupt ({type(err).__name__}); delete it or pass "
                             "--no-resume") from None
        archive = cls.from_dict(blob, source=f"archive {path}")
        if (space_name is not None and archive.space_name != space_name) or \
                (n_genes is not None and archive.n_genes != n_genes):
            raise ValueError(f"archive {path} belongs to space {archive.space_name} with "
                             f"{archive.n_genes} genes, not {space_name} with {n_genes}; use "
                             "another run directory or pass --no-resume")
        return archive


__all__ = ["ANY_WEIGHTS", "CURRENT", "NOISE_NAMES", "STRATEGIES", "WEIGHTS", "Archive", "arch_key",
           "archs_of", "front_records", "front_table", "mixed_weights", "non_dominated",
           "parse_key", "visited_by"]
