"""The data-quality page (`/quality`): what the loader made of each UTC day of the export, and the checks.

- Held days first, from the whole load log (not only the range shown): each with the quality gate's reason and
  what to do (replace the day's export file, then `hitcraft run --from <day>`, as the README says).
- The chart: rows loaded per day, coloured by the gate's verdict (passed, warned, held, no file), over a range
  (`from`, `to`; default the `DEFAULT_DAYS` days up to the last loaded day); rejected lines by reason over the
  same range; then the days that need a look and every day of the range as a table.
- Check results: the latest evaluation of each asset check of raw_events, as Dagster recorded it (the snapshot's
  `check_results`, which the serving_snapshot asset reads from the Dagster instance): pass or fail, severity,
  when, the days its run covered and its metadata. They are not re-derived from the load log: `no_duplicates`
  counts rows of raw.events and `volume_vs_trailing_median` compares with the log as it was at the time.

Numbers are raw.load_log's and raw.rejected_events' (queries.load_days, queries.rejected_lines).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from hitcraft_assets.app import queries
from hitcraft_assets.app.auth import KeyInfo
from hitcraft_assets.app.snapshot import Snapshot
from hitcraft_assets.app.web import specs
from hitcraft_assets.app.web.metrics import FORMATTERS, parse_day, resolve_range
from hitcraft_assets.app.web.render import page, page_snapshot
from hitcraft_assets.app.web.session import require_user

router = APIRouter(include_in_schema=False)

DEFAULT_DAYS = 90
MAX_DAYS = 800
MAX_META_TEXT = 400
# the gate's verdict as the page words it (the chart's statuses, specs.QUALITY_STATUSES)
STATUS_CLASS = {"passed": "passed", "warned": "warned", "held": "held", "no file": "missing"}


def day_status(d: dict) -> str:
    """passed, warned, held or "no file" (a held day is held whatever else it is)."""
    if d["gate"] == "held":
        return "held"
    if not d["source_found"]:
        return "no file"
    return "warned" if d["gate"] == "warn" else "passed"


def _meta_text(value) -> str:
    """A metadata value in words: a list of records one per line-ish ("2026-03-04: rows 1,185, trailing median
    739"), a map of day to reason as "day: reason", scalars as they are."""
    if isinstance(value, bool) or value is None:
        return str(value).lower()
    if isinstance(value, int):
        return specs.fmt_int(value)
    if isinstance(value, dict):
        return "; ".join(f"{k}: {_meta_text(v)}" for k, v in value.items()) or "none"
    if isinstance(value, list):
        if not value:
            return "none"
        if all(isinstance(v, dict) for v in value):
            return "; ".join(
                (f"{v['day']}: " if "day" in v else "")
                + ", ".join(f"{k.replace('_', ' ')} {_meta_text(x)}" for k, x in v.items() if k != "day")
                for v in value)
        return ", ".join(_meta_text(v) for v in value)
    return str(value)


def _meta_items(metadata: dict | None) -> list[tuple[str, str]]:
    """A check's metadata as (label, text) pairs, each text cut to MAX_META_TEXT characters."""
    out = []
    for name, value in (metadata or {}).items():
        text = _meta_text(value)
        if len(text) > MAX_META_TEXT:
            text = text[:MAX_META_TEXT - 1] + "…"
        out.append((name.replace("_", " "), text))
    return out


def _summary(shown: list[dict], totals: dict, first: date, last: date) -> str:
    held = [specs.fmt_day(d["event_date"]) for d in shown if d["status"] == "held"]
    return (f"Rows loaded per day, {specs.fmt_day(first)} to {specs.fmt_day(last)}: {len(shown)} days loaded, "
            f"{specs.fmt_int(totals['rows'])} rows in all; {totals['held']} held"
            + (f" ({', '.join(held)})" if held else "")
            + f", {totals['warned']} with warnings, {totals['no_file']} without a file. "
            + ("Busiest day: " + max(shown, key=lambda d: d["rows_loaded"] or 0)["event_date"].isoformat()
               + f" with {specs.fmt_int(max(d['rows_loaded'] or 0 for d in shown))} rows." if shown else ""))


@router.get("/quality", response_class=HTMLResponse)
def quality_page(request: Request, user: KeyInfo = Depends(require_user),
                 snap: Snapshot | None = Depends(page_snapshot)) -> HTMLResponse:
    errors: list[str] = []
    from_text = (request.query_params.get("from") or "").strip()[:40]
    to_text = (request.query_params.get("to") or "").strip()[:40]
    context: dict = {"has_snapshot": snap is not None, "errors": errors, "days": [], "status_class": STATUS_CLASS, "default_days": DEFAULT_DAYS,
                     **FORMATTERS}
    if snap is None:
        return page(request, "quality.html", context, active="quality", title="Data quality")
    days = queries.load_days(snap)
    for d in days:
        d["status"] = day_status(d)
    checks = queries.check_results(snap)
    for c in checks or []:
        c["items"] = _meta_items(c["metadata"])
    context.update(days=days, has_log=snap.has("load_log"), checks=checks,
                   held=[d for d in reversed(days) if d["status"] == "held"])
    if not days:
        return page(request, "quality.html", context, active="quality", title="Data quality")

    first, last = resolve_range(parse_day(from_text, "From", errors), parse_day(to_text, "To", errors),
                                days[0]["event_date"], days[-1]["event_date"], DEFAULT_DAYS, errors, MAX_DAYS)
    shown = [d for d in days if first <= d["event_date"] <= last]
    totals = {"days": len(shown), "rows": sum(d["rows_loaded"] or 0 for d in shown),
              "lines": sum(d["lines"] or 0 for d in shown),
              "rejected": sum(d["rejected"] or 0 for d in shown),
              "duplicates": sum(d["duplicates_removed"] or 0 for d in shown),
              "placeholders": sum(d["placeholder_ids"] or 0 for d in shown),
              "held": sum(d["status"] == "held" for d in shown), "warned": sum(d["status"] == "warned" for d in shown),
              "no_file": sum(d["status"] == "no file" for d in shown)}
    totals["gaps"] = (last - first).days + 1 - len(shown)

    by_reason: dict[str, int] = defaultdict(int)
    for r in queries.rejected_lines(snap):
        if first <= r["event_date"] <= last:
            by_reason[r["reason"]] += r["lines"]
    reasons = sorted(({"reason": k, "lines": v} for k, v in by_reason.items()), key=lambda r: (-r["lines"], r["reason"]))

    chart_days = [{"date": d["event_date"], "rows": d["rows_loaded"] or 0, "status": d["status"],
                   "reason": d["gate_reason"]} for d in shown]
    period = f"{specs.fmt_day(first)} to {specs.fmt_day(last)}"
    context.update(
        first=first, last=last, data_first=days[0]["event_date"], data_last=days[-1]["event_date"],
        shown=list(reversed(shown)), totals=totals, reasons=reasons,
        issues=[d for d in reversed(shown) if d["status"] != "passed"],
        days_spec=specs.quality_days_chart(chart_days),
        days_caption=f"Rows loaded per UTC day, {period}, coloured by the quality gate's verdict",
        days_summary=_summary(shown, totals, first, last),
        reasons_spec=specs.rejected_reasons_chart(reasons) if reasons else None,
        reasons_caption=f"Rejected lines by reason, {period}",
        reasons_summary="Rejected lines by reason: " + "; ".join(
            f"{r['reason']} {specs.fmt_int(r['lines'])}" for r in reasons) + ".")
    return page(request, "quality.html", context, active="quality", title="Data quality")
