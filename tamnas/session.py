"""A run opened for work: its space, weights, data, archive and evaluator, built once per call.

`Session.open` joins what the commands share: the trained supernet (or the
weights a gradient search trained) with their fingerprint, the data, the
archive of scores made on those weights, and the one evaluator that scores
archs. It also owns the one front ordering (`front:K` everywhere) and the
resolution of `--arch` specs. It never runs a command and writes nothing
except when asked to move stale results aside.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from torch import nn

from tamnas import distributed as dist
from tamnas.config import Config
from tamnas.files import read_json
from tamnas.rundir import (
    RunDir,
    check_fresh,
    check_run_record,
    is_fresh,
    move_aside,
    supernet_fingerprint,
)
from tamnas.search.archive import Archive, front_table
from tamnas.supernets.base import Arch, SearchSpace


def say(message: str, quiet: bool = False) -> None:
    """A line for the user, from rank 0 only."""
    if dist.is_main() and not quiet:
        print(message, flush=True)


def check_run_data(run: RunDir, cfg: Config) -> None:
    """One line if the run's image folder no longer holds the files it was made from."""
    from tamnas.data.record import check_data_record

    if run.data_record.is_file():
        check_data_record(read_json(run.data_record, fix="delete it to skip the data check"),
                          cfg.data)


def one_shot_epochs(cfg: Config) -> int:
    return cfg.train.phase1_epochs + cfg.train.phase2_epochs


def supernet_epochs_done(run: RunDir) -> int:
    """Epochs the run's supernet checkpoint has completed (0 when there is none)."""
    from tamnas.files import load_checkpoint, require_keys

    if not run.supernet_checkpoint.exists():
        return 0
    state = load_checkpoint(run.supernet_checkpoint, kind="supernet")
    require_keys(state, ("epoch",), run.supernet_checkpoint)
    return int(state["epoch"])


def require_finished(cfg: Config, run: RunDir) -> None:
    """One line, saying how far it got, if the run's supernet training has not finished."""
    total, done = one_shot_epochs(cfg), supernet_epochs_done(run)
    if run.supernet_checkpoint.exists() and done >= total:
        return
    what = "no trained supernet" if not run.supernet_checkpoint.exists() or done == 0 \
        else f"a supernet trained {done} of {total} epochs"
    raise ValueError(f"{run.root} has {what}; finish it with `tamnas train-supernet` (same preset "
                     "and --out), or pass --partial-supernet to use it as it is")


def open_run(run_dir: str | Path) -> RunDir:
    """A run directory to read; FileNotFoundError if it is none."""
    run = RunDir(run_dir)
    if not run.config.exists():
        raise FileNotFoundError(f"{run_dir} is not a tamnas run directory (no config.toml)")
    return run


