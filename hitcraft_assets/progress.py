"""Progress lines for the `hitcraft` command: assets report each finished unit of work here.

Silent unless a listener is installed (the CLI installs one); Dagster's own logs are unaffected.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Listener = Callable[[str, int, int, str, dict[str, Any]], None]
_listeners: list[Listener] = []


def add_listener(listener: Listener) -> None:
    _listeners.append(listener)


def remove_listener(listener: Listener) -> None:
    if listener in _listeners:
        _listeners.remove(listener)


def report_progress(asset: str, done: int, total: int, unit: str, metadata: dict[str, Any]) -> None:
    for listener in list(_listeners):
        listener(asset, done, total, unit, metadata)
