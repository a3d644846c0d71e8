"""How well inherited scores on the MGDA-searched DARTS supernet rank archs trained alone.

Takes a finished `quickstart-darts` run (its searched weights in
search/supernet.pt), a few archs (the search's derived ones plus seeded
samples of the space) and scores each twice with inherited weights:
- "recalibrated": the searched weights, BatchNorm recalibrated for the arch;
- "fine-tuned": the same after the warm start MGDA gives its derived archs
  (search.mgda_finetune_epochs epochs of train.objective on the arch's path,
  on a copy of the supernet, so every arch starts from the same weights).
Then it trains each arch's standalone net from scratch (retrain.* settings,
train.objective) and scores it on the test set with the run's PGD attack.
Reports Kendall tau and Spearman rho of each inherited score against the
standalone one, and writes benchmarks/results/darts_inherited_ranking.json.

    python benchmarks/darts_inherited_ranking.py --run runs/qsd --samples 6
"""

from __future__ import annotations

import argparse
import copy
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy.stats import kendalltau, spearmanr

import tamnas
from tamnas.attacks import Attack
from tamnas.data import load_data, stack
from tamnas.rundir import RunDir
from tamnas.search.archive import Archive
from tamnas.search.evaluator import Evaluator
from tamnas.search.mgda import MGDASearch
from tamnas.search.searched_weights import load_searched
from tamnas.train import load_trained_supernet, retrain

RESULTS = Path(__file__).resolve().parent / "results" / "darts_inherited_ranking.json"


def test_scores(net, x, y, attack, device) -> dict[str, float]:
    net = net.to(device).eval()
    with torch.no_grad():
        clean = float((net(x).argmax(1) == y).float().mean())
    x_adv = attack(net, x, y)
    with torch.no_grad():
        adv = float((net(x_adv).argmax(1) == y).float().mean())
    return {"clean_err": 1 - clean, "adv_err": 1 - adv}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", required=True, help="a finished quickstart-darts run directory")
    p.add_argument("--samples", type=int, default=6, help="sampled archs besides the derived")
    p.add_argument("--retrain-epochs", type=int, default=None, help="default: retrain.epochs")
    p.add_argument("--out", default=str(RESULTS))
    args = p.parse_args()
    device = torch.device("cpu")
    run = RunDir(args.run)
    cfg = tamnas.load_config(run.config)
    if args.retrain_epochs:
        cfg.retrain.epochs = args.retrain_epochs
    data = load_data(cfg.data, cfg.seed)
    space, supernet = load_trained_supernet(cfg, run, device)
    if not load_searched(run.search_dir, supernet):
        raise FileNotFoundError(f"{run.search_dir} has no searched weights; run the MGDA search")
    derived = list(dict.fromkeys(tuple(int(g) for g in a.split("-")) for a in
                                 pd.read_csv(run.search_dir / "mgda_epochs.csv")
                                 .query(f"epoch == {cfg.search.mgda_epochs - 1}")["arch"]))
    rng = np.random.default_rng(cfg.seed + 101)
    archs = derived + [space.sample(rng) for _ in range(args.samples)]
    x_test, y_test = stack(data.test, None, generator_seed=cfg.seed + 21)
    attack = Attack.from_config(cfg.attack)
    rows = []
    with tempfile.TemporaryDirectory(prefix="tamnas-ranking-") as tmp:
        for i, arch in enumerate(archs):
            tic = time.perf_counter()
            ev = Evaluator.from_config(cfg, space, supernet, data, device,
                                       archive=Archive(space.name, space.n_genes))
            recal = ev.score(arch)
            tuned = copy.deepcopy(supernet)
            ev_t = Evaluator.from_config(cfg, space, tuned, data, device,
                                         archive=Archive(space.name, space.n_genes))
            search = MGDASearch(space, ev_t, cfg, Path(tmp) / f"ft{i}", quiet=True,
                                resume=False, data=data)
            search.setup()
            search.finetune([arch])
            fine = ev_t.score(arch)
            net = retrain(cfg, space, arch, Path(tmp) / f"rt{i}", device, data=data,
                          resume=False, quiet=True)
            alone = test_scores(net, x_test, y_test, attack, device)
            row = {"arch": "-".join(map(str, arch)), "derived": i < len(derived),
                   "params": space.params(arch),
                   **{f"recal_{k}": recal[k] for k in ("clean_err", "adv_err")},
                   **{f"finetuned_{k}": fine[k] for k in ("clean_err", "adv_err")},
                   **{f"standalone_{k}": alone[k] for k in ("clean_err", "adv_err")},
                   "seconds": time.perf_counter() - tic}
            rows.append(row)
            print({k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()},
                  flush=True)
    corr = {}
    for which in ("recal", "finetuned"):
        for err in ("clean_err", "adv_err"):
            a = [r[f"{which}_{err}"] for r in rows]
            b = [r[f"standalone_{err}"] for r in rows]
            corr[f"{which}_{err}"] = {"kendall_tau": float(kendalltau(a, b)[0]),
                                      "spearman_rho": float(spearmanr(a, b)[0])}
    result = {"run": str(run.root), "archs": len(rows), "retrain_epochs": cfg.retrain.epochs,
              "finetune_epochs": cfg.search.mgda_finetune_epochs, "rows": rows,
              "correlation": corr}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    for k, v in corr.items():
        print(f"{k:<22} kendall tau {v['kendall_tau']:+.3f}  spearman rho {v['spearman_rho']:+.3f}")
    print(f"-> {out}")


if __name__ == "__main__":
    main()
