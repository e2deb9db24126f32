"""Partitions, defined once.

One daily partitions definition serves every stage. For `raw_events` a key is a UTC day, as Mixpanel's
export API counts them; for the analysis assets a key is a day of the reporting timezone (config
`timezone`, or HITCRAFT_TIMEZONE). Dagster 1.13's TimeWindowPartitionMapping refuses to map between
partitions definitions of different timezones ("Timezones UTC and America/Los_Angeles don't match"), so
the analysis days are keyed on the same UTC-windowed definition and each local day depends on the UTC
days that can overlap it: the day before, the day itself and the day after (any offset up to ±24 h).
"""

from __future__ import annotations

from datetime import date

import dagster as dg

from hitcraft_assets import settings


def daily_partitions() -> dg.DailyPartitionsDefinition:
    return dg.DailyPartitionsDefinition(start_date=settings.start_date().isoformat(), timezone="UTC")


DAILY = daily_partitions()


def first_partition() -> date:
    """The first daily partition's day."""
    return date.fromisoformat(DAILY.start.strftime("%Y-%m-%d"))
RAW_DAILY = DAILY          # keys are UTC days
ANALYSIS_DAILY = DAILY     # keys are local days of the reporting timezone


def raw_days_of_local_day(extra_days_after: int = 0) -> dg.TimeWindowPartitionMapping:
    """The UTC raw partitions a local analysis day reads: D-1 .. D+1 (+ `extra_days_after`, e.g. a funnel's
    conversion window). Days that do not exist yet (the future) are allowed."""
    return dg.TimeWindowPartitionMapping(start_offset=-1, end_offset=1 + extra_days_after,
                                         allow_nonexistent_upstream_partitions=True)
