"""Analysis package: top-k, per-layer counts, LEGO net, arch JSON, figures and the run report."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import pytest
from scipy.stats import kendalltau

from tamnas.analysis import export, lego, plots, rank_fidelity, report, stats
from tamnas.config import load_config, save_config
from tamnas.search.archive import Archive, arch_key
from tamnas.supernets.base import Arch, Gene, SearchSpace


class FakeShuffleSpace(SearchSpace):
    """The ShuffleNetV2 gene layout in miniature: 4 layers, layer 0 has stride 2.

    Offered block ids 0, 4, 15, 18, 20 (18 and 20 are pure robust, illegal
    with stride 2) and ratios 0.4, 1.0, 2.0; genes index into those lists.
    """

    name = "fake"
    BLOCKS: ClassVar[list[int]] = [0, 4, 15, 18, 20]
    RATIOS: ClassVar[list[float]] = [0.4, 1.0, 2.0]
    STRIDES: ClassVar[list[int]] = [2, 1, 1, 1]
    CHANNELS: ClassVar[list[int]] = [16, 16, 32, 32]

    def __init__(self):
        self.genes = []
        for layer in range(len(self.STRIDES)):
            self.genes.append(Gene(f"layer{layer}.block", "block", len(self.BLOCKS), layer))
            self.genes.append(Gene(f"layer{layer}.ratio", "ratio", len(self.RATIOS), layer))

    def validate(self, arch: Sequence[int]) -> Arch:
        arch = super().validate(arch)
        for layer, stride in enumerate(self.STRIDES):
            if stride == 2 and self.BLOCKS[arch[2 * layer]] > 17:
                raise ValueError(f"fake: gene layer{layer}.block = {arch[2 * layer]} is illegal "
                                 "with stride 2")
        return arch

    def allowed_values(self, gene: Gene, allowed=None) -> list[int]:
        values = super().allowed_values(gene, allowed)
        if gene.kind == "block" and self.STRIDES[gene.layer] == 2:
            values = [v for v in values if self.BLOCKS[v] <= 17]
        return values

    def gene_label(self, gene_index: int, value: int) -> str:
        gene = self.genes[gene_index]
        return str(self.BLOCKS[value]) if gene.kind == "block" else str(self.RATIOS[value])

    def params(self, arch: Arch) -> int:
        return 1000 + sum((b + 1) * 100 * (r + 1) for b, r in zip(arch[0::2], arch[1::2]))

    def describe(self, arch: Arch) -> dict:
        arch = self.validate(arch)
        layers = []
        for layer, (b, r) in enumerate(zip(arch[0::2], arch[1::2])):
            block = self.BLOCKS[b]
            layers.append({"layer": layer, "stride": self.STRIDES[layer], "block": block,
                           "kernel": [3, 5, 7][block % 3] if block < 18 else None,
                           "ratio": self.RATIOS[r],
                           "mid_channels": int(self.CHANNELS[layer] // 2 * self.RATIOS[r])})
        return {"stem": 8, "layers": layers}

    def parse(self, description: Mapping) -> Arch:
        genes = [(self.BLOCKS.index(lay["block"]), self.RATIOS.index(lay["ratio"]))
                 for lay in description["layers"]]
        return self.validate([v for pair in genes for v in pair])

    def config(self) -> dict:
        return {"name": self.name, "blocks": self.BLOCKS, "ratios": self.RATIOS}


def frame_of(archs: list[list[int]], **cols) -> pd.DataFrame:
    df = pd.DataFrame(archs, columns=[f"g{i}" for i in range(len(archs[0]))])
    df.insert(0, "arch", [arch_key(a) for a in archs])
    for name, values in cols.items():
        df[name] = values
    return df


@pytest.fixture
def space() -> FakeShuffleSpace:
    return FakeShuffleSpace()


# --- top-k -------------------------------------------------------------------------------------
def test_top_k_by_adv_err_breaks_ties_by_clean_err_then_order():
    df = frame_of([[0] * 8] * 5, adv_err=[0.5, 0.3, 0.3, 0.1, 0.3],
                  clean_err=[0.1, 0.4, 0.2, 0.5, 0.2], params=[5, 4, 3, 2, 3])
    df.index = [10, 11, 12, 13, 14]
    top = stats.top_k(df, 4, by="adv_err")
    # 13 (0.1); then the 0.3 tie: 12 and 14 (clean 0.2, params 3: still tied -> input order), 11.
    assert list(top.index) == [13, 12, 14, 11]
    assert len(stats.top_k(df, 99)) == 5


def test_top_k_weighted_follows_normalised_weighted_sum():
    df = frame_of([[0] * 8] * 3, adv_err=[0.2, 0.4, 0.6], clean_err=[0.3, 0.2, 0.1],
                  params=[300, 100, 200])
    assert list(stats.top_k(df, 3, by="weighted", weights={"params": 1.0}).index) == [1, 2, 0]
    assert list(stats.top_k(df, 3, by="weighted", weights=[0, 1, 0]).index) == [2, 1, 0]
    # Equal weights: normalised sums 0+1+1=2, .5+.5+0=1, 1+0+.5=1.5.
    assert list(stats.top_k(df, 3, by="weighted").index) == [1, 2, 0]


def test_top_k_crowding_puts_extremes_then_most_isolated_first():
    adv = [0.0, 0.1, 0.2, 0.6, 1.0]
    clean = [1.0, 0.5, 0.45, 0.1, 0.0]
    df = frame_of([[0] * 8] * 5, adv_err=adv, clean_err=clean)
    # Hand-computed crowding: inf, 0.375, 0.45, 0.625, inf; the two extremes tie -> lower adv first.
    top = stats.top_k(df, 5, by="crowding", objectives=("adv_err", "clean_err"))
    assert list(top.index) == [0, 4, 3, 2, 1]


def test_top_k_rejects_unknown_ranking_and_missing_columns():
    df = frame_of([[0] * 8], adv_err=[0.1], clean_err=[0.1])
    with pytest.raises(ValueError, match="by="):
        stats.top_k(df, 1, by="best")
    with pytest.raises(ValueError, match="params"):
        stats.top_k(df, 1, by="weighted")


# --- per-layer counts ---------------------------------------------------------------------------
def test_layer_counts_match_a_hand_count(space):
    rows = [[0, 2, 3, 1, 1, 0, 4, 2],
            [1, 2, 3, 1, 2, 0, 4, 0],
            [0, 1, 0, 1, 2, 2, 4, 2]]
    df = frame_of(rows)
    blocks = stats.layer_counts(space, df, "block")
    assert list(blocks.index) == ["layer0", "layer1", "layer2", "layer3"]
    assert list(blocks.columns) == ["0", "4", "15", "18", "20"]
    expected = np.array([[2, 1, 0, 0, 0],      # layer0: ids 0, 4, 0
                         [1, 0, 0, 2, 0],      # layer1: 18, 18, 0
                         [0, 1, 2, 0, 0],      # layer2: 4, 15, 15
                         [0, 0, 0, 0, 3]])     # layer3: 20 x3
    np.testing.assert_array_equal(blocks.to_numpy(), expected)
    ratios = stats.layer_counts(space, df, "ratio")
    assert list(ratios.columns) == ["0.4", "1.0", "2.0"]
    np.testing.assert_array_equal(ratios.to_numpy(), [[0, 1, 2], [0, 3, 0], [2, 0, 1], [1, 0, 2]])
    assert blocks.columns.name == "block" and blocks.index.name == "layer"
    with pytest.raises(ValueError, match="kind"):
        stats.layer_counts(space, df, "op")


def test_save_table_writes_csv_and_markdown(tmp_path, space):
    counts = stats.layer_counts(space, frame_of([[0, 2, 3, 1, 1, 0, 4, 2]]), "ratio")
    paths = stats.save_table(counts, tmp_path / "ratio_counts")
    assert [p.name for p in paths] == ["ratio_counts.csv", "ratio_counts.md"]
    back = pd.read_csv(paths[0], index_col=0)
    assert back.to_numpy().tolist() == counts.to_numpy().tolist()
    md = paths[1].read_text().splitlines()
    assert md[0] == "| layer | 0.4 | 1.0 | 2.0 |"
    assert md[1] == "| --- | ---: | ---: | ---: |"
    assert md[2] == "| layer0 | 0 | 0 | 1 |" and len(md) == 6


# --- LEGO ---------------------------------------------------------------------------------------
LEGO_ROWS = [
    # l0.block l0.ratio l1.block l1.ratio l2.block l2.ratio l3.block l3.ratio
    [3, 2, 4, 1, 2, 0, 1, 1],
    [3, 0, 4, 1, 2, 0, 0, 1],
    [3, 0, 3, 2, 1, 2, 0, 0],
    [1, 2, 4, 2, 1, 2, 1, 0],
    [1, 1, 0, 1, 0, 2, 2, 2],
    [2, 1, 0, 0, 1, 1, 2, 2],
]


def test_lego_is_the_per_layer_mode_with_ties_and_illegal_modes_handled(space):
    top = frame_of(LEGO_ROWS)
    arch = lego.lego_arch(space, top)
    # l0.block: mode 3 (id 18, pure robust) is illegal with stride 2 -> most frequent legal: 1 (x2).
    # l0.ratio: 2, 0, 1 each twice -> 2, the value of the best-ranked (first) arch.
    # l1.block: 4 (x3, legal with stride 1).   l1.ratio: 1 (x3).
    # l2.block: 1 (x3).  l2.ratio: 2 (x3).  l3.block: 1, 0, 2 tie -> 1 (first row).
    # l3.ratio: 1, 0, 2 tie -> 1 (first row).
    assert arch == (1, 2, 4, 1, 1, 2, 1, 1)
    table = lego.lego_table(space, top)
    assert table.loc[0, "replaced"]
    assert (table.loc[0, "mode"], table.loc[0, "chosen"]) == ("18", "4")
    assert not table["replaced"].iloc[1:].any()
    # Reversing the ranking flips the tie rule's winners to the (new) best-ranked arch's values.
    rev = lego.lego_arch(space, top.iloc[::-1])
    assert (rev[1], rev[6], rev[7]) == (1, 2, 2)


def test_lego_of_one_arch_is_that_arch_and_needs_gene_columns(space):
    top = frame_of([[2, 1, 3, 0, 4, 2, 1, 1]])
    assert lego.lego_arch(space, top) == (2, 1, 3, 0, 4, 2, 1, 1)
    with pytest.raises(ValueError, match="gene columns"):
        lego.lego_arch(space, top.drop(columns=["g3"]))
    with pytest.raises(ValueError, match="no rows"):
        lego.lego_arch(space, top.iloc[:0])


def test_write_arch_json_holds_space_genes_description_and_scores(tmp_path, space):
    arch = (1, 2, 4, 1, 1, 2, 1, 1)
    scores = {"adv_err": np.float64(0.5), "clean_err": 0.25, "params": np.int64(4200)}
    path = export.write_arch_json(space, arch, tmp_path / "exports" / "lego.json", scores=scores)
    blob = json.loads(path.read_text())
    assert blob["name"] == "lego" and blob["space"] == "fake"
    assert blob["space_config"] == space.config()
    assert blob["genes"] == list(arch)
    assert blob["description"] == json.loads(json.dumps(space.describe(arch)))
    assert blob["scores"] == {"adv_err": 0.5, "clean_err": 0.25, "params": 4200}
    assert space.parse(blob["description"]) == arch
    with pytest.raises(ValueError, match="stride 2"):
        export.write_arch_json(space, (3, 0, 0, 0, 0, 0, 0, 0), tmp_path / "bad.json")


# --- figures ------------------------------------------------------------------------------------
def search_frames(space, n: int = 40, seed: int = 0):
    """A synthetic archive frame (two strategies) and its non-dominated front, sorted by adv_err."""
    rng = np.random.default_rng(seed)
    archive = Archive(space.name, space.n_genes)
    while len(archive) < n:
        arch = space.sample(rng)
        adv = float(rng.uniform(0.4, 0.9))
        archive.add(arch, {"clean_err": round(max(0.0, 1.1 - adv - rng.uniform(0, 0.3)), 4),
                           "adv_err": adv,
                           "params": space.params(arch), "flops": 10 * space.params(arch)},
                    strategy="nsga2" if len(archive) % 3 else "mgda", generation=len(archive) // 10)
    df = archive.frame()
    front = archive.front(["adv_err", "clean_err", "params"])
    front = front.sort_values("adv_err").reset_index(drop=True)
    return archive, df, front


def retrained_table(front: pd.DataFrame) -> pd.DataFrame:
    rows = front.head(4)
    return pd.DataFrame({"name": [f"front-{k}" for k in range(len(rows))], "arch": rows["arch"],
                         "init": "scratch", "params": rows["params"],
                         "inherited_clean_err": rows["clean_err"],
                         "inherited_adv_err": rows["adv_err"],
                         "retrained_clean_err": [0.30, 0.20, 0.25, 0.10][: len(rows)],
                         "retrained_adv_err": [0.50, 0.55, 0.45, 0.60][: len(rows)]})


def assert_written(paths: list[Path], base: Path) -> None:
    assert [p.name for p in paths] == [f"{base.name}.png", f"{base.name}.svg"]
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and paths[0].stat().st_size > 1000
    assert b"<svg" in paths[1].read_bytes()[:2000]


# --- report -------------------------------------------------------------------------------------
def brute_force_front_size(df: pd.DataFrame, objectives: list[str]) -> int:
    F = df[objectives].to_numpy(dtype=float)
    dominated = [any((F[j] <= F[i]).all() and (F[j] < F[i]).any() for j in range(len(F)))
                 for i in range(len(F))]
    return int(len(F) - sum(dominated))


def make_run(tmp_path: Path, space) -> Path:
    run = tmp_path / "run"
    save_config(load_config("quickstart", {"output.top_k": 5}), run / "config.toml")
    archive, df, front = search_frames(space)
    archive.save(run / "search")
    pd.DataFrame({"generation": [0, 1, 2], "hv": [0.1, 0.2, 0.3], "evaluations": [10, 20, 30],
                  "cache_hits": [0, 1, 2], "seconds": [1.0, 2.0, 3.0]}).to_csv(
        run / "search" / "generations.csv", index=False)
    figs = run / "figures"
    plots.plot_front(df, front, figs / "front", formats=["png"])
    plots.plot_hypervolume(pd.read_csv(run / "search" / "generations.csv"), figs / "hypervolume",
                           formats=["png"])
    top = stats.top_k(front, 5)
    for kind in ("block", "ratio"):
        stats.save_table(stats.layer_counts(space, top, kind), run / "stats" / f"{kind}_counts")
    arch = lego.lego_arch(space, top)
    export.write_arch_json(space, arch, run / "exports" / "lego.json",
                         scores={"adv_err": 0.5, "clean_err": 0.2, "params": space.params(arch)})
    retrained = retrained_table(front)
    (run / "retrain" / "front-0").mkdir(parents=True)
    retrained.to_csv(run / "retrain" / "summary.csv", index=False)
    pd.DataFrame({"eps": [2 / 255, 8 / 255], "steps": [10, 10], "accuracy": [0.6, 0.4]}).to_csv(
        run / "retrain" / "front-0" / "robustness.csv", index=False)
    (run / "retrain" / "lego").mkdir()
    pd.DataFrame({"eps": [8 / 255], "steps": [10], "accuracy": [0.3]}).to_csv(
        run / "retrain" / "lego" / "robustness.csv", index=False)
    (run / "retrain" / "lego" / "robustness.md").write_text("| eps | PGD-10 |\n| --- | ---: |\n"
                                                            "| 8/255 | 30.00 |\n")
    return run


def test_report_gathers_sections_tables_and_figure_links(tmp_path, space):
    run = make_run(tmp_path, space)
    path = report.write_report(run)
    assert path == run / "report.md"
    text = path.read_text()
    for heading in ("## Configuration", "## Supernet training", "## Search",
                    "### Non-dominated front", "## Figures", "## Per-layer statistics of the top-k",
                    "### block choices", "### ratio choices", "## LEGO net", "## Retraining",
                    "## Robustness", "### front-0"):
        assert heading in text, heading
    assert "| preset | preset | quickstart |" in text
    assert "![front](figures/front.png)" in text
    assert "![hypervolume](figures/hypervolume.png)" in text
    assert text.index("figures/front.png") < text.index("figures/hypervolume.png")
    df = pd.read_csv(run / "search" / "archive.csv")
    # the run's strategy's front (quickstart: nsga2); the archive's mgda rows never enter it
    mine = df[df["strategies"].str.split(",").apply(lambda names: "nsga2" in names)]
    assert 0 < len(mine) < len(df)
    n_front = brute_force_front_size(mine, ["adv_err", "clean_err", "params"])
    assert f"### Non-dominated front ({n_front} archs" in text
    assert "The front of the run's strategy, nsga2" in text
    front_section = text.split("### Non-dominated front")[1].split("## Figures")[0]
    table_lines = [line for line in front_section.splitlines() if line.startswith("| ")]
    assert len(table_lines) == n_front + 2  # header, rule, one line per arch
    lego_section = text.split("## LEGO net")[1].split("## Retraining")[0]
    assert "| layer | stride | block | kernel | ratio | mid_channels |" in lego_section
    assert "| 50 |" in lego_section  # adv_err 0.5 shown as a percentage
    assert "## Supernet training\n\n_not run_" in text
    retrained = pd.read_csv(run / "retrain" / "summary.csv")
    taus = {w: kendalltau(retrained[f"inherited_{w}_err"], retrained[f"retrained_{w}_err"])[0]
            for w in ("clean", "adv")}
    assert ("of the inherited errors (supernet weights, validation images) with the retrained "
            "errors (test set) of the same archs: "
            f"clean error {taus['clean']:.2f} over 4 archs; adversarial error {taus['adv']:.2f} "
            "over 4 archs. Not meaningful: below 5 archs") in text
    robustness = text.split("## Robustness")[1]
    assert "### front-0" in robustness and "| 0.03137 | 10 | 0.4 |" in robustness
    assert "### lego\n\n| eps | PGD-10 |\n| --- | ---: |\n| 8/255 | 30.00 |" in robustness


def test_report_gives_the_retrained_tau_a_bootstrap_interval_from_five_archs(tmp_path):
    run = tmp_path / "run"
    save_config(load_config("quickstart"), run / "config.toml")
    rng = np.random.default_rng(3)
    n = 7
    table = pd.DataFrame({"name": [f"front-{k}" for k in range(n)], **{
        f"{p}_{w}_err": rng.uniform(0.1, 0.6, n) for p in ("inherited", "retrained")
        for w in ("clean", "adv")}})
    (run / "retrain").mkdir(parents=True)
    table.to_csv(run / "retrain" / "summary.csv", index=False)
    text = report.write_report(run).read_text()
    for which, label in (("clean", "clean error"), ("adv", "adversarial error")):
        x, y = table[f"inherited_{which}_err"], table[f"retrained_{which}_err"]
        # The recipe of rank_fidelity.tau_summary redone with scipy's tau on each resample.
        idx = np.random.default_rng(rank_fidelity.TAU_SEED).integers(
            n, size=(rank_fidelity.TAU_BOOTSTRAP, n))
        boot = [kendalltau(x.to_numpy()[i], y.to_numpy()[i])[0] for i in idx]
        lo, hi = np.nanpercentile(boot, [2.5, 97.5])
        tau = kendalltau(x, y)[0]
        assert lo <= tau <= hi          # so an interval widened to hold tau is this one too
        assert f"{label} {tau:.2f} [{lo:.2f}, {hi:.2f}] over {n} archs" in text
    assert "Brackets: 95% bootstrap interval over the archs." in text
    assert "Not meaningful" not in text


def test_report_numbers_the_front_as_front_k_does_when_errors_tie(tmp_path):
    from tamnas.search.archive import front_table

    run = tmp_path / "ties"
    save_config(load_config("quickstart"), run / "config.toml")
    archive = Archive("shufflenet", 12)
    # Equal adversarial errors: front:K breaks the tie by clean error, not by archive order.
    for g, (adv, clean, params) in enumerate([(0.3, 0.5, 100), (0.3, 0.2, 300), (0.1, 0.6, 400),
                                              (0.3, 0.4, 200)]):
        archive.add((g,) * 12, {"adv_err": adv, "clean_err": clean, "params": params})
    archive.save(run / "search")
    text = report.write_report(run).read_text()
    section = text.split("### Non-dominated front")[1].split("## Figures")[0]
    rows = [line.split(" | ")[1] for line in section.splitlines() if line.startswith("| ")][2:]
    assert rows == list(front_table(archive, ["adv_err", "clean_err", "params"])["arch"])
    assert rows[1] == "1-1-1-1-1-1-1-1-1-1-1-1"


def test_report_says_not_run_for_missing_pieces(tmp_path):
    run = tmp_path / "bare"
    save_config(load_config("quickstart"), run / "config.toml")
    text = report.write_report(run).read_text()
    for heading in ("## Search", "## Figures", "## Per-layer statistics of the top-k",
                    "## LEGO net", "## Retraining", "## Robustness"):
        assert text.split(heading)[1].lstrip().startswith("_not run_"), heading
    with pytest.raises(FileNotFoundError, match="does not exist"):
        report.write_report(tmp_path / "nowhere")


# --- readable names with the real ShuffleNet space ---------------------------------------------
def quickstart_run(tmp_path: Path):
    """A run directory of the quickstart preset holding a synthetic search of its real space."""
    from tamnas.supernets import build_space

    cfg = load_config("quickstart", {"output.top_k": 8, "output.formats": ["png"]})
    space = build_space(cfg)
    run = tmp_path / "qs"
    save_config(cfg, run / "config.toml")
    archive, _, front = search_frames(space, n=30, seed=4)
    archive.save(run / "search")
    return cfg, space, run, front


def test_every_per_layer_figure_labels_blocks_by_name_and_ratios_by_value(tmp_path, monkeypatch):
    from tamnas.commands.plot import plot
    from tamnas.supernets.shufflenet.layout import BLOCKS

    cfg, space, run, _ = quickstart_run(tmp_path)
    made: dict[str, tuple[list[str], list[str]]] = {}
    real_save = plots.save_figure

    def keep(fig, out_base, formats=("png",)):      # tick labels of every figure, before saving
        ax = fig.axes[0]
        made[Path(out_base).name] = ([t.get_text() for t in ax.get_xticklabels()],
                                     [t.get_text() for t in ax.get_yticklabels()])
        return real_save(fig, out_base, formats)

    monkeypatch.setattr(plots, "save_figure", keep)
    plot(cfg, run, quiet=True)
    assert {"layer_blocks", "layer_ratios"} <= set(made)
    assert not (run / "figures" / "validate.png").exists()     # validate has not run
    block_names = [BLOCKS[b].name for b in space.blocks]
    assert block_names == ["shuffle-se k3", "xception-se k5", "shuffle-se-nlEG k7", "robust-nlEG-se"]
    for name, expected in (("layer_blocks", block_names),
                           ("layer_ratios", ["0.2", "0.6", "1.0", "1.4", "2.0"])):
        xticks, yticks = made[name]
        assert xticks == expected, name
        assert yticks == [f"layer{i}" for i in range(6)], name
    counts = pd.read_csv(run / "stats" / "block_counts.csv", index_col=0)
    assert list(counts.columns) == block_names


def test_plot_stars_the_exported_lego_net_and_outlines_its_choices(tmp_path, monkeypatch):
    from matplotlib.legend import Legend

    from tamnas.commands.plot import plot

    cfg, space, run, front = quickstart_run(tmp_path)
    arch = lego.lego_arch(space, stats.top_k(front, 8))
    export.write_arch_json(space, arch, run / "exports" / "lego.json",
                           scores={"adv_err": 0.5, "clean_err": 0.2, "params": space.params(arch)})
    made = {}
    real_save = plots.save_figure

    def keep(fig, out_base, formats=("png",)):
        made[Path(out_base).name] = (
            [c.get_offsets()[0].tolist() for c in fig.axes[0].collections if c.get_gid() == "lego"],
            {t.get_text() for leg in fig.findobj(Legend) for t in leg.get_texts()})
        return real_save(fig, out_base, formats)

    monkeypatch.setattr(plots, "save_figure", keep)
    plot(cfg, run, quiet=True)
    stars, legend = made["front"]
    known = front[front["arch"] == arch_key(arch)]
    expected = known[["adv_err", "clean_err"]].to_numpy()[0].tolist() if len(known) else [0.5, 0.2]
    assert stars == [expected]
    assert any(t.startswith("LEGO net (") for t in legend)
    assert "LEGO net's choice" in made["layer_blocks"][1]
    assert "illegal in this layer" in made["layer_blocks"][1]    # robust blocks in stride-2 layers


def test_front_tables_show_layers_by_name_next_to_the_arch_string(tmp_path):
    from tamnas.search.nsga2 import format_front_table

    _, space, run, _ = quickstart_run(tmp_path)
    # the front the report shows: the run's strategy's (nsga2), in front:K order
    front = report.front_table(pd.read_csv(run / "search" / "archive.csv"),
                               ["adv_err", "clean_err", "params"], "nsga2")
    labels = stats.arch_labels(space, front)
    assert labels[0] == space.arch_label(tuple(front.loc[0, [f"g{i}" for i in range(12)]]))
    assert len(labels[0].split(", ")) == 6 and labels[0].split(", ")[0] in {
        f"{b} x{r}" for b in ("shuffle-se k3", "xception-se k5", "shuffle-se-nlEG k7")
        for r in ("0.2", "0.6", "1.0", "1.4", "2.0")}
    text = report.write_report(run).read_text()
    section = text.split("### Non-dominated front")[1].split("## Figures")[0]
    header = next(line for line in section.splitlines() if line.startswith("| front"))
    assert "| arch | layers |" in header
    assert f"| {front.loc[0, 'arch']} | {labels[0]} |" in section
    console = format_front_table(front, ["adv_err", "clean_err", "params"], layers=labels)
    lines = console.splitlines()
    assert lines[0].split()[-2:] == ["arch", "layers"]
    arch_at = lines[0].index("arch")
    assert lines[2][arch_at:].split()[0] == front.loc[0, "arch"]
    assert lines[2][lines[0].index("layers"):] == labels[0]
    assert stats.arch_labels(FakeShuffleSpace(), front) is None    # 12 gene columns, 8 genes


def test_report_front_shows_each_error_with_its_standard_error(tmp_path):
    from tamnas.search.archive import Archive

    run = tmp_path / "noisy"
    save_config(load_config("quickstart"), run / "config.toml")
    archive = Archive("shufflenet", 12)
    archive.add((0,) * 12, {"adv_err": 0.5, "clean_err": 0.2, "params": 100, "n_eval": 300})
    archive.add((1,) * 12, {"adv_err": 0.3, "clean_err": 0.4, "params": 200, "n_eval": 300})
    archive.save(run / "search")
    text = report.write_report(run).read_text()
    front = text.split("### Non-dominated front")[1].split("## Figures")[0]
    se = 100 * np.sqrt(0.3 * 0.7 / 300)
    assert f"30.00 ± {se:.2f}" in front and "over the 300 validation images" in front
    assert "adv_err_se" not in front
    assert "## Rank fidelity\n\n_not run_" in text
