"""Everything that can be known before work starts, checked before work starts.

A config that validates key by key can still describe a run that trains
nothing, hangs or runs out of memory: a split with no full batch, image
counts beyond their split, a tournament larger than the population, sizes
whose memory exceeds the machine's. Each is refused here in one line naming
the key, before a run directory or any state is written.
"""

from __future__ import annotations

from tamnas.config import SECTIONS, Config, Registered
from tamnas.files import MEMORY_SHARE, gib, machine_memory

INDIVIDUAL_BYTES = 4096         # a pymoo individual (genes, objectives, attributes), generously
TRAINING_COPIES = 4             # weights, gradients, momentum, a checkpoint being written


def memory_estimates(cfg: Config, space) -> dict[str, int]:
    """Bytes that a setting commits on its own, by the key that sets it."""
    out = {"search.pop_size": (cfg.search.pop_size + cfg.search.n_offsprings) * INDIVIDUAL_BYTES}
    if cfg.data.ood != "none":
        out["data.ood_size"] = cfg.data.ood_size * space.in_channels * space.resolution ** 2 * 4
    out["space (supernet size)"] = supernet_params_bound(space) * 4 * TRAINING_COPIES
    return out


def supernet_params_bound(space) -> int:
    """An upper bound on the supernet's parameters from the space's cost tables: every
    candidate of every decision at its widest, nothing shared. No network is built."""
    total = space.cost_constant("params")
    for table in space.cost_table("params"):
        widest = table.amax(dim=-1) if table.dim() > 1 else table  # ratios slice one weight
        total += float(widest.clamp(min=0).sum())
    return int(total)


def check_memory(cfg: Config, space, available: int | None = None) -> None:
    available = machine_memory() if available is None else available
    if available <= 0:
        return
    for key, need in memory_estimates(cfg, space).items():
        if need > MEMORY_SHARE * available:
            raise ValueError(f"{key}: needs about {gib(need)} of memory, more than this machine's "
                             f"{gib(available)} allow; choose a smaller value")


def preflight(cfg: Config) -> None:
    """Everything checkable from the config alone: the space builds, the ranges hold archs,
    the search's sizes are consistent, the memory fits."""
    from tamnas.supernets import build_space

    s = cfg.search
    if cfg.train.phase1_epochs + cfg.train.phase2_epochs == 0 and s.strategy != "mgda":
        raise ValueError(f"train.phase1_epochs + train.phase2_epochs = 0 trains no supernet, so "
                         f"search.strategy {s.strategy} would score untrained weights; give the "
                         "supernet epochs, or use search.strategy=\"mgda\", which trains them")
    if s.tournament_size > s.pop_size:
        raise ValueError(f"search.tournament_size {s.tournament_size} is larger than "
                         f"search.pop_size {s.pop_size}; a tournament draws from the population")
    space = build_space(cfg)
    lo, hi = space.params_bounds()
    for key, r in (("train.params_range_phase1", cfg.train.params_range_phase1),
                   ("train.params_range_phase2", cfg.train.params_range_phase2),
                   ("search.params_range", cfg.search.params_range)):
        if r[1] > 0 and (r[1] < lo or r[0] > hi):
            raise ValueError(f"{key}: {list(r)} holds no arch of this space, whose archs have "
                             f"{lo:,}-{hi:,} params; choose a range that overlaps it")
    check_memory(cfg, space)


def registered_names(kind: str) -> list[str]:
    """The names a registry holds (its built-in entries loaded first)."""
    if kind == "space":
        from tamnas.supernets import space_names

        return space_names()
    if kind == "strategy":
        from tamnas.search.strategy import strategy_names

        return strategy_names()
    if kind == "objective":
        from tamnas.adversarial import OBJECTIVES

        return sorted(OBJECTIVES)
    if kind == "dataset":
        from tamnas.data import DATASETS

        return list(DATASETS)
    if kind == "mgda_variant":
        from tamnas.search.mgda_variants import VARIANTS

        return sorted(VARIANTS)
    raise ValueError(f"no registry named {kind!r}")


def check_names(cfg: Config) -> Config:
    """Every key whose choices are a registry's names holds one of them (one line if not)."""
    import dataclasses

    for section in SECTIONS:
        values = getattr(cfg, section)
        for f in dataclasses.fields(values):
            choices = f.metadata.get("choices")
            if isinstance(choices, Registered):
                names = registered_names(choices.kind)
                if getattr(values, f.name) not in names:
                    raise ValueError(f"{section}.{f.name}: {getattr(values, f.name)!r} is not "
                                     f"allowed; choose one of {', '.join(names)}")
    return cfg


def check_data(cfg: Config, data) -> None:
    """What the loaded data must allow: a full training batch, the BN and validation counts."""
    from tamnas.search.evaluator import check_image_counts
    from tamnas.train import check_training_split

    if cfg.train.phase1_epochs + cfg.train.phase2_epochs > 0 or cfg.search.strategy == "mgda":
        check_training_split(cfg, data)
    check_image_counts(cfg, data)


def fit_to_data(cfg: Config, sources=None, quiet: bool = False):
    """(cfg, data) for a run being created: the data read once, the image counts fitted to it
    (a capped preset default is one printed line; an explicit setting that does not fit is
    refused) and everything the data must allow checked, all before any file is written."""
    import sys

    from tamnas import distributed as dist
    from tamnas.data import load_data, load_splits
    from tamnas.data.counts import fit_image_counts

    splits = load_splits(cfg.data)
    cfg, notes = fit_image_counts(cfg, len(splits.train[1]), len(splits.test[1]), sources)
    if dist.is_main():
        for note in notes:       # printed even with --quiet: the run is not what was asked
            print(note, file=sys.stderr, flush=True)
    data = load_data(cfg.data, cfg.seed, splits=splits)
    check_data(cfg, data)
    return cfg, data


__all__ = [
    "check_data",
    "check_memory",
    "check_names",
    "fit_to_data",
    "machine_memory",
    "memory_estimates",
    "preflight",
    "registered_names",
    "supernet_params_bound",
]
