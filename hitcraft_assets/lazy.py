"""Heavy libraries imported where they are first used, not when a module that may use them is imported.

``sps = lazy("scipy.stats")`` at the top of a module reads like ``from scipy import stats as sps``, but
scipy.stats (about 1 s on 2 cores), openai (about 0.9 s) and polars load on the first attribute
access: a Dagster step, a CLI command or the API server pays only for what it runs, and loading the
Dagster definitions (every step's process does) pays for none of them. Thread-safe: the first access
imports under a lock (``importlib.import_module`` also holds the interpreter's import lock per module).
"""

from __future__ import annotations

import importlib
import threading
from types import ModuleType
from typing import Any


class LazyModule:
    """A stand-in for the module ``name`` that imports it on first attribute access."""

    __slots__ = ("_name", "_module", "_lock")

    def __init__(self, name: str) -> None:
        object.__setattr__(self, "_name", name)
        object.__setattr__(self, "_module", None)
        object.__setattr__(self, "_lock", threading.Lock())

    def load(self) -> ModuleType:
        module = self._module
        if module is None:
            with self._lock:
                if self._module is None:
                    object.__setattr__(self, "_module", importlib.import_module(self._name))
                module = self._module
        return module

    def __getattr__(self, attr: str) -> Any:
        return getattr(self.load(), attr)

    def __repr__(self) -> str:
        state = "loaded" if self._module is not None else "not loaded yet"
        return f"<lazy module {self._name!r} ({state})>"


def lazy(name: str) -> Any:
    """A :class:`LazyModule` for ``name`` (typed ``Any``, so it reads as the module it stands for)."""
    return LazyModule(name)
