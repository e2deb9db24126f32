"""Partitions, defined once. Raw partitions are UTC days, as Mixpanel's export API counts them; analysis
partitions are days of the reporting timezone (config `timezone`, or HITCRAFT_TIMEZONE)."""

from __future__ import annotations

import dagster as dg

from hitcraft_assets import settings
from hitcraft_assets.config import load_config


def raw_daily_partitions() -> dg.DailyPartitionsDefinition:
    return dg.DailyPartitionsDefinition(start_date=settings.start_date().isoformat(), timezone="UTC")


def analysis_daily_partitions() -> dg.DailyPartitionsDefinition:
    return dg.DailyPartitionsDefinition(start_date=settings.start_date().isoformat(),
                                        timezone=load_config().timezone)


RAW_DAILY = raw_daily_partitions()
ANALYSIS_DAILY = analysis_daily_partitions()
