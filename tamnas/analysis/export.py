"""Export an architecture (arch JSON + standalone weights + optional ONNX); load it in one call.

The arch JSON is self-contained: the space's name and config rebuild the
space anywhere (`SPACES[name].from_config(config)`), the genes pick the
network, and the weights file beside it holds the standalone state dict.
`load_arch` is the documented Python entry point (`tamnas.load_arch`).

The weights file is a plain state dict, written atomically, so PyTorch's own
habit works: `net.load_state_dict(torch.load(path))` on the module
`load_arch(json, weights=False)` returns. The JSON records the file's sha256,
and `load_arch` refuses a damaged or replaced file in one line. `load_arch`
also accepts the tagged `standalone_weights` checkpoints that retraining writes.

Arch JSON and weights are shared like pretrained weights, so opening them
never runs code and never reaches outside the JSON's folder: weights load with
`weights_only=True` only, the JSON's `weights` must name a file beside it, and
sizes in `space_config` are checked before anything is built or allocated.

ONNX uses the TorchScript-based exporter (`torch.onnx.export(...,
dynamo=False)`): with torch 2.x the default dynamo exporter needs the extra
package `onnxscript`, while the TorchScript path needs nothing beyond torch
(tested with torch 2.14; older torch has no `dynamo` flag and uses this path
by default). The exported file is checked with
`onnx.checker` and, when onnxruntime is installed, run on a random input and
compared with the PyTorch output.
"""

from __future__ import annotations

import inspect
import io
import json
import logging
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from tamnas.analysis.arch_files import (
    WEIGHT_KIND,
    check_config_sizes,
    check_net_memory,
    read_weights,
    weights_beside,
)
from tamnas.analysis.export_labels import convention_text
from tamnas.errors import require
from tamnas.files import atomic_write_bytes, atomic_write_json, file_digest, json_safe, sha256_bytes

log = logging.getLogger(__name__)

ONNX_OPSET = 17
ONNX_ATOL = 1e-4
_REQUIRED_KEYS = ("space", "space_config")


def _check_name(name: str) -> str:
    name = str(name)
    if not name or name in (".", "..") or any(c in name for c in "/\\\0"):
        raise ValueError(f"export name {name!r} is not a plain file name; "
                         "use letters, digits, '-' or '_'")
    return name


