"""Render and send the digests of some report periods: plain functions that the `email_reports` asset and
`hitcraft send-reports` call (through Dagster).

For each (profile, period, recipient): build the digest, render it (HTML, text, inline PNG charts), store it
in delivery.email_reports (always, so a re-materialization updates it), then send it unless the ledger says
it went out already (ledger.py), the recipient unsubscribed, or there is nothing to say. A recipient refused
by the server is recorded and the others go on; a transient failure (server down) is recorded as `failed`
and raised after every recipient was tried, so that Dagster's retry sends only what did not go out.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from email.utils import parseaddr
from pathlib import Path


from hitcraft_assets.config import ProductConfig, Report
from hitcraft_assets.delivery import ledger
from hitcraft_assets.delivery.digest import build_digest, funnel_windows, kpis, open_insights
from hitcraft_assets.delivery.email.mime import build_message
from hitcraft_assets.delivery.email.render import render_digest
from hitcraft_assets.delivery.email.smtp import (
    SMTPPermanentError,
    SMTPRecipientRefused,
    SMTPResource,
    SMTPTransientError,
)
from hitcraft_assets.delivery.periods import Period, completed_periods, period_ending
from hitcraft_assets.delivery.unsubscribe import AppDB, make_token, one_click_url, unsubscribe_url
from hitcraft_assets.retries import Transient


@dataclass(frozen=True)
class Outcome:
    profile: str
    period: Period
    recipient: str
    status: str              # sent | outbox | failed | refused | unsubscribed | skipped_empty | unknown | preview
                             # | already_delivered (a previous run sent it)
    where: str | None        # the SMTP server, or the .eml file
    reason: str | None
    subject: str
    insights: int


class TransientDeliveryError(Transient):
    """Some messages could not be sent for a reason that may pass (the server was down); they are recorded
    as `failed` and a retry sends only them. `outcomes` holds what happened to every message."""

    def __init__(self, message: str, outcomes: list[Outcome]):
        super().__init__(message)
        self.outcomes = outcomes


def message_id(profile: str, period: Period, recipient: str, sender: str) -> str:
    """The same profile, period and recipient always give the same Message-ID."""
    digest = hashlib.sha256(f"{profile}|{period.key}|{recipient.lower()}".encode()).hexdigest()[:20]
    domain = parseaddr(sender)[1].rpartition("@")[2] or "hitcraft.local"
    return f"<{profile}.{period.key.replace('..', '_')}.{digest}@{domain}>"


def periods_to_deliver(first: date, last: date, reports: tuple[Report, ...], cadences: list[str] | None,
                       profiles: list[str] | None) -> list[tuple[Report, Period]]:
    """Which (profile, period) a run over the local days first..last delivers: the daily profiles for its
    last day; weekly and monthly profiles for the latest week (Monday to Sunday) or month the range covers
    whole. With `cadences` named (the weekly and monthly schedules), the period of that cadence that ends
    on `last`."""
    out = []
    for report in reports:
        if profiles and report.name not in profiles:
            continue
        if cadences is not None:
            if report.cadence not in cadences:
                continue
            period = period_ending(report.cadence, last)
            if period.end == last:
                out.append((report, period))
            continue
        if report.cadence == "daily":
            out.append((report, period_ending("daily", last)))
        else:
            done = completed_periods(report.cadence, first, last)
            if done:
                out.append((report, done[-1]))
    return out


def deliver(conn_factory, config: ProductConfig, plan: list[tuple[Report, Period]], smtp: SMTPResource, *,
            public_url: str, secret: bytes, app_db: AppDB, send: bool = True, preview_dir: Path | None = None,
            now: datetime | None = None, log: logging.Logger | None = None) -> list[Outcome]:
    """Render every planned (profile, period) for each recipient and send what has not been sent.

    `conn_factory()` yields a DuckDB connection (a context manager), opened briefly for each read and write.
    With send=False nothing is sent and the ledger is not touched: the messages go to `preview_dir` as .eml.
    """
    log = log or logging.getLogger(__name__)
    now = now or datetime.now(timezone.utc)
    outcomes: list[Outcome] = []
    transient: list[str] = []
    for report, period in plan:
        with conn_factory() as conn:
            ledger.ensure_ledger(conn)
            insights = open_insights(conn, period)
            tiles = kpis(conn, report.kpis, period, funnel_windows(config))
        for recipient in report.recipients:
            address = recipient.email.lower()
            token = make_token(secret, report.name, address)
            unsubscribe = unsubscribe_url(public_url, token)
            with conn_factory() as conn:
                digest = build_digest(conn, config, report, recipient, period, public_url=public_url,
                                      unsubscribe_url=unsubscribe, now=now, insights=insights, kpi_tiles=tiles)
            rendered = render_digest(digest)
            mid = message_id(report.name, period, address, smtp.sender)
            key = ledger.SendKey(report.name, report.cadence, period.start, period.end, address, mid)
            msg = build_message(rendered, sender=smtp.sender, to=recipient.email, to_name=recipient.name or None,
                                message_id=mid, date=now, unsubscribe_url=one_click_url(public_url, token))
            ids = json.dumps([i.insight_id for i in digest.insights])
            outcome = dict(profile=report.name, period=period, recipient=address, subject=rendered.subject,
                           insights=len(digest.insights))
            if not send:
                target = (preview_dir or Path("outbox-preview")) / f"{report.name}-{period.key}-{address}.eml"
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(msg.as_bytes())
                outcomes.append(Outcome(**outcome, status="preview", where=str(target), reason=None))
                continue
            with conn_factory() as conn:
                ledger.store_report(conn, key, subject=rendered.subject, html=rendered.html, text=rendered.text,
                                    insight_ids=ids, images=len(rendered.images))
                if app_db.is_unsubscribed(address, report.name):
                    status = ledger.skip(conn, key, "unsubscribed", "the recipient unsubscribed")
                    outcomes.append(Outcome(**outcome, status=status, where=None, reason="unsubscribed"))
                    continue
                if not digest.insights:
                    status = ledger.skip(conn, key, "skipped_empty", digest.empty_note or "nothing to report")
                    outcomes.append(Outcome(**outcome, status=status, where=None, reason=digest.empty_note))
                    continue
                refusal = ledger.claim(conn, key)
            if refusal is not None:
                done = refusal in ledger.DONE
                outcomes.append(Outcome(**outcome, status="already_delivered" if done else refusal, where=None,
                                        reason=f"the ledger says {refusal}" if done else refusal))
                continue
            try:
                result = smtp.send(msg)
            except SMTPRecipientRefused as exc:
                status, where, reason = "refused", None, str(exc)
            except SMTPTransientError as exc:
                status, where, reason = "failed", None, str(exc)
                transient.append(f"{address}: {exc}")
            except SMTPPermanentError as exc:
                with conn_factory() as conn:
                    ledger.record(conn, key, "failed", reason=str(exc))
                raise
            else:
                status, where, reason = result.status, result.where, None
            with conn_factory() as conn:
                ledger.record(conn, key, status, reason=reason, transport=where)
            log.info(f"{report.name} {period.key} -> {address}: {status}" + (f" ({reason})" if reason else ""))
            outcomes.append(Outcome(**outcome, status=status, where=where, reason=reason))
    if transient:
        raise TransientDeliveryError(f"EMAIL_SEND_FAILED: {len(transient)} message(s) could not be sent and "
                                     f"will be retried: {'; '.join(transient)[:500]}", outcomes)
    return outcomes


def latest_digest(profile: str | None = None, recipient: int = 0):
    """The digest that profile `profile` (default: the first daily one) would send its `recipient`-th recipient
    for the latest day with insights, from the warehouse (HITCRAFT_DUCKDB_PATH). For previews and screenshots:
    `python docs/render_email_preview.py --digest hitcraft_assets.delivery.deliver:latest_digest`."""
    from hitcraft_assets import settings
    from hitcraft_assets.config import load_config
    from hitcraft_assets.delivery.unsubscribe import secret_key

    config = load_config()
    report = next(r for r in config.reports if (r.name == profile if profile else r.cadence == "daily"))
    with duckdb_connect_read_only(settings.duckdb_path()) as conn:
        last = conn.execute("select max(as_of_date) from insights.insights").fetchall()[0][0]
        period = period_ending(report.cadence, last)
        if period.end > last:
            period = period_ending(report.cadence, period.start - timedelta(days=1))
        who = report.recipients[recipient]
        url = unsubscribe_url(settings.public_url(), make_token(secret_key(), report.name, who.email.lower()))
        return build_digest(conn, config, report, who, period, public_url=settings.public_url(),
                            unsubscribe_url=url, now=datetime.now(timezone.utc))


def duckdb_connect_read_only(path):
    import duckdb

    return duckdb.connect(str(path), read_only=True)
