"""Export: arch JSON + weights round trip through load_arch, one-line errors, ONNX export."""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Mapping, Sequence

import numpy as np
import pytest
import torch
from tolerances import assert_rounding_close, network_terms_and_depth
from torch import nn

from tamnas import build_space, load_config
from tamnas.analysis import export
from tamnas.data import dataset_info
from tamnas.errors import MissingExtraError, require
from tamnas.files import save_checkpoint
from tamnas.supernets import SPACES, register_space
from tamnas.supernets.base import Arch, Gene, SearchSpace

WIDTHS = [4, 6, 8]
KERNELS = [1, 3]


class TinyNet(nn.Module):
    """Conv-BN-ReLU layers of the chosen widths and kernels, then pool and a linear head."""

    def __init__(self, in_channels: int, num_classes: int, widths: Sequence[int],
                 kernels: Sequence[int]):
        super().__init__()
        layers, c = [], in_channels
        for w, k in zip(widths, kernels):
            layers += [nn.Conv2d(c, w, k, padding=k // 2, bias=False), nn.BatchNorm2d(w), nn.ReLU()]
            c = w
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(c, num_classes)

    def forward(self, x):
        return self.head(self.features(x).mean((2, 3)))


@register_space("test-export-tiny")
class TinyExportSpace(SearchSpace):
    """Two layers, genes (width, kernel) each; kernel 1 is illegal in layer 0 (bounds miss it)."""

    def __init__(self, in_channels: int = 3, num_classes: int = 5, resolution: int = 8):
        self.in_channels, self.num_classes, self.resolution = in_channels, num_classes, resolution
        self.genes = []
        for layer in range(2):
            self.genes += [Gene(f"layer{layer}.width", "width", len(WIDTHS), layer),
                           Gene(f"layer{layer}.kernel", "kernel", len(KERNELS), layer)]

    def validate(self, arch: Sequence[int]) -> Arch:
        arch = super().validate(arch)
        if KERNELS[arch[1]] == 1:
            raise ValueError(f"{self.name}: gene layer0.kernel = {arch[1]} is illegal; "
                             "layer 0 needs kernel 3")
        return arch

    def build_standalone(self, arch: Arch) -> nn.Module:
        arch = self.validate(arch)
        return TinyNet(self.in_channels, self.num_classes, [WIDTHS[a] for a in arch[0::2]],
                       [KERNELS[a] for a in arch[1::2]])

    def describe(self, arch: Arch) -> dict:
        return {"layers": [{"width": WIDTHS[w], "kernel": KERNELS[k]}
                           for w, k in zip(arch[0::2], arch[1::2])]}

    def parse(self, description: Mapping) -> Arch:
        layers = description["layers"]
        return self.validate([v for layer in layers for v in (WIDTHS.index(layer["width"]),
                                                               KERNELS.index(layer["kernel"]))])

    def config(self) -> dict:
        return {"in_channels": self.in_channels, "num_classes": self.num_classes,
                "resolution": self.resolution}

    @classmethod
    def from_config(cls, d: Mapping) -> TinyExportSpace:
        return cls(int(d["in_channels"]), int(d["num_classes"]), int(d["resolution"]))


ARCH = (2, 1, 0, 0)
HAVE_ORT = all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxruntime"))


@pytest.fixture
def space():
    return TinyExportSpace(in_channels=3, num_classes=5, resolution=8)


def trained_like(net: nn.Module, seed: int = 0) -> nn.Module:
    """Random weights and non-trivial BN statistics, so a missed buffer changes the logits."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for tensor in list(net.parameters()) + [b for b in net.buffers() if b.is_floating_point()]:
            tensor.copy_(torch.rand(tensor.shape, generator=gen) + 0.5)
    return net.eval()


def inputs(n: int = 4, seed: int = 1) -> torch.Tensor:
    return torch.rand((n, 3, 8, 8), generator=torch.Generator().manual_seed(seed))


def single_line(err: pytest.ExceptionInfo) -> str:
    msg = str(err.value)
    assert msg and "\n" not in msg, msg
    return msg


def test_export_then_load_arch_gives_the_same_logits(space, tmp_path):
    net = trained_like(space.build_standalone(ARCH))
    x = inputs()
    expected = net(x)
    paths = export.export_arch(space, ARCH, tmp_path / "exports", "best",
                               state_dict=net.state_dict(),
                               scores={"clean_err": 0.25, "params": 123})
    assert paths["json"] == tmp_path / "exports" / "best.json"
    assert paths["weights"] == tmp_path / "exports" / "best.pt"
    blob = json.loads(paths["json"].read_text())
    assert blob["space"] == "test-export-tiny" and blob["genes"] == list(ARCH)
    assert blob["space_config"] == space.config() and blob["weights"] == "best.pt"
    assert blob["description"]["layers"][0] == {"width": 8, "kernel": 3}
    assert blob["scores"] == {"clean_err": 0.25, "params": 123} and blob["tamnas_version"]

    loaded = export.load_arch(paths["json"])
    assert not loaded.training
    assert torch.equal(loaded(x), expected)
    fresh = export.load_arch(paths["json"], weights=False)
    assert not torch.allclose(fresh(x), expected)

    rebuilt, arch, meta = export.read_arch_json(paths["json"])
    assert isinstance(rebuilt, TinyExportSpace) and arch == ARCH and meta["name"] == "best"


def test_load_arch_reads_retrained_weights_and_description_only_files(space, tmp_path):
    net = trained_like(space.build_standalone(ARCH), seed=3)
    paths = export.export_arch(space, ARCH, tmp_path, "a")           # arch only, no weights
    blob = json.loads(paths["json"].read_text())
    assert blob["weights"] is None and "weights" not in paths
    # as retraining writes its weights
    save_checkpoint(tmp_path / "a.pt", net.state_dict(), kind="standalone_weights")
    x = inputs()
    assert torch.equal(export.load_arch(paths["json"])(x), net(x))
    del blob["genes"]
    (tmp_path / "b.json").write_text(json.dumps(blob))
    assert export.read_arch_json(tmp_path / "b.json")[1] == ARCH


def test_load_arch_errors_are_one_line(space, tmp_path):
    net = space.build_standalone(ARCH)
    good = export.export_arch(space, ARCH, tmp_path, "good", state_dict=net.state_dict())["json"]
    blob = json.loads(good.read_text())

    with pytest.raises(FileNotFoundError) as err:
        export.load_arch(tmp_path / "missing.json")
    assert "missing.json" in single_line(err)

    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(ValueError) as err:
        export.load_arch(tmp_path / "broken.json")
    assert "not a tamnas arch file" in single_line(err)

    (tmp_path / "other.json").write_text(json.dumps({"hello": 1}))
    with pytest.raises(ValueError) as err:
        export.read_arch_json(tmp_path / "other.json")
    assert "not a tamnas arch file" in single_line(err) and "space" in str(err.value)

    (tmp_path / "unknown.json").write_text(json.dumps({**blob, "space": "no-such-space"}))
    with pytest.raises(ValueError) as err:
        export.load_arch(tmp_path / "unknown.json")
    msg = single_line(err)
    assert "no-such-space" in msg and "test-export-tiny" in msg     # names the bad and the allowed

    (tmp_path / "illegal.json").write_text(json.dumps({**blob, "genes": [2, 0, 0, 0]}))
    with pytest.raises(ValueError) as err:
        export.load_arch(tmp_path / "illegal.json")
    assert "layer0.kernel" in single_line(err)

    (tmp_path / "short.json").write_text(json.dumps({**blob, "genes": [1, 1]}))
    with pytest.raises(ValueError) as err:
        export.load_arch(tmp_path / "short.json")
    assert "expected 4" in single_line(err)

    (tmp_path / "noweights.json").write_text(json.dumps({**blob, "weights": "gone.pt"}))
    with pytest.raises(FileNotFoundError) as err:
        export.load_arch(tmp_path / "noweights.json")
    assert "gone.pt" in single_line(err) and "weights=False" in str(err.value)

    other_arch = (0, 1, 0, 0)   # width 4 instead of 8: the saved tensors no longer fit
    (tmp_path / "mismatch.json").write_text(json.dumps({**blob, "genes": list(other_arch)}))
    with pytest.raises(ValueError) as err:
        export.load_arch(tmp_path / "mismatch.json")
    assert "do not fit" in single_line(err)

    save_checkpoint(tmp_path / "sup.pt", {"x": torch.zeros(1)}, kind="supernet")
    (tmp_path / "sup.json").write_text(json.dumps({**blob, "weights": "sup.pt",
                                                   "weights_sha256": None}))
    with pytest.raises(ValueError) as err:
        export.load_arch(tmp_path / "sup.json")
    assert "supernet" in single_line(err)


def test_export_rejects_bad_names_and_illegal_archs(space, tmp_path):
    with pytest.raises(ValueError, match="plain file name"):
        export.export_arch(space, ARCH, tmp_path, "../escape")
    with pytest.raises(ValueError, match="layer0.kernel"):
        export.export_arch(space, (0, 0, 0, 0), tmp_path, "bad")
    assert not list(tmp_path.iterdir())


def test_require_names_the_extra(monkeypatch):
    assert require("json", "none") is json
    monkeypatch.setitem(sys.modules, "onnx", None)       # makes `import onnx` fail
    with pytest.raises(MissingExtraError) as err:
        require("onnx", "onnx", feature="ONNX export")
    assert single_line(err).startswith(
        "ONNX export needs the optional extra: pip install 'tamnas[onnx]'")
    assert isinstance(err.value, ImportError)


def test_onnx_export_without_the_extra_raises_missing_extra(space, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)
    net = space.build_standalone(ARCH)
    with pytest.raises(MissingExtraError, match=r"pip install 'tamnas\[onnx\]'"):
        export.export_arch(space, ARCH, tmp_path, "m", state_dict=net.state_dict(), onnx=True)
    assert not (tmp_path / "m.json").exists()


@pytest.mark.skipif(not HAVE_ORT, reason="the onnx extra (onnx, onnxruntime) is not installed")
def test_onnx_export_runs_in_onnxruntime_like_pytorch(space, tmp_path):
    import onnxruntime as ort

    net = trained_like(space.build_standalone(ARCH))
    paths = export.export_arch(space, ARCH, tmp_path, "m", state_dict=net.state_dict(), onnx=True)
    blob = json.loads(paths["json"].read_text())
    assert blob["onnx"]["file"] == "m.onnx" and blob["onnx"]["input_shape"] == [1, 3, 8, 8]
    assert blob["onnx"]["max_abs_diff"] < 1e-4
    x = inputs(n=3, seed=7)                          # batch 3: the batch axis is dynamic
    session = ort.InferenceSession(str(paths["onnx"]), providers=["CPUExecutionProvider"])
    got = session.run(None, {"input": x.numpy()})[0]
    # onnxruntime's kernels sum in their own order: the net's fan-in and depth set the slack
    expected = net(x).detach()
    assert_rounding_close(torch.from_numpy(got), expected, *network_terms_and_depth(net),
                          scale=max(float(expected.abs().max()), 1.0))

    other = trained_like(space.build_standalone(ARCH), seed=9)   # not the exported weights
    with pytest.raises(ValueError, match="not faithful"):
        export.verify_onnx(paths["onnx"], other, (1, 3, 8, 8))


@pytest.mark.skipif(importlib.util.find_spec("onnx") is None, reason="onnx is not installed")
def test_onnx_export_without_onnxruntime_is_checked_but_not_run(space, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    net = space.build_standalone(ARCH)
    paths = export.export_arch(space, ARCH, tmp_path, "m", state_dict=net.state_dict(), onnx=True)
    assert paths["onnx"].stat().st_size > 0
    assert json.loads(paths["json"].read_text())["onnx"]["max_abs_diff"] is None
    # no temporary file left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "m.onnx", "m.pt"]


@pytest.mark.skipif(HAVE_ORT, reason="the onnx extra is installed; the tests above run instead")
def test_onnx_export_names_the_extra_when_absent(space, tmp_path):
    net = space.build_standalone(ARCH)
    with pytest.raises(MissingExtraError, match=r"tamnas\[onnx\]"):
        export.export_arch(space, ARCH, tmp_path, "m", state_dict=net.state_dict(), onnx=True)


def _real_shufflenet():
    """The quickstart shufflenet space, or None while that space is not registered yet."""
    from tamnas.supernets import _load_builtin

    _load_builtin()
    if "shufflenet" not in SPACES:
        return None
    return build_space(load_config("quickstart"))


def test_real_space_export_matches_the_supernet_path(tmp_path):
    space = _real_shufflenet()
    if space is None:
        pytest.skip("the shufflenet space is not registered yet")
    torch.manual_seed(0)
    supernet = space.build_supernet()
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():           # non-trivial BN statistics, so extract must carry them
        for name, buf in supernet.named_buffers():
            if name.endswith(("running_mean", "running_var")):
                buf.copy_(torch.rand(buf.shape, generator=gen) * 0.5 + 0.75)
    supernet.eval()
    cfg = load_config("quickstart")
    shape = (1, dataset_info(cfg.data.dataset).in_channels, cfg.data.resolution, cfg.data.resolution)
    x = torch.rand((3,) + shape[1:], generator=gen)
    for seed in range(2):
        arch = space.sample(np.random.default_rng(seed))
        with torch.no_grad():
            expected = supernet(x, arch)
        paths = export.export_arch(space, arch, tmp_path, f"a{seed}",
                                   state_dict=supernet.extract(arch), onnx=HAVE_ORT and seed == 0,
                                   example_input_shape=shape)
        net = export.load_arch(paths["json"])
        with torch.no_grad():
            assert_rounding_close(net(x), expected, *network_terms_and_depth(net),
                                  scale=max(float(expected.abs().max()), 1.0))
        assert sum(p.numel() for p in net.parameters()) == space.params(arch)
        if HAVE_ORT and seed == 0:     # the non-local and SE blocks survive ONNX export too
            assert json.loads(paths["json"].read_text())["onnx"]["max_abs_diff"] < 1e-4


def test_exported_weights_load_the_plain_pytorch_way_and_damage_is_refused(space, tmp_path):
    net = space.build_standalone(ARCH)
    paths = export.export_arch(space, ARCH, tmp_path, "plain", state_dict=net.state_dict())
    fresh = export.load_arch(paths["json"], weights=False)
    fresh.load_state_dict(torch.load(paths["weights"]))          # no tamnas wrapper in the way
    for k, v in net.state_dict().items():
        assert torch.equal(fresh.state_dict()[k], v)
    data = bytearray(paths["weights"].read_bytes())
    data[len(data) // 2] ^= 0xFF
    paths["weights"].write_bytes(bytes(data))
    with pytest.raises(ValueError) as err:
        export.load_arch(paths["json"])
    assert "damaged or was replaced" in single_line(err)
