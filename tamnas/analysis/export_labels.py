"""What an export says about itself: each score with where it comes from (inherited, retrained,
evaluated), its split, image count and standard error, and the input the net expects."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tamnas.metrics import binomial_se

SOURCES = ("inherited", "retrained", "evaluated")
NORMALISATION = ("inside the network: its first module subtracts space_config.mean and divides "
                 "by space_config.std per channel; do NOT normalise the inputs yourself")


def input_convention(channels: int, resolution: int, resize: str | None = None) -> dict[str, Any]:
    """The input the exported net was trained on, for the JSON, the ONNX metadata and the
    module's docstring alike."""
    return {
        "color": "grayscale" if channels == 1 else "RGB",
        "channels": int(channels),
        "shape": f"N x {channels} x {resolution} x {resolution} (N x C x H x W), float32",
        "height": int(resolution), "width": int(resolution),
        "range": [0.0, 1.0],
        "pixels": "divide 8-bit pixel values by 255",
        "resize": resize or f"to {resolution} x {resolution}",
        "normalisation": NORMALISATION,
        "output": "logits, one per class in the order of the run's class names (data.json)",
    }


def convention_text(conv: Mapping[str, Any]) -> str:
    """The convention as a few plain lines (module docstring, ONNX doc_string)."""
    return (f"Input: {conv['color']} images in [0, 1] ({conv['pixels']}), {conv['shape']}.\n"
            f"Resize: {conv['resize']}.\n"
            f"Normalisation: {conv['normalisation']}.\n"
            f"Output: {conv['output']}.")


def _entry(source: str, split: str, images: int | None, errors: Mapping[str, float | None],
           **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"source": source, "split": split, "images": images}
    for name, value in errors.items():
        if value is None:
            continue
        # a count over `images` images: 1 - accuracy is such a count, up to float rounding
        out[name] = round(float(value) * images) / images if images else float(value)
        out[f"{name}_se"] = binomial_se(float(value), images) if images else None
    out.update(extra)
    return out


def inherited_entry(scores: Mapping[str, Any]) -> dict[str, Any]:
    """The evaluator's scores of an arch on the supernet's weights (validation split)."""
    errors = {k: scores.get(k) for k in ("clean_err", "adv_err") if k in scores}
    extra = {k: scores[k] for k in ("params", "flops", "ood_aupr_err") if k in scores}
    return _entry("inherited", "validation", scores.get("n_eval"), errors,
                  weights="the supernet's, BatchNorm recalibrated", **extra)


def retrained_entry(row: Mapping[str, Any]) -> dict[str, Any]:
    """The scores `tamnas retrain` measured on its net (retrain/NAME/scores.json)."""
    return _entry("retrained", "test", row.get("n_test"),
                  {"clean_err": row.get("retrained_clean_err"),
                   "adv_err": row.get("retrained_adv_err")},
                  weights="retrained standalone", attack="the search attack (attack.*)")


def evaluated_entry(grid, attack_eps: float, attack_steps: int, path: str) -> dict[str, Any]:
    """`tamnas evaluate`'s grid (accuracies indexed by eps): clean error and the PGD error at
    the search attack's eps and steps when the grid holds that cell."""
    n = grid.attrs.get("n")
    errors: dict[str, float | None] = {"clean_err": 1.0 - float(grid["clean"].iloc[0])}
    col = f"pgd-{attack_steps}"
    near = [e for e in grid.index if abs(float(e) - attack_eps) < 1e-9]
    if col in grid.columns and near:
        errors["adv_err"] = 1.0 - float(grid.loc[near[0], col])
    return _entry("evaluated", "test", int(n) if n is not None else None, errors,
                  weights=grid.attrs.get("weights"), grid=path)


def inherited_scores(meta: Mapping[str, Any]) -> dict[str, Any]:
    """The inherited scores of an arch JSON, labelled (`scores.inherited`) or flat (older
    exports and `write_arch_json`)."""
    scores = meta.get("scores")
    if not isinstance(scores, Mapping):
        return {}
    inner = scores.get("inherited")
    return dict(inner) if isinstance(inner, Mapping) else dict(scores)


__all__ = ["NORMALISATION", "SOURCES", "convention_text", "evaluated_entry", "inherited_entry",
           "inherited_scores", "input_convention", "retrained_entry"]
