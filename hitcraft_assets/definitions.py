"""The code location: every asset, check, job, schedule and resource of the engine, built once here."""

from __future__ import annotations

import os

import dagster as dg

from hitcraft_assets.warehouse import WarehouseResource

from hitcraft_assets import settings
from hitcraft_assets.config import load_config
from hitcraft_assets.analysis.assets import analysis_assets
from hitcraft_assets.analysis.days import filing_timezone
from hitcraft_assets.delivery.assets import delivery_assets, email_reports
from hitcraft_assets.delivery.email.smtp import SMTPResource
from hitcraft_assets.delivery.schedules import (
    build_period_schedule,
    build_reports_sensor,
    daily_profile_names,
    operator_alert_on_run_failure,
)
from hitcraft_assets.detection.assets import detection_assets
from hitcraft_assets.insights.assets import insight_assets
from hitcraft_assets.insights.llm import LLMResource
from hitcraft_assets.ingestion.assets import raw_downloads, raw_events, user_profiles
from hitcraft_assets.ingestion.mixpanel import MixpanelResource
from hitcraft_assets.ingestion.sources import ExportSourceResource
from hitcraft_assets.schedules import build_analysis_sensor, build_daily_schedule


def _env(name: str, default=None):
    """dg.EnvVar when the variable is set (resolved at run time, shown by name in the UI), else the default."""
    return dg.EnvVar(name) if os.environ.get(name) else default


def build_resources() -> dict:
    mixpanel = MixpanelResource(
        project_id=_env("MIXPANEL_PROJECT_ID"),
        service_account_username=_env("MIXPANEL_SERVICE_ACCOUNT_USERNAME"),
        service_account_secret=_env("MIXPANEL_SERVICE_ACCOUNT_SECRET"),
        api_secret=_env("MIXPANEL_API_SECRET"),
        region=_env("MIXPANEL_REGION", "us"),
        export_url=_env("MIXPANEL_EXPORT_URL"),
        api_url=_env("MIXPANEL_API_URL"),
        rate_limit_dir=str(settings.data_dir() / ".mixpanel_ratelimit"),
    )
    llm = LLMResource(
        api_key=_env("OPENAI_API_KEY"),
        base_url=_env("OPENAI_BASE_URL"),
        model=_env("HITCRAFT_LLM_MODEL", "gpt-4o-mini"),
    )
    smtp = SMTPResource(
        host=_env("HITCRAFT_SMTP_HOST"),
        port=dg.EnvVar.int("HITCRAFT_SMTP_PORT") if os.environ.get("HITCRAFT_SMTP_PORT") else None,
        user=_env("HITCRAFT_SMTP_USER"),
        password=_env("HITCRAFT_SMTP_PASSWORD"),
        security=_env("HITCRAFT_SMTP_SECURITY", "starttls"),
        sender=_env("HITCRAFT_EMAIL_FROM", "HitCraft Analytics <reports@localhost>"),
        outbox_dir=str(settings.outbox_dir()),
    )
    return {
        "llm": llm,
        "smtp": smtp,
        "duckdb": WarehouseResource(database=str(settings.duckdb_path())),
        "export_source": ExportSourceResource(
            source=settings.source_mode(),
            export_dir=str(settings.export_dir()),
            staging_dir=str(settings.staging_dir()),
            mixpanel=mixpanel,
        ),
    }


ingestion_assets = [raw_downloads, raw_events, user_profiles]
all_assets = ingestion_assets + analysis_assets + detection_assets + insight_assets + delivery_assets

daily_analysis_job = dg.define_asset_job(
    "daily_analysis_job",
    selection=dg.AssetSelection.assets(*analysis_assets, *detection_assets, *insight_assets),
    description="Identity, sessions, metrics, funnels, retention, segments, anomalies, trends and insights for "
                "a range of local days.",
)
daily_ingest_job = dg.define_asset_job(
    "daily_ingest_job",
    selection=dg.AssetSelection.assets(raw_downloads, raw_events),
    description="Download (from Mixpanel) and load raw events for a range of UTC days (one run for the whole "
                "range).",
)
all_assets_job = dg.define_asset_job(
    "all_assets_job",
    selection=dg.AssetSelection.all(),
    description="Every asset of the engine for a range of days, in one run (what `hitcraft run` launches).",
)
email_reports_job = dg.define_asset_job(
    "email_reports_job",
    selection=dg.AssetSelection.assets(email_reports),
    description="Render and send the email digests of one period (the sensor and the weekly and monthly "
                "schedules launch it; `hitcraft send-reports` too).",
)
profiles_job = dg.define_asset_job(
    "profiles_job",
    selection=dg.AssetSelection.assets(user_profiles),
    description="Refresh the Engage profiles snapshot.",
)


def build_defs() -> dg.Definitions:
    config = load_config()
    profiles_schedule = dg.ScheduleDefinition(
        name="daily_profiles_schedule", job=profiles_job, cron_schedule="0 3 * * *",
        execution_timezone=config.timezone, default_status=dg.DefaultScheduleStatus.RUNNING,
        description="Every day at 03:00: refresh the Engage profiles snapshot.",
    )
    return dg.Definitions(
        assets=all_assets,
        jobs=[daily_ingest_job, daily_analysis_job, profiles_job, all_assets_job, email_reports_job],
        schedules=[build_daily_schedule(daily_ingest_job, config.timezone, filing_timezone(config)), profiles_schedule,
                   build_period_schedule(email_reports_job, "weekly", config.timezone),
                   build_period_schedule(email_reports_job, "monthly", config.timezone)],
        sensors=[build_analysis_sensor(daily_analysis_job, config.timezone, config.max_window_days,
                                       filing_timezone(config)),
                 build_reports_sensor(email_reports_job, daily_profile_names(config)),
                 operator_alert_on_run_failure],
        resources=build_resources(),
    )


defs = build_defs()