def _load_weights_into(net: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    try:
        net.load_state_dict(state)
    except RuntimeError as err:
        first = str(err).strip().splitlines()
        detail = " ".join(line.strip() for line in first[:2])
        raise ValueError(f"{source}: the weights do not fit this architecture "
                         f"({detail[:300]})") from None


def _example_shape(space, example_input_shape) -> tuple[int, ...]:
    if example_input_shape is not None:
        shape = tuple(int(s) for s in example_input_shape)
        if len(shape) < 2 or any(s <= 0 for s in shape):
            raise ValueError(f"example_input_shape {list(example_input_shape)} is not a positive "
                             "(batch, channels, height, width) shape")
        return shape
    channels = getattr(space, "in_channels", None)
    resolution = getattr(space, "resolution", None)
    if channels is None or resolution is None:
        raise ValueError(f"ONNX export of space {space.name!r} needs example_input_shape, "
                         "e.g. (1, 3, 32, 32)")
    return (1, int(channels), int(resolution), int(resolution))


def _torch_onnx_export(net: nn.Module, example: torch.Tensor, path: Path) -> None:
    kwargs = {"input_names": ["input"], "output_names": ["logits"], "opset_version": ONNX_OPSET,
              "dynamic_axes": {"input": {0: "batch"}, "logits": {0: "batch"}}}
    if "dynamo" in inspect.signature(torch.onnx.export).parameters:  # torch >= 2.5
        kwargs["dynamo"] = False
    with warnings.catch_warnings():
        # The TorchScript exporter announces its deprecation on every call.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        torch.onnx.export(net, (example,), str(path), **kwargs)


def verify_onnx(path: str | Path, net: nn.Module, example_input_shape, atol: float = ONNX_ATOL,
                seed: int = 0) -> float | None:
    """Run the ONNX file with onnxruntime on a random input and compare with `net`.

    Returns the max abs difference, or None when onnxruntime is not installed
    (the file is then only structurally checked). Raises ValueError when the
    difference reaches `atol`: the export would compute something else.
    """
    try:
        ort = require("onnxruntime", "onnx", feature="ONNX verification")
    except ImportError:
        log.warning("onnxruntime is not installed; %s was checked but not run", path)
        return None
    shape = tuple(int(s) for s in example_input_shape)
    gen = torch.Generator().manual_seed(seed)
    # Batch 2 also checks that the batch axis really is dynamic.
    x = torch.rand((2,) + shape[1:], generator=gen)
    net = net.to("cpu").eval()
    with torch.no_grad():
        expected = net(x).numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    if got.shape != expected.shape:
        raise ValueError(f"ONNX model {path} returns shape {list(got.shape)}, PyTorch "
                         f"{list(expected.shape)}; the export is not faithful")
    diff = float(np.max(np.abs(got - expected)))
    if not diff < atol:
        raise ValueError(f"ONNX model {path} differs from the PyTorch module by {diff:.3g} "
                         f"(max abs, tolerance {atol:g}); the export is not faithful")
    return diff


def export_onnx(net: nn.Module, path: str | Path, example_input_shape,
                metadata: Mapping[str, Any] | None = None, doc: str | None = None
                ) -> float | None:
    """Write `net` (eval, CPU) as ONNX with a dynamic batch axis, verify it, return the max diff.
    `metadata` becomes the model's metadata_props (values as text), `doc` its doc_string."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        diff = _write_onnx(net, tmp, example_input_shape, metadata, doc)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return diff


def _write_onnx(net: nn.Module, tmp: Path, example_input_shape,
                metadata: Mapping[str, Any] | None = None, doc: str | None = None
                ) -> float | None:
    """Export and verify `net` into `tmp`; the caller renames it into place when all is done."""
    onnx = require("onnx", "onnx", feature="ONNX export")
    shape = tuple(int(s) for s in example_input_shape)
    net = net.to("cpu").eval()
    _torch_onnx_export(net, torch.zeros(shape), tmp)
    if metadata or doc:       # what the file is and the input it expects, for any ONNX reader
        model = onnx.load(str(tmp))
        onnx.helper.set_model_props(model, {str(k): v if isinstance(v, str) else
                                            json.dumps(json_safe(v))
                                            for k, v in (metadata or {}).items()})
        model.doc_string = doc or ""
        onnx.save(model, str(tmp))
    onnx.checker.check_model(str(tmp))
    return verify_onnx(tmp, net, shape)


ARCH_FORMAT = "tamnas-arch-v1"


def arch_record(space, arch, name: str, scores: Mapping[str, Any] | None = None) -> dict:
    """The arch JSON's contents: what rebuilds the net anywhere (space, genes) and says what it
    is (description, scores)."""
    from tamnas.version import __version__

    arch = space.validate(arch)
    return {"format": ARCH_FORMAT, "name": _check_name(name), "space": space.name,
            "space_config": json_safe(space.config()), "genes": list(arch),
            "description": json_safe(space.describe(arch)),
            "scores": json_safe(dict(scores)) if scores is not None else None,
            "tamnas_version": __version__}


def write_arch_json(space, arch, path: str | Path, scores: Mapping[str, Any] | None = None,
                    name: str = "lego") -> Path:
    """Write the arch JSON alone (no weights): space, genes, description, scores."""
    path = Path(path)
    atomic_write_json(path, arch_record(space, arch, name, scores))
    return path


def export_arch(space, arch, out_dir: str | Path, name: str,
                state_dict: Mapping[str, torch.Tensor] | None = None,
                scores: Mapping[str, Any] | None = None, onnx: bool = False,
                example_input_shape=None, extra: Mapping[str, Any] | None = None) -> dict[str, Path]:
    """Write `<name>.json`, `<name>.pt` (when `state_dict` is given) and `<name>.onnx` (when asked).

    The JSON is written last, so its presence means the export is complete.
    Without a state dict the ONNX file holds the freshly initialised network.
    `extra` adds keys to the JSON (how the export was made). Returns the written
    paths under the keys "json", "weights", "onnx".
    """
    blob: dict[str, Any] = {**arch_record(space, arch, name, scores), "weights": None,
                            "onnx": None, **json_safe(dict(extra or {}))}
    arch, name = tuple(blob["genes"]), blob["name"]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    net = space.build_standalone(arch)
    paths: dict[str, Path] = {}
    data = None
    if state_dict is not None:
        _load_weights_into(net, state_dict, f"export {name}")
        state = {k: v.detach().to("cpu").clone() for k, v in net.state_dict().items()}
        buf = io.BytesIO()
        torch.save(state, buf)  # a plain state dict: load_state_dict(torch.load(path)) works
        data = buf.getvalue()
    # Everything is made and checked before a file changes: a failed ONNX export leaves the
    # folder as it was (no new .pt beside an old JSON).
    onnx_tmp = out_dir / f".{name}.onnx.tmp"
    try:
        if onnx:
            shape = _example_shape(space, example_input_shape)
            convention = blob.get("input")
            metadata = {"tamnas_name": name, "genes": "-".join(map(str, arch))}
            if isinstance(convention, Mapping):
                metadata.update({f"input_{k}": v for k, v in convention.items()})
            diff = _write_onnx(net, onnx_tmp, shape, metadata,
                               convention_text(convention)
                               if isinstance(convention, Mapping) else None)
            blob["onnx"] = {"file": f"{name}.onnx", "opset": ONNX_OPSET,
                            "input_shape": list(shape), "max_abs_diff": diff}
        if data is not None:
            weights = out_dir / f"{name}.pt"
            atomic_write_bytes(weights, data)
            paths["weights"] = weights
            blob["weights"] = weights.name
            blob["weights_sha256"] = sha256_bytes(data)
        if onnx:
            onnx_tmp.replace(out_dir / f"{name}.onnx")
            paths["onnx"] = out_dir / f"{name}.onnx"
    finally:
        onnx_tmp.unlink(missing_ok=True)
    json_path = out_dir / f"{name}.json"
    atomic_write_json(json_path, blob)
    return {"json": json_path, **paths}


def _arch_blob(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"arch file {path} does not exist")
    try:
        blob = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        where = f" (line {err.lineno})" if isinstance(err, json.JSONDecodeError) else ""
        raise ValueError(f"{path} is not a tamnas arch file: not valid JSON{where}") from None
    if not isinstance(blob, dict):
        raise ValueError(  # noqa: TRY004 (a user-facing one-line error)
            f"{path} is not a tamnas arch file: expected a JSON object with keys "
            f"format, space, space_config, genes")
    if "format" in blob and blob["format"] != ARCH_FORMAT:
        raise ValueError(f"{path} is not a tamnas arch file: format {blob['format']!r}, "
                         f"expected {ARCH_FORMAT!r}")
    missing = [k for k in _REQUIRED_KEYS if k not in blob]
    if "genes" not in blob and "description" not in blob:
        missing.append("genes")
    if missing:
        raise ValueError(f"{path} is not a tamnas arch file: missing key(s) {', '.join(missing)}")
    return blob


def _rebuild_space(path: Path, blob: dict):
    from tamnas.supernets import SPACES, _load_builtin

    _load_builtin()
    space_name = blob["space"]
    if space_name not in SPACES:
        raise ValueError(f"{path}: unknown space {space_name!r}; choose one of "
                         f"{', '.join(sorted(SPACES))}")
    cls = SPACES[space_name]
    config = blob["space_config"]
    if not isinstance(config, dict):
        raise ValueError(f"{path}: space_config must be a JSON object, got {type(config).__name__}")  # noqa: TRY004 (a user-facing one-line error)
    check_config_sizes(path, config)
    try:
        return cls.from_config(config)
    except (ValueError, TypeError, KeyError, NotImplementedError) as err:
        msg = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"{path}: space_config does not rebuild space {space_name!r}: "
                         f"{msg}") from None


def read_arch_json(path: str | Path) -> tuple[Any, tuple[int, ...], dict]:
    """(space, arch, meta) of an arch JSON.

    One-line ValueError for a foreign file, an unknown space or illegal genes.

    `meta` is the whole JSON object (name, scores, weights, ...). Genes win
    over the description; a file with a description only is parsed by the space.
    """
    path = Path(path)
    blob = _arch_blob(path)
    space = _rebuild_space(path, blob)
    try:
        if "genes" in blob:
            genes = blob["genes"]
            if not isinstance(genes, list) or not all(isinstance(g, int) and not isinstance(g, bool)
                                                      for g in genes):
                raise ValueError(f"genes must be a list of integers, got {str(genes)[:80]}")
            arch = space.validate(genes)
        else:
            arch = space.parse(blob["description"])
    except (ValueError, KeyError, TypeError) as err:
        msg = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"{path}: illegal architecture: {msg}") from None
    check_net_memory(path, space, arch)
    return space, arch, dict(blob)


def load_arch(path: str | Path, weights: bool = True,
              device: str | torch.device = "cpu") -> nn.Module:
    """The standalone network an arch JSON describes, with its weights, in eval mode, on `device`.

    Weights come from the file the JSON names (or `<stem>.pt` beside it).
    Pass weights=False for a freshly initialised network, e.g. to train it.
    """
    path = Path(path)
    space, arch, meta = read_arch_json(path)
    net = space.build_standalone(arch)
    if weights:
        weights_path = weights_beside(path, meta.get("weights"))
        if not weights_path.is_file():
            raise FileNotFoundError(f"{path}: weights file {weights_path} not found; export with "
                                    "weights or call load_arch(path, weights=False)")
        digest = meta.get("weights_sha256")
        if digest is not None and file_digest(weights_path) != digest:
            raise ValueError(f"{weights_path} is damaged or was replaced: its checksum does not "
                             f"match {path}; export it again (`tamnas export`)")
        _load_weights_into(net, read_weights(weights_path), str(weights_path))
    convention = meta.get("input")
    if isinstance(convention, Mapping):  # the instance says what it expects: help(net), net.__doc__
        net.input_convention = dict(convention)
        net.__doc__ = (f"tamnas export {meta.get('name', path.stem)} ({space.name}, genes "
                       f"{'-'.join(map(str, arch))}).\n\n{convention_text(convention)}")
    return net.to(device).eval()


__all__ = [
    "ARCH_FORMAT",
    "WEIGHT_KIND",
    "arch_record",
    "check_net_memory",
    "export_arch",
    "export_onnx",
    "load_arch",
    "read_arch_json",
    "verify_onnx",
    "weights_beside",
    "write_arch_json",
]