@dataclass
class Session:
    """The shared state of one command on one run (see the module docstring)."""

    cfg: Config
    run: RunDir
    device: torch.device
    quiet: bool
    space: SearchSpace
    supernet: nn.Module
    fingerprint: str
    data: object
    evaluator: object

    @classmethod
    def open(cls, cfg: Config, run: RunDir, device: torch.device, *, quiet: bool = False,
             fresh_archive: bool = False, data=None, stale: str = "refuse",
             searched: bool = True, partial: bool = False) -> Session:
        """Load the run's weights, data and archive; build the evaluator.

        `fresh_archive`: start with an empty archive (a search with --no-resume).
        `stale`: what to do with an archive scored on other weights ("refuse"
        with one line, or "rebuild": move it to previous/N and start afresh).
        `searched`: without a one-shot stage, the weights a gradient search
        trained (search/supernet.pt) are the run's supernet, when present.
        `partial`: accept a supernet whose training has not finished.
        """
        from tamnas.data import load_data
        from tamnas.search.evaluator import Evaluator
        from tamnas.train import load_trained_supernet

        check_run_record(run)
        if not partial:
            require_finished(cfg, run)
        space, supernet = load_trained_supernet(cfg, run, device)
        fingerprint = supernet_fingerprint(run)
        searched_weights = None  # the fingerprint of search/supernet.pt when those are loaded
        if searched and one_shot_epochs(cfg) == 0:
            from tamnas.search.searched_weights import load_searched

            searched_weights = load_searched(run.search_dir, supernet)
        check_run_data(run, cfg)  # a changed image folder is one line, before it is read
        data = data if data is not None else load_data(cfg.data, cfg.seed)
        archive = _open_archive(run, space, fingerprint, not fresh_archive, stale)
        evaluator = Evaluator.from_config(cfg, space, supernet, data, device, archive=archive,
                                          quiet=quiet)
        attach_run_latency(cfg, run, space, evaluator)
        if searched_weights is not None:  # scores made now name the weights really loaded
            evaluator.weights = searched_weights
        return cls(cfg, run, device, quiet, space, supernet, fingerprint, data, evaluator)

    @property
    def archive(self) -> Archive:
        return self.evaluator.archive

    # -- the front and --arch -------------------------------------------------------------
    def require_search(self) -> None:
        if not len(self.archive):
            raise FileNotFoundError(f"{self.run.root} has no search results; run `tamnas search "
                                    f"{self.run.root}` first")

    def front(self, strategy: str | None = None) -> pd.DataFrame:
        """The front table whose row K is `front:K` (search.objectives, then archive order).

        The front of `strategy`, by default the run's own (search.strategy): the archs
        that strategy visited, so a one-off random search never moves `front:K`, `lego`
        or `--all-front`. One line when that strategy has scored nothing here.
        """
        strategy = strategy or self.cfg.search.strategy
        front = front_table(self.archive, self.cfg.search.objectives, strategy=strategy)
        if len(self.archive) and not len(front):
            names = ", ".join(self.archive.strategy_names()) or "none"
            raise ValueError(f"{self.run.root}: the {strategy} front is empty (this run's archive "
                             f"holds archs of: {names}); run `tamnas search {self.run.root}`, or "
                             "pick another strategy's front with --set search.strategy=NAME")
        return front

    def lego(self, top: int | None = None) -> Arch:
        """The LEGO arch of the current front: per layer, the top-k's most frequent choice.

        When the top-k were all scored on one weight set (an MGDA search scores its
        derived archs on fine-tuned weights), those weights are loaded, so the LEGO net
        is scored and exported on the weights its parts were chosen on."""
        from tamnas.analysis import stats
        from tamnas.analysis.lego import lego_arch

        self.require_search()
        top_df = stats.top_k(self.front(), top or self.cfg.output.top_k, by=self.cfg.output.top_by)
        weights = set(top_df["weights"].dropna()) if "weights" in top_df.columns else set()
        if len(weights) == 1:
            self.use_weights(weights.pop())
        return lego_arch(self.space, top_df)

    def candidates(self) -> pd.DataFrame:
        """The archive rows a `best:` rule chooses from: those the run's strategy visited
        (scored or met in the archive), as its front; all rows when none records a strategy."""
        from tamnas.search.archive import visited_by

        df = self.archive.frame()
        if self.archive.strategy_names():
            df = df[visited_by(df, self.cfg.search.strategy)]
        return df

    def resolve_arch(self, spec: str) -> tuple[Arch, str]:
        """An arch selector (`analysis/selector.py`) -> (arch, name); the name is the arch's
        key, so output folders never depend on the rule that chose the arch.

        `lego` is the exported LEGO net when it is fresh (it may have been built
        with another --top), else the LEGO arch of the current front.
        """
        from tamnas.analysis.export import read_arch_json
        from tamnas.analysis.selector import best_under, knee_position, parse_selector
        from tamnas.search.archive import arch_key

        sel = parse_selector(spec)
        if sel.kind in ("front", "knee"):
            self.require_search()
            front = self.front()
            k = knee_position(front, self.cfg.search.objectives) if sel.kind == "knee" \
                else sel.index
            if k >= len(front):
                raise ValueError(f"--arch {spec}: the front has rows 0..{len(front) - 1}")
            row = front.iloc[k]
            self.use_weights(row.get("weights"))  # the weights that row was scored on
            arch = self.space.validate(int(row[f"g{i}"]) for i in range(self.space.n_genes))
        elif sel.kind == "best":
            self.require_search()
            rows = self.candidates()
            try:
                row = rows.loc[best_under(rows, sel.objective, sel.constraints)]
            except ValueError as err:
                raise ValueError(f"--arch {spec}: {err}") from None
            self.use_weights(row.get("weights"))
            arch = self.space.validate(int(row[f"g{i}"]) for i in range(self.space.n_genes))
        elif sel.kind == "arch":
            try:
                arch = self.space.validate(sel.genes)
            except ValueError as err:
                raise ValueError(f"--arch {spec}: {err}") from None
        elif sel.kind == "lego" and not self._fresh_lego_export():
            arch = self.lego()
        else:
            path = self.run.export_json("lego") if sel.kind == "lego" else Path(sel.path)
            if not path.exists():
                raise FileNotFoundError(f"--arch {spec}: no such file; use front:K, lego, knee, "
                                        "arch:<genes>, best:adv,params<=N or an arch JSON")
            space, arch, _ = read_arch_json(path)
            if space.config() != self.space.config():
                raise ValueError(f"--arch {spec}: {path} belongs to another space than this "
                                 "run's")
        return arch, arch_key(arch)

    def _fresh_lego_export(self) -> bool:
        path = self.run.export_json("lego")
        return (path.exists() and is_fresh(path, self.fingerprint)
                and read_json(path, "export it again").get("weights_fingerprint")
                in (None, self.evaluator.weights))

    def use_weights(self, fingerprint: str | None) -> None:
        """Load the weights a score was made on (the one-shot checkpoint, or an MGDA search's
        searched or fine-tuned weights) into the supernet, so exports and fine-tuning start
        from the weights behind the score; one line if they are gone."""
        import pandas as pd

        if fingerprint is None or pd.isna(fingerprint) or fingerprint == self.evaluator.weights:
            return
        if fingerprint == self.fingerprint:
            from tamnas.files import load_checkpoint

            self.supernet.load_state_dict(
                load_checkpoint(self.run.supernet_checkpoint, kind="supernet")["model"])
        else:
            from tamnas.search.searched_weights import load_searched

            load_searched(self.run.search_dir, self.supernet, fingerprint=fingerprint)
        self.evaluator.weights = fingerprint

    # -- retrained nets -------------------------------------------------------------------
    def check_retrained(self, name: str) -> Path:
        """retrain/NAME/model.pt, refused in one line if missing or of other weights."""
        out = self.run.retrain_dir(name)
        if not (out / "model.pt").exists():
            raise FileNotFoundError(f"no retrained weights for {name} ({out / 'model.pt'}); run "
                                    f"`tamnas retrain {self.run.root} --arch ...` first")
        check_fresh(out, self.fingerprint, name=str(out),
                    fix=f"retrain it again with `tamnas retrain {self.run.root} --arch ...`")
        return out / "model.pt"

    def retrained_fresh(self, name: str) -> bool:
        out = self.run.retrain_dir(name)
        return (out / "model.pt").exists() and is_fresh(out, self.fingerprint)

    # -- test-set scores ------------------------------------------------------------------
    def test_tensors(self, n: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The test images every standalone net is scored on (fixed by the run seed)."""
        from tamnas.data import stack

        return stack(self.data.test, n, generator_seed=self.cfg.seed + 21)

    def per_class_on_test(self, net: nn.Module, attack=None) -> pd.DataFrame:
        """Clean and attacked error of a standalone net per class of the test images."""
        return self.test_results(net, attack)[1]

    def scores_on_test(self, net: nn.Module, attack=None) -> dict:
        """Clean and attacked error of a standalone net on the test images."""
        return self.test_results(net, attack)[0]

    def test_results(self, net: nn.Module, attack=None) -> tuple[dict, pd.DataFrame]:
        """Both of the above from one attack of the test images: the errors (`clean_err`,
        `adv_err`, image count `n`) and the per-class table."""
        from tamnas.analysis.per_class import per_class_table
        from tamnas.attacks import Attack, error_masks

        attack = attack or Attack.from_config(self.cfg.attack)
        x, y = self.test_tensors()
        clean, adv, _ = error_masks(net.to(self.device), x, y, attack,
                                    self.cfg.data.eval_batch_size, self.device)
        y, clean, adv = y.cpu().numpy(), clean.cpu().numpy(), adv.cpu().numpy()
        scores = {"clean_err": int(clean.sum()) / len(y), "adv_err": int(adv.sum()) / len(y),
                  "n": len(y)}
        return scores, per_class_table(y, clean, adv, self.data.info.classes or None)


def attach_run_latency(cfg: Config, run: RunDir, space: SearchSpace, evaluator) -> None:
    """Give the space the run's latency table (`latency.run_table`), if any: archive rows get
    their predicted latency and the table's device, batch and digest."""
    from tamnas.latency.table import attach_latency, run_table, table_record

    table = run_table(cfg, run)
    if table is None:
        return
    try:
        attach_latency(space, table)
    except ValueError as err:
        if cfg.search.latency_table or "latency" in cfg.search.objectives:
            raise
        say(f"note: the run's latency table is not used: {err}")  # nothing asked for latency
        return
    evaluator.cost_meta = table_record(table)
    evaluator.archive.set_cost("latency", lambda a: space.cost("latency", a), **evaluator.cost_meta)


def _open_archive(run: RunDir, space: SearchSpace, fingerprint: str, resume: bool,
                  stale: str) -> Archive:
    """The run's archive if scored on these weights; a stale one is refused or moved aside."""
    archive = None
    if resume and run.archive.exists():
        archive = Archive.load(run.search_dir)
        if archive.fingerprint not in (None, fingerprint):
            if stale != "rebuild":
                check_fresh({"supernet_fingerprint": archive.fingerprint}, fingerprint,
                            name=str(run.archive),
                            fix=f"run `tamnas search {run.root}` to score it again")
            dist.barrier()  # every rank has read the archive before rank 0 moves it
            moved = move_aside(run, ("search",)) if dist.is_main() else None
            dist.barrier()
            say(f"note: the archive was scored on another supernet checkpoint; moved it to "
                f"{moved} and scoring afresh")
            archive = None
    if archive is None:
        archive = Archive(space.name, space.n_genes)
    archive.fingerprint = fingerprint
    return archive


__all__ = ["Session", "attach_run_latency", "one_shot_epochs", "open_run", "require_finished", "say",
           "supernet_epochs_done"]
