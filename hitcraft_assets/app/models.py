"""The API's response bodies (pydantic v2): what /openapi.json documents and what every answer is checked
against (FastAPI validates each response against its model, and the test suite's schemathesis run checks the
answers against the document). Enumerations are closed where the pipeline's contract closes them, so that
"conforms to the schema" says something."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

InsightKind = Literal["risk", "opportunity", "success", "trend", "anomaly"]
InsightStatus = Literal["new", "ongoing", "resolved"]
AnomalyStatus = Literal["new", "continuing"]
Direction = Literal["up", "down"]
Cadence = Literal["daily", "weekly", "monthly"]
SendStatus = Literal["sending", "sent", "outbox", "failed", "refused", "unsubscribed", "skipped_empty", "unknown"]


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- errors ----------------------------------------------------------------------------------------

ERROR_CODES: dict[int, tuple[str, ...]] = {
    400: ("INVALID_CURSOR",),
    401: ("AUTH_REQUIRED", "AUTH_INVALID"),
    403: ("FORBIDDEN",),
    404: ("NOT_FOUND", "INSIGHT_NOT_FOUND", "METRIC_NOT_FOUND", "FUNNEL_NOT_FOUND"),
    409: ("SNAPSHOT_CHANGED",),
    422: ("VALIDATION_ERROR",),
    429: ("RATE_LIMITED",),
    503: ("NO_SNAPSHOT",),
}


class ErrorDetail(Model):
    code: str = Field(pattern=r"^[A-Z][A-Z0-9_]*$", description="Stable, machine-readable")
    message: str = Field(description="For people: what went wrong and what to do")


class ErrorBody(Model):
    """Every error: `{"error": {"code", "message"}}`."""

    error: ErrorDetail


def _error_model(status: int) -> type[BaseModel]:
    codes = ERROR_CODES[status]
    code = Literal[codes]  # type: ignore[valid-type]
    detail = create_model(f"Error{status}Detail", __base__=Model,
                          code=(code, Field(description="Stable, machine-readable")),
                          message=(str, Field(description="For people: what went wrong and what to do")))
    return create_model(f"Error{status}", __base__=Model, error=(detail, ...))


ERROR_MODELS: dict[int, type[BaseModel]] = {status: _error_model(status) for status in ERROR_CODES}


# -- health ----------------------------------------------------------------------------------------

class Health(Model):
    status: Literal["ok"]
    snapshot_id: str
    version: int | None
    built_at: datetime | None = Field(description="When the pipeline published the snapshot (UTC)")
    age_seconds: float | None = Field(description="Seconds since built_at")
    last_day: date | None = Field(description="The newest as-of day the snapshot holds")
    opened_at: datetime = Field(description="When this server process opened the snapshot")
    tables: dict[str, int] = Field(description="Rows per table in the snapshot")


# -- insights --------------------------------------------------------------------------------------

class Insight(Model):
    insight_id: str = Field(description="Stable across days for the same finding")
    as_of_date: date
    kind: InsightKind
    status: InsightStatus
    title: str
    summary: str
    impact_score: float
    confidence: float = Field(ge=0, le=1)
    priority_rank: int = Field(ge=1, description="1 = the most important of its as-of day")
    recommendation: str
    generated_by: str = Field(description="`rules` or `llm:<model>`")
    metric: str | None = Field(description="The metric the finding is about (evidence.metric)")
    dimension: str | None
    segment: str | None


class Page(Model):
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page")
    snapshot_id: str = Field(description="The snapshot this page was read from")
    snapshot_changed: bool = Field(
        description="True when a new snapshot was published since the cursor was made and the pages continue "
                    "in it (the rows already returned are the same in the new snapshot, so nothing is repeated "
                    "or skipped)")


class InsightPage(Page):
    items: list[Insight]


class InsightHistoryEntry(Model):
    as_of_date: date
    status: InsightStatus
    priority_rank: int
    impact_score: float


class InsightDetail(Insight):
    evidence: dict[str, Any] = Field(description="The numbers behind the finding; every number in the summary is here")
    context: dict[str, Any] = Field(description="Product, goals, area, owner and glossary entries")
    history: list[InsightHistoryEntry] = Field(description="The insight on each as-of day, oldest first")


# -- metrics ---------------------------------------------------------------------------------------

class MetricInfo(Model):
    name: str
    source: Literal["daily_metrics", "funnel_steps"]
    first_date: date
    last_date: date
    days: int


class DimensionInfo(Model):
    name: str
    segments: list[str]


class MetricCatalog(Model):
    items: list[MetricInfo]
    dimensions: list[DimensionInfo]
    next_cursor: None = None
    snapshot_id: str


class AnomalyFlag(Model):
    expected: float | None
    lower: float | None
    upper: float | None
    score: float | None
    direction: Direction | None
    q_value: float | None
    status: AnomalyStatus
    episode_start: date | None


class SeriesPoint(Model):
    date: date
    value: float | None
    anomaly: AnomalyFlag | None = Field(description="Set on a day the detector flagged (analytics.anomalies)")


class ChangePoint(Model):
    date: date
    mean_before: float | None
    mean_after: float | None
    shift: float | None
    relative_shift: float | None


class Trend(Model):
    as_of_date: date
    trend: str | None
    q_value: float | None
    pct_change_7d: float | None
    pct_change_28d: float | None
    last_change_date: date | None


class Series(Model):
    dimension: str
    segment: str
    points: list[SeriesPoint]
    change_points: list[ChangePoint]
    trend: Trend | None


class MetricSeries(Model):
    metric: str
    source: Literal["daily_metrics", "funnel_steps"]
    from_date: date
    to_date: date
    series: list[Series]
    snapshot_id: str


# -- funnels ---------------------------------------------------------------------------------------

class FunnelInfo(Model):
    name: str
    steps: list[str]
    window_days: int | None
    first_cohort_date: date | None
    last_cohort_date: date | None


class FunnelList(Model):
    items: list[FunnelInfo]
    next_cursor: None = None
    snapshot_id: str


class FunnelStep(Model):
    step: int = Field(ge=1)
    step_event: str
    users: int = Field(ge=0)
    conversion_from_prev: float | None
    conversion_from_start: float | None
    median_seconds_from_prev: float | None


class FunnelGroup(Model):
    cohort_date: date | None = Field(description="The entry day (by=day); null over a range")
    dimension: str
    segment: str
    entrants: int
    completeness: float | None = Field(None, ge=0, le=1, description=(
        "How far the entry day's conversion window has run (1: closed, the numbers are final); over a range the "
        "least complete day's. Below 1 the cohort is still converting."))
    steps: list[FunnelStep]


class FunnelReport(Model):
    name: str
    steps: list[str]
    window_days: int | None
    from_date: date | None
    to_date: date | None
    by: Literal["day", "range"]
    dimension: str
    groups: list[FunnelGroup]
    snapshot_id: str


# -- retention -------------------------------------------------------------------------------------

class RetentionRow(Model):
    cohort_week: date
    weeks_since: int = Field(ge=0)
    cohort_size: int = Field(ge=0)
    retained_users: int = Field(ge=0)
    retention_rate: float = Field(ge=0, le=1)
    complete: bool


class RetentionList(Model):
    items: list[RetentionRow]
    next_cursor: None = None
    measure: Literal["on_or_after", "on"]
    snapshot_id: str


# -- anomalies -------------------------------------------------------------------------------------

class Anomaly(Model):
    metric_date: date
    metric: str
    dimension: str
    segment: str
    observed: float | None
    expected: float | None
    lower: float | None
    upper: float | None
    score: float | None
    direction: Direction | None
    p_value: float | None
    q_value: float | None
    status: AnomalyStatus
    episode_start: date | None
    root_cause: Any = Field(description="For totals: the segments that explain the change, best first")
    window_days: int = Field(description="Days `observed` pools, ending on metric_date: 1, or 3 or 7 for a "
                                         "conversion judged on fewer than 30 entrants a day")


class AnomalyPage(Page):
    items: list[Anomaly]


# -- reports ---------------------------------------------------------------------------------------

class MessageBody(Model):
    subject: str
    html: str
    text: str


class ReportSend(Model):
    profile: str
    cadence: Cadence
    period_start: date
    period_end: date
    recipient: str
    message_id: str
    status: SendStatus
    attempts: int
    reason: str | None
    created_at: datetime
    updated_at: datetime
    sent_at: datetime | None = Field(description="When it went out (status sent, or written to the outbox)")
    body: MessageBody | None = Field(description="Only with include=body and an admin key")


class ReportPage(Page):
    items: list[ReportSend]
