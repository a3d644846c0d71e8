"""Run directories for the explorer's tests and benchmark, written directly (no training):
a real space's archs with synthetic scores, a search log, a LEGO export and standalone results."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

import tamnas
from tamnas.analysis.export import export_arch
from tamnas.config import save_config
from tamnas.files import atomic_write_text
from tamnas.rundir import RunDir
from tamnas.search.archive import Archive


def synthetic_run(out: Path, n: int = 60, seed: int = 0, latency: bool = False,
                  standalone: bool = True, preset: str = "quickstart") -> Path:
    """A run of the preset's space whose archive holds `n` archs of three strategies."""
    cfg = tamnas.load_config(preset)
    space = tamnas.build_space(cfg)
    run = RunDir(out)
    run.root.mkdir(parents=True, exist_ok=True)
    save_config(cfg, run.config)
    rng = np.random.default_rng(seed)
    archive = Archive(space.name, space.n_genes, "f" * 16)
    n_eval = 500
    while len(archive) < n:
        arch = space.sample(rng)
        size = space.params(arch)
        adv = float(np.clip(0.9 - 0.1 * np.log10(size) + rng.normal(0, 0.05), 0.05, 0.99))
        clean = float(np.clip(adv - rng.uniform(0.05, 0.3), 0.01, 0.99))
        scores = {"adv_err": round(adv, 3), "clean_err": round(clean, 3), "params": size,
                  "flops": space.flops(arch), "n_eval": n_eval}
        if latency:
            scores["latency"] = round(float(size) / 2e4 + rng.uniform(0, 0.2), 4)
        k = len(archive)
        strategy = "random" if k % 3 == 0 else ("mgda" if k % 7 == 0 else "nsga2")
        archive.add(arch, scores, strategy=strategy, generation=k // 20)
    archive.save(run.search_dir)
    gens = pd.DataFrame({"generation": range(4), "hv": [0.2, 0.3, 0.35, 0.36]})
    atomic_write_text(run.generations, gens.to_csv(index=False))
    df = archive.frame()
    lego = tuple(int(g) for g in df.iloc[1][[f"g{i}" for i in range(space.n_genes)]])
    export_arch(space, lego, run.exports_dir, "lego",
                scores={k: df.iloc[1][k] for k in ("adv_err", "clean_err", "params", "flops")})
    if standalone:
        rows = df.head(2)
        summary = pd.DataFrame({
            "name": list(rows["arch"]),  # retrain folders are named by arch key
            "arch": rows["arch"], "init": "scratch", "params": rows["params"],
            "inherited_clean_err": rows["clean_err"], "inherited_adv_err": rows["adv_err"],
            "retrained_clean_err": [0.2, 0.25], "retrained_adv_err": [0.5, 0.45],
            "n_test": [1000, 1000]})
        run.retrain_root.mkdir(exist_ok=True)
        atomic_write_text(run.retrain_summary, summary.to_csv(index=False))
    return run.root
