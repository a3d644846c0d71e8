"""Search state as tensors, numbers and strings: pymoo populations and numpy Generators taken
apart for a checkpoint and rebuilt on resume, so that a state file never holds a pickled object
(opening one could run code; runs are shared like pretrained weights)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from pymoo.core.individual import Individual
from pymoo.core.population import Population

ARRAY_FIELDS = ("_X", "_F", "_G", "_H", "_CV")  # what an evaluated individual carries


def malformed(where: str, what: str) -> ValueError:
    return ValueError(f"{where} is malformed ({what}); delete it or pass --no-resume")


def rng_state(gen: np.random.Generator) -> str:
    """A numpy Generator's bit-generator state as JSON text (its 128-bit integers exact)."""
    return json.dumps(gen.bit_generator.state)


def set_rng_state(gen: np.random.Generator, saved: Any, where: str) -> None:
    """Put a state from `rng_state` (or the dict itself) back into `gen`; ValueError if foreign."""
    try:
        state = json.loads(saved) if isinstance(saved, str) else saved
        if not isinstance(state, dict) or state.get("bit_generator") != \
                type(gen.bit_generator).__name__:
            raise TypeError
        gen.bit_generator.state = state
    except (TypeError, ValueError, KeyError, json.JSONDecodeError):
        raise malformed(where, "a random generator state") from None


def population_state(pop: Population) -> dict[str, Any]:
    """Genes, objectives and the survival's attributes of every individual, as tensors."""
    n = len(pop)
    out: dict[str, Any] = {"size": n, "fields": {}, "data": {}, "evaluated": []}
    for field in ARRAY_FIELDS:
        values = [ind.__dict__.get(field) for ind in pop]
        if n and all(isinstance(v, np.ndarray) for v in values):
            out["fields"][field] = torch.from_numpy(np.stack(values).copy())
    keys = sorted({k for ind in pop for k in ind.data})
    for key in keys:
        values = [ind.data.get(key) for ind in pop]
        if not all(isinstance(v, (int, float, np.integer, np.floating)) for v in values):
            raise TypeError(f"population attribute {key!r} is not numeric")
        ints = all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values)
        dtype = torch.int64 if ints else torch.float64
        out["data"][str(key)] = torch.tensor([float(v) if not ints else int(v) for v in values],
                                             dtype=dtype)
    out["evaluated"] = [sorted(ind.evaluated) for ind in pop]
    return out


def population_from_state(state: Any, n_var: int, n_obj: int, where: str) -> Population:
    """The Population `population_state` took apart; ValueError naming `where` if malformed."""
    if not isinstance(state, Mapping) or not isinstance(state.get("fields"), Mapping) \
            or not isinstance(state.get("data"), Mapping) \
            or not isinstance(state.get("evaluated"), list):
        raise malformed(where, "no population")
    n = state.get("size")
    if not isinstance(n, int) or n < 0 or len(state["evaluated"]) != n:
        raise malformed(where, "population size")
    shapes = {"_X": (n, n_var), "_F": (n, n_obj)}
    fields = {}
    for field, tensor in state["fields"].items():
        if field not in ARRAY_FIELDS or not isinstance(tensor, torch.Tensor) \
                or tensor.dim() == 0 or tensor.shape[0] != n:
            raise malformed(where, f"population field {field!r}")
        if field in shapes and tuple(tensor.shape) != shapes[field]:
            raise malformed(where, f"population {field[1:]} of shape {list(tensor.shape)}, "
                                   f"expected {list(shapes[field])}")
        fields[field] = tensor.numpy()
    if "_X" not in fields or "_F" not in fields:
        raise malformed(where, "population without genes or objectives")
    data = {}
    for key, tensor in state["data"].items():
        if not isinstance(tensor, torch.Tensor) or tuple(tensor.shape) != (n,):
            raise malformed(where, f"population attribute {key!r}")
        data[key] = tensor
    individuals = []
    for i in range(n):
        ind = Individual()
        for field, values in fields.items():
            ind.__dict__[field] = values[i].copy()
        ind.evaluated = {str(e) for e in state["evaluated"][i]}
        ind.data = {k: (int(t[i]) if t.dtype == torch.int64 else np.float64(t[i]))
                    for k, t in data.items()}
        individuals.append(ind)
    return Population.create(*individuals)


__all__ = ["malformed", "population_from_state", "population_state", "rng_state",
           "set_rng_state"]
