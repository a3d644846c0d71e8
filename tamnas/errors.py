"""Errors shared across tamnas, and the import guard for optional extras."""

from __future__ import annotations

import importlib
from types import ModuleType


class MissingExtraError(ImportError):
    """An optional dependency is absent; the message names the `pip install` that fixes it.

    It subclasses ImportError so that code catching import failures still
    works; the CLI turns it into one line on stderr and exit code 2.
    """


def require(module_name: str, extra: str, feature: str | None = None) -> ModuleType:
    """Import an optional module, or raise MissingExtraError naming the extra that provides it.

    Optional features (ONNX export, AutoAttack) import their packages through
    this guard at call time, so `import tamnas` never needs them and a user
    who asks for the feature learns the exact install command.
    """
    try:
        return importlib.import_module(module_name)
    except ImportError as err:
        what = feature or module_name
        root = module_name.split(".")[0]
        missing = getattr(err, "name", None)
        if isinstance(err, ModuleNotFoundError) and missing in (None, module_name, root):
            reason = f"module {module_name!r} is not installed"
        else:  # present but broken: say why, still in one line
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            reason = f"importing {module_name!r} failed: {first}"
        raise MissingExtraError(f"{what} needs the optional extra: pip install 'tamnas[{extra}]' "
                                f"({reason})") from None


__all__ = ["MissingExtraError", "require"]
