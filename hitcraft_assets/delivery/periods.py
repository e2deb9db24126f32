"""Report periods: a day, a week (Monday to Sunday) or a calendar month of the reporting timezone."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

CADENCES = ("daily", "weekly", "monthly")


@dataclass(frozen=True)
class Period:
    cadence: str
    start: date
    end: date               # inclusive

    @property
    def key(self) -> str:
        """Stable text key of the period (the ledger's and the run keys' part)."""
        return self.start.isoformat() if self.cadence == "daily" else f"{self.start.isoformat()}..{self.end.isoformat()}"

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    @property
    def label(self) -> str:
        if self.cadence == "daily":
            return f"{self.start:%A} {self.start.day} {self.start:%B %Y}"
        if self.cadence == "weekly":
            return f"week of {self.start.day} {self.start:%B %Y}"
        return f"{self.start:%B %Y}"

    def previous(self) -> "Period":
        if self.cadence == "monthly":
            last = self.start - timedelta(days=1)
            return Period("monthly", last.replace(day=1), last)
        return Period(self.cadence, self.start - timedelta(days=self.days), self.start - timedelta(days=1))


def period_ending(cadence: str, day: date) -> Period:
    """The period of `cadence` that contains `day`."""
    if cadence == "daily":
        return Period("daily", day, day)
    if cadence == "weekly":
        start = day - timedelta(days=day.weekday())
        return Period("weekly", start, start + timedelta(days=6))
    if cadence == "monthly":
        start = day.replace(day=1)
        nxt = (start + timedelta(days=32)).replace(day=1)
        return Period("monthly", start, nxt - timedelta(days=1))
    raise ValueError(f"REPORT_CADENCE: unknown cadence {cadence!r}")


def completed_periods(cadence: str, first: date, last: date) -> list[Period]:
    """The periods of `cadence` lying wholly inside first..last, latest last."""
    out, day = [], last
    while day >= first:
        period = period_ending(cadence, day)
        if period.start >= first and period.end <= last:
            out.append(period)
            day = period.start - timedelta(days=1)
        elif period.end > last:
            day = period.start - timedelta(days=1)
        else:
            break
    return sorted(out, key=lambda p: p.start)


def latest_completed(cadence: str, first: date, last: date) -> Period | None:
    """The latest period of `cadence` that a range first..last covers whole (daily: the last day)."""
    periods = completed_periods(cadence, first, last)
    return periods[-1] if periods else None
