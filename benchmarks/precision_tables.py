"""The tables of docs/trust.md, computed from the noise model (never typed by hand).

1. How wide the 95% interval of a difference between two archs is, by seeds
   per arch and evaluation images (`analysis.precision.precision_table`),
   for the seed noise measured in this repository's committed studies.
2. How many training seeds a readable ranking needs, by the agreement of
   two trainings and of two image samples (`precision.seeds_table`).
3. The seed agreement of the committed two-seed studies
   (`results/rank_ceiling.jsonl`, `results/rank_ceiling_jobs.jsonl`, and the
   trainings of `tamnas compare` calls in `results/compare_ceiling.jsonl`, which
   `compare_ceiling.py` writes with the image noise) with its interval over archs
   and the seeds a readable ranking would need.

    python benchmarks/precision_tables.py            # print the tables
    python benchmarks/precision_tables.py --write    # refresh them in docs/trust.md

The docs hold them between the markers below; tests/test_trust_docs.py fails
when the docs and this script disagree.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from tamnas.analysis import noise, precision
from tamnas.analysis.stats import markdown_table

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
DOCS = ROOT / "docs" / "trust.md"
BEGIN, END = "<!-- precision tables: begin -->", "<!-- precision tables: end -->"
BOOTSTRAP, SEED = 2000, 0


def studies() -> list[dict]:
    """Every committed two-seed study: label, and per objective the (seeds x archs) errors."""
    out = []
    for line in (RESULTS / "rank_ceiling.jsonl").read_text().splitlines():
        rec = json.loads(line)
        per = rec["per_arch"]
        out.append({"label": f"digits ({rec['label']})", "archs": len(per),
                    **{w: np.array([[a[f"{w}_err_s{s}"] for a in per] for s in (0, 1)])
                       for w in ("clean", "adv")}})
    jobs: dict[str, dict] = {}
    for line in (RESULTS / "rank_ceiling_jobs.jsonl").read_text().splitlines():
        rec = json.loads(line)
        study = jobs.setdefault(rec["key"], {"label": rec["label"], "runs": {}})
        study["runs"][(rec["index"], rec["seed_index"])] = rec
    for study in jobs.values():
        archs = sorted({i for i, s in study["runs"] if (i, 1 - s) in study["runs"]})
        if len(archs) < 3:
            continue   # fewer archs have no tau worth a number
        out.append({"label": study["label"], "archs": len(archs),
                    **{w: np.array([[study["runs"][(i, s)][f"{w}_err"] for i in archs]
                                    for s in (0, 1)]) for w in ("clean", "adv")}})
    compared = RESULTS / "compare_ceiling.jsonl"
    for line in compared.read_text().splitlines() if compared.is_file() else []:
        rec = json.loads(line)
        out.append({"label": rec["label"], "archs": rec["archs"],
                    **{w: np.array(rec[f"{w}_errors"]) for w in ("clean", "adv")},
                    **{f"{w}_image_tau": rec[f"{w}_image_tau"] for w in ("clean", "adv")}})
    return out


def seed_sd(per_seed: np.ndarray) -> float:
    """Standard deviation of one training's error over seeds, pooled over the archs."""
    return float(np.sqrt(np.mean(np.var(per_seed, axis=0, ddof=1))))


def _seeds(k: float) -> str:
    return "n/a" if math.isnan(k) else "never" if math.isinf(k) else str(int(k))


def study_table() -> pd.DataFrame:
    rng = np.random.default_rng(SEED)
    rows = []
    for st in studies():
        for w, label in (("clean", "clean"), ("adv", "PGD")):
            agree = noise.seed_agreement(st[w], rng, BOOTSTRAP)
            lo, hi = agree["ci"]
            image_tau = st.get(f"{w}_image_tau")     # None: no per-image masks were kept
            k = len(st[w])                            # seeds per arch
            need = noise.seeds_needed(agree["tau"], k, image_tau)
            need_ci = noise.seeds_needed_interval(agree["ci"], k, image_tau)
            rows.append({"study": st["label"], "error": label, "archs": st["archs"],
                         "seed sd (points)": round(100 * seed_sd(st[w]), 2),
                         "seed tau [95% CI]": f"{agree['tau']:.2f} [{lo:.2f}, {hi:.2f}]",
                         "image tau": "n/a" if image_tau is None else f"{image_tau:.2f}",
                         "reachable": round(noise.reachable_tau(agree["tau"], k, image_tau), 2),
                         "seeds needed [95% CI]": f"{_seeds(need)} [{_seeds(need_ci[0])}, "
                                                  f"{_seeds(need_ci[1])}]"})
    return pd.DataFrame(rows)


def planning_tables() -> list[tuple[str, pd.DataFrame]]:
    """The interval half-widths for the largest PGD seed noise measured in the studies."""
    worst = max(studies(), key=lambda st: seed_sd(st["adv"]))
    sd = seed_sd(worst["adv"])
    p = float(worst["adv"].mean())
    bound = 2 * p * (1 - p)        # two nets erring independently: the unpaired upper bound
    out = []
    for s_label, s in ((f"seed sd {100 * sd:.1f} points (PGD, {worst['label']})", sd),
                       (f"seed sd {100 * sd / 2:.1f} points (half of it)", sd / 2)):
        table = precision.precision_table(s, bound).round(2)
        out.append(((f"{s_label}; image variance {bound:.3f} (errors near {100 * p:.0f}%, "
                    "unpaired upper bound)"), table))
    return out


def render() -> str:
    lines = [("**Half-width of the 95% interval of a difference between two archs, in error "
             "points** (rows: seeds per arch; columns: evaluation images shared by both):"), ""]
    for caption, table in planning_tables():
        lines += [f"*{caption}*", "", markdown_table(table, index=True)]
    seeds = precision.seeds_table()
    lines += [("**Seeds a readable ranking needs** (reachable tau >= "
              f"{noise.READABLE_TAU:.2f}), by the tau of two trainings (one seed each) and of two "
              "independent image samples; \"inf\": no number of seeds (the images' noise alone "
              "keeps it below: more images, not seeds):"), "",
              markdown_table(seeds, index=True)]
    lines += [("**The committed two-seed studies**, seed agreement with its 95% interval over "
              "archs and the seeds a readable ranking would need. Image noise is included where "
              "per-image masks were kept (an image tau is given); elsewhere the seeds are "
              "lower bounds:"),
              "", markdown_table(study_table(), index=False)]
    return "\n".join(lines).rstrip() + "\n"


def write(text: str, path: Path = DOCS) -> None:
    page = path.read_text()
    head, rest = page.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    path.write_text(f"{head}{BEGIN}\n{text}{END}{tail}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="refresh the tables in docs/trust.md")
    args = parser.parse_args()
    text = render()
    if args.write:
        write(text)
    print(text)


if __name__ == "__main__":
    main()
