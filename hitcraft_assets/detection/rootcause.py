"""Root cause: which segments explain a change of a total ("driven by iOS: 83% of the drop").

ThirdEye-style contribution to the overall change (analytics-methods.md §2d, StarTree's
CONTRIBUTION_TO_OVERALL_CHANGE cost and LinkedIn's cube algorithm):

- ``contribution = (segment_current - segment_baseline) / (total_current - total_baseline)``: the share
  of the total's change that the segment accounts for. Segments moving with the total have positive
  contributions, segments moving against it negative ones. Within one dimension whose segments
  partition the total they sum to 1; they need not (a user on two platforms counts in both, an
  unknown platform in none), so each number stands on its own.
- ``share_before = segment_baseline / total_baseline``, ``share_after`` likewise: a segment can
  explain most of a drop simply because it is most of the total; the share change tells the two
  apart (iOS 50% of users and 83% of the drop: iOS fell disproportionately).
- ThirdEye skips nodes whose |contribution| is below 3% (``BalancedCostFunction`` ``threshold``);
  :func:`rank_contributors` does the same by default (``min_contribution=0.03``).
- A total that did not change (``|total change|`` below ``1e-12`` of the totals) has no meaningful
  shares of its change: ``contribution`` is None and segments are ranked by the size of their own
  change (segments that cancel out: one up, one down, same total).

Public: :class:`Contribution`, :func:`segment_contributions`, :func:`rank_contributors`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from hitcraft_assets.numbers import fmt_number

DEFAULT_MIN_CONTRIBUTION = 0.03
_ZERO_CHANGE_RTOL = 1e-12


@dataclass(frozen=True)
class Contribution:
    """One (dimension, segment) pair's part in the change of a total (see the module docstring).

    ``pct_change`` is the segment's own relative change (None from a zero baseline: a new segment);
    ``contribution``, ``share_*`` are None where their denominator is zero."""

    dimension: str
    segment: str
    baseline: float
    current: float
    change: float
    pct_change: float | None
    contribution: float | None
    share_before: float | None
    share_after: float | None
    share_change: float | None
    total_change: float

    def describe(self) -> str:
        """A phrase for an insight: ``platform = iOS: 83% of the drop``. A segment that moved more than the
        total (the others moved the other way) gets its own change and the total's, not "118% of the
        rise", which reads like an error; one that moved against the total says so."""
        name = f"{self.dimension} = {self.segment}" if self.dimension else self.segment
        if self.contribution is None:
            return f"{name}: {self.change:+,.4g} while the total did not change"
        word = "drop" if self.total_change < 0 else "rise"
        if self.contribution >= 1.005:
            return (f"{name}: {_amount(self.change)}, more than the whole {word} of "
                    f"{_amount(self.total_change)} (other segments moved the other way)")
        if self.contribution < 0:
            return f"{name}: {_amount(self.change)}, against the {word}"
        return f"{name}: {self.contribution:.0%} of the {word}"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _amount(x: float) -> str:
    """A signed change written as every number of an insight is (:func:`fmt_number`, within 1% of it)."""
    text = fmt_number(x)
    return text if x <= 0 or text == "0" else "+" + text


def _ratio(num: float, den: float) -> float | None:
    return num / den if den else None


def _total_change(total_baseline: float, total_current: float) -> float:
    change = float(total_current) - float(total_baseline)
    scale = max(abs(float(total_baseline)), abs(float(total_current)), 1.0)
    return 0.0 if abs(change) <= _ZERO_CHANGE_RTOL * scale else change


def segment_contributions(total_baseline: float, total_current: float,
                          segments: Mapping[str, tuple[float, float]],
                          dimension: str = "") -> list[Contribution]:
    """Contribution of each segment of one dimension, in the input order.

    ``segments`` maps a segment name to ``(baseline, current)`` of the same metric over the same two
    periods as the total (e.g. last week vs the week before, or expected vs observed on an anomalous
    day).
    """
    total_change = _total_change(total_baseline, total_current)
    out = []
    for segment, (base, cur) in segments.items():
        base, cur = float(base), float(cur)
        change = cur - base
        share_before = _ratio(base, float(total_baseline))
        share_after = _ratio(cur, float(total_current))
        out.append(Contribution(
            dimension=dimension,
            segment=str(segment),
            baseline=base,
            current=cur,
            change=change,
            pct_change=_ratio(change, abs(base)),
            contribution=_ratio(change, total_change),
            share_before=share_before,
            share_after=share_after,
            share_change=(share_after - share_before
                          if share_before is not None and share_after is not None else None),
            total_change=total_change,
        ))
    return out


def rank_contributors(total_baseline: float, total_current: float,
                      dimensions: Mapping[str, Mapping[str, tuple[float, float]]], *,
                      min_contribution: float = DEFAULT_MIN_CONTRIBUTION,
                      top_n: int | None = None) -> list[Contribution]:
    """The (dimension, segment) pairs that explain the change of the total, best first.

    ``dimensions`` maps a dimension name to its ``segments`` (see :func:`segment_contributions`).
    When the total changed: pairs with ``|contribution| >= min_contribution``, sorted by contribution,
    largest first (the segments that moved with the total lead; those that moved against it come
    last, most negative at the end). When it did not: pairs whose own change is non-zero, largest
    ``|change|`` first. Ties keep the input order. ``top_n`` keeps the first n.
    """
    pairs = [c for dim, segs in dimensions.items()
             for c in segment_contributions(total_baseline, total_current, segs, dim)]
    if _total_change(total_baseline, total_current) == 0.0:
        ranked = sorted((c for c in pairs if c.change != 0), key=lambda c: -abs(c.change))
    else:
        ranked = sorted((c for c in pairs if abs(c.contribution) >= min_contribution),
                        key=lambda c: -c.contribution)
    return ranked[:top_n] if top_n is not None else ranked
