"""Module-level aliases for names that moved: ``__getattr__ = moved(__name__, ...)`` in the old module returns the
name from its new home with a ``FutureWarning``. The aliases are kept for one release."""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable, Sequence
from typing import Any


def moved(old_module: str, modules: Sequence[str], renamed: dict[str, str] | None = None) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``old_module``: a name in ``renamed`` (``old name -> "module:new name"``) or
    found in one of ``modules`` (searched in order) is returned with a ``FutureWarning`` naming its new path."""
    renamed = dict(renamed or {})

    def __getattr__(name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(f"module {old_module!r} has no attribute {name!r}")
        if name in renamed:
            module_name, new_name = renamed[name].split(":")
            candidates = [(module_name, new_name)]
        else:
            candidates = [(module_name, name) for module_name in modules]
        for module_name, new_name in candidates:
            module = importlib.import_module(module_name)
            if hasattr(module, new_name):
                warnings.warn(
                    f"{old_module}.{name} is deprecated and will be removed in the next release; use "
                    f"{module_name}.{new_name}", FutureWarning, stacklevel=2,
                )  # fmt: skip
                return getattr(module, new_name)
        raise AttributeError(f"module {old_module!r} has no attribute {name!r}")

    return __getattr__
