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


def filing_timezone(config) -> str:
    """The timezone whose days the raw partitions (raw.events.event_date) are: UTC, or for a legacy
    Mixpanel project its project timezone (its export API slices by the project's days)."""
    return config.mixpanel_project_timezone or "UTC"


def filed_days(start: datetime, end: datetime, config, margin: timedelta = timedelta(0)) -> tuple[date, date]:
    """The raw partitions that can hold events with start <= time < end: the days of the filing timezone
    that the interval, widened by `margin` (the load's time tolerance), touches."""
    zone = ZoneInfo(filing_timezone(config))
    return ((start - margin).astimezone(zone).date(),
            (end - timedelta(microseconds=1) + margin).astimezone(zone).date())


def scan_days(day: date, config) -> tuple[date, date]:
    """The raw partitions a local day's readers scan: the filed days of its interval, widened by the load's
    time tolerance (a file may hold events up to that far outside its day)."""
    ld = local_day(day, config.timezone)
    return filed_days(ld.start, ld.end, config, timedelta(minutes=max(config.time_tolerance_minutes, 0)))


def held_raw_days(conn) -> dict[date, str]:
    """Raw days the quality gate holds back from analysis, with the reason (raw.load_log.gate = 'held')."""
    tables = {r[0] for r in conn.execute("select schema_name || '.' || table_name from duckdb_tables()").fetchall()}
    if "raw.load_log" not in tables:
        return {}
    return dict(conn.execute("select event_date, gate_reason from raw.load_log where gate = 'held'").fetchall())


def held_local_days(conn, days, config) -> dict[date, str]:
    """The local days among `days` that overlap a held raw day (their events are incomplete or unreliable),
    each with a sentence saying why. The load's time tolerance does not widen the overlap: a neighbouring
    day only loses the few events of the held day that lie within the tolerance of its midnight."""
    held = held_raw_days(conn)
    if not held:
        return {}
    out = {}
    for day in days:
        ld = local_day(day, config.timezone)
        first, last = filed_days(ld.start, ld.end, config)
        hit = [d for d in sorted(held) if first <= d <= last]
        if hit:
            out[day] = "; ".join(f"raw day {d} is held: {held[d]}" for d in hit)
    return out
