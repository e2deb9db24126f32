"""Numbers as a person writes them, and the tolerance within which a written number still matches its
value: shared by detection (root-cause phrases) and insights (titles, summaries and the check that every
number in a text is in its evidence), so both write a number the same way."""

from __future__ import annotations

ROUNDING_TOLERANCE = 0.01   # a rounded number may differ from the evidence's by this relative amount


def canon(number: str, percent: bool = False) -> str:
    text = number.replace(",", "").lower().lstrip("+-")
    if "e" in text:
        mantissa, exponent = text.split("e", 1)
        text = f"{mantissa}e{int(exponent)}"
    return text + ("%" if percent else "")


def close(rounded: str, value: float, tolerance: float = ROUNDING_TOLERANCE) -> bool:
    try:
        r = float(rounded)
    except ValueError:
        return False
    if value == 0:
        return r == 0
    return abs(r - value) <= tolerance * abs(value)


def first_close(candidates: list[str], x: float, tolerance: float = ROUNDING_TOLERANCE) -> str:
    """The first (shortest) rendering within `tolerance` of x, else the last (most precise) one."""
    for c in candidates:
        if close(c.replace(",", "").lstrip("-"), abs(x), tolerance):
            return c
    return candidates[-1]


def fmt_number(x: float | int | None) -> str:
    """A number as a person writes it, within 1% of the value: integers with separators, rates with two
    decimals (three when two would be more than 1% off), small numbers with 2-4 significant digits."""
    if x is None:
        return "n/a"
    x = float(x)
    a = abs(x)
    if x.is_integer() and a < 1e15:
        return f"{int(x):,}"
    if a >= 100:
        return f"{x:,.0f}"
    if a >= 10:
        return first_close([f"{x:.1f}", f"{x:.2f}"], x)
    if a >= 0.1:
        return first_close([f"{x:.2f}", f"{x:.3f}", f"{x:.4f}"], x)
    return first_close([canon_signed(f"{x:.{s}g}") for s in (2, 3, 4)], x)


def canon_signed(text: str) -> str:
    return ("-" if text.startswith("-") else "") + canon(text)
