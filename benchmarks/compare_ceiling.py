"""How well two trainings of the same archs agree, read from a `tamnas compare` folder.

`tamnas compare` trains each arch it compares for `--seeds` seeds and keeps every
net's per-image errors on the test images, so its folder holds a seed study at no
extra cost. This script takes the archs of the space it trained (front picks, random
archs, random search's picks; the plain nets are not archs of the space and are left
out), per budget (archs of about one size: the order a pick at that budget relies on)
and all together, and prints what `tamnas validate` prints for its ceiling
(`rank_fidelity.ceilings`): the seed tau with its interval over archs, the tau of two
independent image samples, the tau reachable against the mean of the seeds and the
seeds a readable ranking needs, with its interval.

    python benchmarks/compare_ceiling.py RUN --label "fashion, compare at 20k/33k/2.1 ms"
    python benchmarks/compare_ceiling.py RUN --label ... --write   # keep it for docs/trust.md

`--write` appends the per-arch errors and the image tau to
results/compare_ceiling.jsonl, which `precision_tables.py` reads into docs/trust.md.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from tamnas.analysis.rank_fidelity import OBJECTIVES, ceilings
from tamnas.analysis.stats import markdown_table
from tamnas.files import read_json

RESULTS = Path(__file__).resolve().parent / "results" / "compare_ceiling.jsonl"
BOOTSTRAP, SEED = 2000, 0
SPACE_GROUPS = ("front", "random archs", "random search")


def space_archs(compare_dir: Path) -> dict[str, list[str]]:
    """Budget label -> the keys of the space's archs compare trained there (plain nets out)."""
    blob = read_json(compare_dir / "compare.json", "compare results")
    out = {}
    for budget in blob["budgets"]:
        keys = [k for g in SPACE_GROUPS for k in budget["groups"].get(g, {}).get("keys", [])]
        out[budget["budget"]] = list(dict.fromkeys(keys))
    return out


def masks(compare_dir: Path, keys: list[str]) -> tuple[dict[str, np.ndarray], list[str], list[int]]:
    """Per objective (archs x seeds x images) error masks of the archs trained with every seed
    the others have (an arch missing a seed is left out), their keys and params."""
    train = compare_dir / "train"
    seeds: dict[str, list[int]] = {}
    for folder in sorted(train.iterdir()):
        key, _, s = folder.name.rpartition("-s")
        if key in keys and (folder / "wrong.npz").is_file():
            seeds.setdefault(key, []).append(int(s))
    n_seeds = max((len(v) for v in seeds.values()), default=0)
    kept = [k for k in keys if len(seeds.get(k, [])) == n_seeds]
    out: dict[str, list] = {"clean": [], "adv": []}
    params = []
    for key in kept:
        for name, per_arch in out.items():
            per_arch.append([])
            for s in sorted(seeds[key]):
                with np.load(train / f"{key}-s{s}" / "wrong.npz") as z:
                    per_arch[-1].append(z[name].astype(float))
        params.append(int(read_json(train / f"{key}-s0" / "scores.json", "scores")["params"]))
    return {n: np.array(v) for n, v in out.items()} if kept else {}, kept, params


def study(compare_dir: Path, keys: list[str], rng: np.random.Generator) -> dict:
    """`rank_fidelity.ceilings`' figures per objective for these archs."""
    m, kept, params = masks(compare_dir, keys)
    out = {"archs": len(kept), "keys": kept, "params": params}
    if len(kept) < 3 or m["clean"].shape[1] < 2:
        return out   # fewer than 3 archs or 2 seeds: no tau worth a number
    for name in OBJECTIVES:
        s: dict = {}
        per_seed = list(m[name].mean(axis=2).T)          # one (archs,) array per seed
        ceilings(s, m[name], per_seed, rng, BOOTSTRAP)
        s["errors"] = [list(map(float, e)) for e in per_seed]
        s["seed_sd"] = float(np.sqrt(np.mean(np.var(m[name].mean(axis=2), axis=1, ddof=1))))
        out[name] = s
    return out


def _seeds(k) -> str:
    return "n/a" if k is None or math.isnan(k) else "never" if math.isinf(k) else str(int(k))


def table(studies: dict[str, dict]) -> pd.DataFrame:
    rows = []
    for label, st in studies.items():
        for name, word in (("clean", "clean"), ("adv", "PGD")):
            if name not in st:
                continue
            s = st[name]
            lo, hi = s["ceiling_seeds_ci"]
            rows.append({"archs": f"{label} ({st['archs']})", "error": word,
                         "seed sd (points)": round(100 * s["seed_sd"], 2),
                         "seed tau [95% CI]": f"{s['ceiling_seeds']:.2f} [{lo:.2f}, {hi:.2f}]",
                         "image tau": round(s["ceiling_images"], 2),
                         "reachable": round(s["ceiling_for_mean"], 2),
                         "seeds needed [95% CI]": f"{_seeds(s['seeds_needed'])} "
                                                  f"[{_seeds(s['seeds_needed_ci'][0])}, "
                                                  f"{_seeds(s['seeds_needed_ci'][1])}]"})
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a run whose `tamnas compare` has finished")
    parser.add_argument("--label", required=True, help="what the study is, for the tables")
    parser.add_argument("--write", action="store_true",
                        help=f"append the all-archs study to {RESULTS.name}")
    args = parser.parse_args()
    compare_dir = args.run / "compare"
    budgets = space_archs(compare_dir)
    rng = np.random.default_rng(SEED)
    studies = {b: study(compare_dir, keys, rng) for b, keys in budgets.items()}
    every = list(dict.fromkeys(k for keys in budgets.values() for k in keys))
    studies["all budgets"] = study(compare_dir, every, rng)
    print(markdown_table(table(studies), index=False))
    if args.write:
        st = studies["all budgets"]
        record = {"label": args.label, "archs": st["archs"], "keys": st["keys"],
                  "params": st["params"],
                  **{f"{n}_errors": st[n]["errors"] for n in OBJECTIVES if n in st},
                  **{f"{n}_image_tau": st[n]["ceiling_images"] for n in OBJECTIVES if n in st}}
        with RESULTS.open("a") as f:
            f.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
