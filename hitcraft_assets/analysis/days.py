"""Reporting days: a local day of the configured timezone as a half-open UTC interval."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo


@dataclass(frozen=True)
class LocalDay:
    """Day `day` of timezone `tz`: events with start <= time < end (both UTC), stored on the UTC
    export days first_utc_day..last_utc_day (for partition pruning on raw.events.event_date)."""

    day: date
    tz: str
    start: datetime
    end: datetime

    @property
    def first_utc_day(self) -> date:
        return self.start.date()

    @property
    def last_utc_day(self) -> date:
        return (self.end - timedelta(microseconds=1)).date()

    @property
    def hours(self) -> float:
        return (self.end - self.start).total_seconds() / 3600


def local_day(day: date, tz: str) -> LocalDay:
    zone = ZoneInfo(tz)
    start = datetime.combine(day, time(0), tzinfo=zone).astimezone(timezone.utc)
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone).astimezone(timezone.utc)
    return LocalDay(day, tz, start, end)


def sql_params(ld: LocalDay) -> dict:
    """The parameters every analysis statement of a day takes."""
    return {"day": ld.day.isoformat(), "tz": ld.tz, "start_ts": ld.start, "end_ts": ld.end,
            "first_utc_day": ld.first_utc_day.isoformat(), "last_utc_day": ld.last_utc_day.isoformat()}
