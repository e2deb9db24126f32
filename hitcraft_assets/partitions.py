"""Partitions, defined once. Raw partitions are UTC days, as Mixpanel's export API counts them."""

from __future__ import annotations

import dagster as dg

from hitcraft_assets import settings


def raw_daily_partitions() -> dg.DailyPartitionsDefinition:
    return dg.DailyPartitionsDefinition(start_date=settings.start_date().isoformat(), timezone="UTC")


RAW_DAILY = raw_daily_partitions()
