"""How numbers read in a digest: the same conventions as the insights' texts (`insights/rules.py`), so that a
KPI tile and an insight title write one value the same way. Only numbers a Digest holds are formatted here;
nothing is derived beyond the sign and the magnitude of a given change.

- :func:`fmt_number`: thousands separators; no decimals from 100, one from 10, two below (``1,234``,
  ``45.2``, ``2.35``); integers stay whole (``12,000``).
- :func:`fmt_percent`: a share (0..1) as a percentage, one decimal below 10% (``42%``, ``4.2%``, ``0.35%``).
- :func:`fmt_change`: a relative change with its sign (``+12%``, ``-3.4%``, ``+0%`` for exactly none).
- :func:`change_words`: the arrow and the word for a change (``("▲", "up")``).
"""

from __future__ import annotations

import math


def _finite(x: float | None) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def fmt_number(x: float | None) -> str:
    x = _finite(x)
    if x is None:
        return "n/a"
    a = abs(x)
    if x.is_integer() and a < 1e15:
        return f"{int(x):,}"
    if a >= 100:
        return f"{x:,.0f}"
    if a >= 10:
        return f"{x:.1f}"
    if a >= 0.01:
        return f"{x:.2f}"
    return f"{x:.2g}"


def fmt_percent(x: float | None, *, signed: bool = False) -> str:
    x = _finite(x)
    if x is None:
        return "n/a"
    p = abs(x) * 100
    if p >= 10:
        body = f"{p:.0f}%"
    elif p >= 1:
        body = f"{p:.1f}%"
    elif p == 0:
        body = "0%"
    else:
        body = f"{p:.2g}%"
    if not signed:
        return ("-" if x < 0 else "") + body
    return ("+" if x >= 0 else "-") + body


def fmt_change(x: float | None) -> str:
    """A relative change with its sign: +46%, -12%, +4.2%."""
    return fmt_percent(x, signed=True)


def fmt_value(x: float | None, *, percent: bool) -> str:
    """A KPI's value: a share as a percentage, anything else as a number."""
    return fmt_percent(x) if percent else fmt_number(x)


def change_words(x: float | None) -> tuple[str, str]:
    """The arrow and the word for a relative change; ("", "") when there is none to compare with."""
    x = _finite(x)
    if x is None:
        return "", ""
    if x > 0:
        return "\u25b2", "up"        # ▲
    if x < 0:
        return "\u25bc", "down"      # ▼
    return "\u25ac", "flat"          # ▬


def plural(n: int, one: str, many: str | None = None) -> str:
    """``n`` and the word, in the plural unless n is 1: 2 risks, 2 successes, 2 anomalies (``many``: an
    irregular plural)."""
    if n == 1:
        return f"{n:,} {one}"
    if many is None:
        if one.endswith(("s", "x", "z", "ch", "sh")):
            many = one + "es"
        elif one.endswith("y") and one[-2:-1] not in ("a", "e", "i", "o", "u"):
            many = one[:-1] + "ies"
        else:
            many = one + "s"
    return f"{n:,} {many}"
