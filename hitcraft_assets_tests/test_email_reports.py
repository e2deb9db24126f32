"""The email digests end to end: the email_reports asset through a real Dagster instance, against a real
SMTP server on loopback, reading a real DuckDB warehouse. A digest tool's worst bugs are duplicate sends
(a retry resending to every recipient, a re-run sending again), one bad address blocking the others, and
the same digest for everyone; each is reproduced here, with the schedules' and sensors' requests and the
operator alert on a failed run."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from datetime import date, datetime, timezone
from email import policy
from email.parser import BytesParser

import dagster as dg
import duckdb
import pytest

from hitcraft_assets.config import load_config
from hitcraft_assets.delivery.assets import email_reports
from hitcraft_assets.delivery.digest import choose
from hitcraft_assets.delivery.email.smtp import SMTPResource
from hitcraft_assets.delivery.periods import Period, completed_periods, period_ending
from hitcraft_assets.delivery.unsubscribe import AppDB
from hitcraft_assets.warehouse import WarehouseResource
from hitcraft_assets_tests.reports_fixture import HOSTILE, LAST, build_warehouse, write_config
from hitcraft_assets_tests.smtp_server import SMTPTestServer

PASSWORD = "smtp-pa55word-xyz"


@pytest.fixture
def shop(tmp_path, monkeypatch):
    monkeypatch.setenv("HITCRAFT_CONFIG", str(write_config(tmp_path)))
    monkeypatch.setenv("HITCRAFT_APP_DB", str(tmp_path / "app.sqlite"))
    monkeypatch.setenv("HITCRAFT_SECRET_KEY", "a-test-secret-key-of-32-characters!")
    monkeypatch.setenv("HITCRAFT_PUBLIC_URL", "https://hitcraft.example")
    warehouse = tmp_path / "w.duckdb"
    build_warehouse(warehouse)
    return warehouse


def resources(warehouse, server=None, outbox=None) -> dict:
    smtp = (SMTPResource(host=server.host, port=server.port, security="none", user="mailer", password=PASSWORD,
                         sender="Shop Reports <reports@shop.example>", timeout_s=5)
            if server else SMTPResource(host=None, outbox_dir=str(outbox), sender="reports@shop.example"))
    return {"duckdb": WarehouseResource(database=str(warehouse)), "smtp": smtp}


def deliver(res, instance, day: date = LAST, **config):
    return dg.materialize([email_reports], partition_key=day.isoformat(), resources=res, instance=instance,
                          raise_on_error=False, run_config={"ops": {"email_reports": {"config": config}}})


def sends(warehouse) -> list[tuple]:
    with duckdb.connect(str(warehouse), read_only=True) as conn:
        return conn.execute("select profile, recipient, status, attempts from delivery.email_sends "
                            "order by all").fetchall()


def received(server) -> dict[str, list]:
    out: dict[str, list] = {}
    for m in server.messages:
        for to in m.rcpt_tos:
            out.setdefault(to, []).append(m)
    return out


def html_of(message) -> str:
    return message.message.get_body(("html",)).get_content()


def text_of(message) -> str:
    return message.message.get_body(("plain",)).get_content()


def test_periods():
    assert period_ending("weekly", date(2026, 3, 25)) == Period("weekly", date(2026, 3, 23), date(2026, 3, 29))
    assert period_ending("monthly", date(2026, 2, 10)) == Period("monthly", date(2026, 2, 1), date(2026, 2, 28))
    assert period_ending("monthly", date(2026, 3, 31)).previous() == Period("monthly", date(2026, 2, 1), date(2026, 2, 28))
    assert period_ending("weekly", date(2026, 3, 29)).previous().start == date(2026, 3, 16)
    assert [p.start for p in completed_periods("weekly", date(2026, 3, 4), date(2026, 3, 28))] == [
        date(2026, 3, 9), date(2026, 3, 16)]
    assert completed_periods("monthly", date(2026, 2, 2), date(2026, 3, 30)) == []


def test_two_recipients_get_their_own_digest_over_real_smtp(shop, instance):
    with SMTPTestServer(user="mailer", password=PASSWORD, auth_required=True) as server:
        result = deliver(resources(shop, server), instance)
        assert result.success
        got = received(server)
    assert sorted(got) == ["ana@shop.example", "ben@shop.example"]      # the daily profile only, on a daily run
    ana, ben = got["ana@shop.example"][0], got["ben@shop.example"][0]
    assert "Ana" in html_of(ana) and "Ben" in html_of(ben) and "Ana" not in html_of(ben)
    # Ben (engineering, checkout) sees the checkout risk and what concerns the whole product, not growth
    assert "Checkout conversion fell" in html_of(ben) and "Referral sign-ups" not in html_of(ben)
    assert "Referral sign-ups" in html_of(ana)
    # a hostile event name from the tracked product is escaped in the HTML, harmless in the text
    assert HOSTILE not in html_of(ana) and "&lt;img src=x onerror=alert(1)&gt;" in html_of(ana)
    assert HOSTILE in text_of(ana)
    headers = ana.message
    assert headers["Subject"].startswith("Shop daily digest: ") and headers["Message-ID"].startswith("<daily.")
    assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "https://hitcraft.example/v1/unsubscribe?token=" in headers["List-Unsubscribe"]
    assert "https://hitcraft.example/insights/i-checkout-drop" in html_of(ana)
    assert sends(shop) == [("daily", "ana@shop.example", "sent", 1), ("daily", "ben@shop.example", "sent", 1)]


CONCURRENT_RUN = """
import sys, dagster as dg
from hitcraft_assets.delivery.assets import email_reports
from hitcraft_assets.delivery.email.smtp import SMTPResource
from hitcraft_assets.warehouse import WarehouseResource
warehouse, host, port, password, go = sys.argv[1:6]
import os, time
while not os.path.exists(go):
    time.sleep(0.01)
with dg.instance_for_test() as instance:
    result = dg.materialize([email_reports], partition_key="2026-03-29", instance=instance, resources={
        "duckdb": WarehouseResource(database=warehouse),
        "smtp": SMTPResource(host=host, port=int(port), security="none", user="mailer", password=password)})
print("ok" if result.success else "failed")
"""


def test_never_sent_twice_across_reruns_and_concurrent_runs(shop, tmp_path):
    with SMTPTestServer(user="mailer", password=PASSWORD) as server:
        with dg.instance_for_test() as instance:
            assert deliver(resources(shop, server), instance).success
            assert deliver(resources(shop, server), instance).success          # a re-materialized day
        with duckdb.connect(str(shop)) as conn:      # a new day's ledger: forget the sends, keep the reports
            conn.execute("delete from delivery.email_sends")
        # two processes at once, each with its own Dagster instance (no shared pool): the ledger alone
        # must stop the second send
        go = tmp_path / "go"
        procs = [subprocess.Popen([sys.executable, "-c", CONCURRENT_RUN, str(shop), server.host, str(server.port),
                                   PASSWORD, str(go)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  env=os.environ.copy()) for _ in range(2)]
        go.write_text("go")
        outputs = [p.communicate(timeout=240) for p in procs]
        counts = {to: len(ms) for to, ms in received(server).items()}
    assert [o[0].strip().splitlines()[-1] for o in outputs] == ["ok", "ok"], outputs[0][1][-2000:]
    assert counts == {"ana@shop.example": 2, "ben@shop.example": 2}   # once before the reset, once after
    assert [s[2] for s in sends(shop)] == ["sent", "sent"]
    with duckdb.connect(str(shop), read_only=True) as conn:   # the rendered report is kept (and updated)
        assert conn.execute("select count(*) from delivery.email_reports").fetchall() == [(2,)]


def start_when_up_for_retry(instance, previous_run_id: str, server, timeout_s: float = 120.0) -> None:
    """Start `server` once the newest run (not `previous_run_id`) has logged a STEP_UP_FOR_RETRY."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        runs = instance.get_runs(limit=1)
        if runs and runs[0].run_id != previous_run_id and instance.all_logs(
                runs[0].run_id, of_type=dg.DagsterEventType.STEP_UP_FOR_RETRY):
            break
        time.sleep(0.05)
    server.start()      # on a timeout too, so that a run that never retries fails its assertions, not hangs


def test_smtp_down_then_up_sends_once(shop, instance):
    server = SMTPTestServer(user="mailer", password=PASSWORD).start()
    try:
        server.stop()                                           # connection refused
        res = resources(shop, server)
        failed = deliver(res, instance, send_retries=0)
        assert not failed.success
        assert [s[2] for s in sends(shop)] == ["failed", "failed"]
        # down again, and up while the step waits to retry: the retry sends what did not go out, once.
        # The server comes up when the second run's step is up for retry (read from the instance's event
        # log), not after a fixed delay, which on a loaded machine could pass before its first try.
        watcher = threading.Thread(target=start_when_up_for_retry, args=(instance, failed.run_id, server))
        watcher.start()
        retried = deliver(res, instance, send_retries=4, retry_base_s=0.5)
        watcher.join()
        assert retried.success
        assert sum(1 for e in retried.all_events if e.event_type_value == "STEP_UP_FOR_RETRY") >= 1
        assert {to: len(ms) for to, ms in received(server).items()} == {"ana@shop.example": 1, "ben@shop.example": 1}
        assert all(status == "sent" and attempts >= 3 for _, _, status, attempts in sends(shop))
        assert deliver(res, instance).success                  # and a later run sends nothing more
        assert len(server.messages) == 2
    finally:
        server.stop()


def test_a_rejected_recipient_does_not_block_the_others(shop, instance):
    with SMTPTestServer(user="mailer", password=PASSWORD, rejected={"ben@shop.example"}) as server:
        result = deliver(resources(shop, server), instance)
        assert result.success
        assert sorted(received(server)) == ["ana@shop.example"]
    status = {r: (s, a) for _, r, s, a in sends(shop)}
    assert status == {"ana@shop.example": ("sent", 1), "ben@shop.example": ("refused", 1)}


def test_unsubscribed_recipients_are_skipped_and_recorded(shop, instance):
    AppDB().unsubscribe("BEN@shop.example", "daily", source="test")
    with SMTPTestServer(user="mailer", password=PASSWORD) as server:
        assert deliver(resources(shop, server), instance).success
        assert sorted(received(server)) == ["ana@shop.example"]
    assert {r: s for _, r, s, _ in sends(shop)}["ben@shop.example"] == "unsubscribed"


def test_without_smtp_the_messages_go_to_the_outbox_and_no_secret_leaks(shop, tmp_path, instance):
    outbox = tmp_path / "outbox"
    result = deliver(resources(shop, outbox=outbox), instance)
    assert result.success
    files = sorted(outbox.glob("*.eml"))
    assert len(files) == 2
    parsed = BytesParser(policy=policy.default).parsebytes(files[0].read_bytes())
    assert parsed.get_content_type() == "multipart/alternative"
    related = [p for p in parsed.walk() if p.get_content_type() == "multipart/related"]
    assert related and any(p.get_content_type() == "image/png" for p in related[0].walk())
    with SMTPTestServer(user="mailer", password=PASSWORD) as server:
        with dg.instance_for_test() as other:
            again = deliver(resources(shop, server), other)
    everything = "".join(f.read_text(errors="replace") for f in files) + str(sends(shop))
    for record in again.all_events:
        everything += str(record)
    assert PASSWORD not in everything


def test_weekly_profile_on_its_schedule_and_new_means_new_this_week(shop, instance):
    with SMTPTestServer(user="mailer", password=PASSWORD) as server:
        assert deliver(resources(shop, server), instance, cadences=["weekly"]).success
        [message] = received(server)["cleo@shop.example"]
    html = html_of(message)
    assert "week of 23 March 2026" in html
    # only the profile's kinds: the trend and the opportunity, not the risk or the anomaly
    assert "Referral sign-ups" in html and "Checkout conversion fell" not in html


def test_choose_orders_by_area_and_role(tmp_path):
    config = load_config(write_config(tmp_path))
    report = config.reports[0]
    ana, ben = report.recipients
    items = [{"insight_id": str(n), "kind": k, "context": {"area": a}, "impact": w, "rank": n}
             for n, (k, a, w) in enumerate([("trend", None, 9.0), ("opportunity", "growth", 5.0),
                                            ("risk", "checkout", 4.0), ("anomaly", "growth", 8.0)], start=1)]
    assert [i["insight_id"] for i in choose(items, report, ana)] == ["4", "2", "3", "1"]
    assert [i["insight_id"] for i in choose(items, report, ben)] == ["3", "1"]


def test_schedules_and_sensor_request_the_right_runs(shop, instance):
    from hitcraft_assets.definitions import defs

    weekly = defs.get_schedule_def("weekly_reports_schedule")
    monday = datetime(2026, 3, 30, 7, 0, tzinfo=timezone.utc)
    [request] = weekly.evaluate_tick(dg.build_schedule_context(scheduled_execution_time=monday, repository_def=defs.get_repository_def())).run_requests
    assert request.partition_key == "2026-03-29" and request.run_key == "email:weekly:2026-03-29"
    assert request.run_config["ops"]["email_reports"]["config"]["cadences"] == ["weekly"]
    monthly = defs.get_schedule_def("monthly_reports_schedule")
    first = datetime(2026, 4, 1, 7, 0, tzinfo=timezone.utc)
    [request] = monthly.evaluate_tick(dg.build_schedule_context(scheduled_execution_time=first, repository_def=defs.get_repository_def())).run_requests
    assert request.partition_key == "2026-03-31"
    # the sensor: a day's insights materialized by a run that does not deliver -> one run per daily profile
    from hitcraft_assets.insights.assets import insights

    from hitcraft_assets.definitions import email_reports_job
    from hitcraft_assets.delivery.schedules import build_reports_sensor

    sensor = build_reports_sensor(email_reports_job, ["daily-a", "daily-b"])
    instance.report_runless_asset_event(dg.AssetMaterialization(insights.key, partition=LAST.isoformat()))
    data = sensor(dg.build_sensor_context(instance=instance, definitions=defs))
    requests = data if isinstance(data, list) else [data]
    assert [(r.run_key, r.partition_key) for r in requests] == [
        (f"email:daily-a:{LAST}", LAST.isoformat()), (f"email:daily-b:{LAST}", LAST.isoformat())]
    assert requests[0].run_config["ops"]["email_reports"]["config"]["profiles"] == ["daily-a"]


def test_a_failed_run_alerts_the_operator_without_secrets(tmp_path, monkeypatch, instance):
    from hitcraft_assets.definitions import defs

    monkeypatch.setenv("HITCRAFT_ALERT_EMAIL", "ops@shop.example")
    monkeypatch.setenv("MIXPANEL_API_SECRET", "mp-secret-abcdef123")

    @dg.op
    def boom():
        raise RuntimeError("export failed for https://user:pw-9@proxy.example/x?token=tok123 with mp-secret-abcdef123")

    @dg.job
    def failing():
        boom()

    result = failing.execute_in_process(instance=instance, raise_on_error=False)
    assert not result.success
    sensor = defs.get_sensor_def("operator_alert_on_run_failure")
    run = instance.get_run_by_id(result.run_id)
    failure_event = next(e for e in instance.all_logs(result.run_id) if e.dagster_event and
                         e.dagster_event.event_type_value == "PIPELINE_FAILURE")
    with SMTPTestServer() as server:
        ctx = dg.build_run_status_sensor_context(sensor_name=sensor.name, dagster_instance=instance, dagster_run=run,
                                                 dagster_event=failure_event.dagster_event,
                                                 resources={"smtp": SMTPResource(host=server.host, port=server.port,
                                                                                 security="none")}
                                                 ).for_run_failure()
        sensor(ctx)
        [message] = server.messages
    body = message.message.get_content() if not message.message.is_multipart() else text_of(message)
    assert message.rcpt_tos == ["ops@shop.example"] and "failing" in message.message["Subject"]
    assert "boom" in body and "RuntimeError" in body and f"/runs/{result.run_id}" in body
    for secret in ("mp-secret-abcdef123", "pw-9", "tok123"):
        assert secret not in body


def test_a_funnel_kpi_reads_only_entry_days_whose_window_has_closed(tmp_path):
    """Checkout (a 3-day window) converts 62% until LAST - 5, then 40%. A daily report of LAST reads the entry
    day LAST - 3, the latest whose window has closed by then, even where a later computation has marked
    younger rows complete; with its rows still converting (completeness < 1) it goes back further, and says
    which days it rests on."""
    from datetime import timedelta

    from hitcraft_assets.delivery.digest import kpis

    path = tmp_path / "w.duckdb"
    build_warehouse(path)
    windows = {"Checkout": 3}
    with duckdb.connect(str(path)) as conn:
        conn.execute("update analytics.funnel_steps set completeness = 1.0")
        [tile] = kpis(conn, ["funnel:Checkout"], Period("daily", LAST, LAST), windows)
        closed = LAST - timedelta(days=3)
        assert tile.value == pytest.approx(20 / 50)
        assert tile.label == f"Checkout conversion (entered {closed.day} {closed:%b}, window closed)"
        # rows computed before the window closed say so: they are left out too
        conn.execute("update analytics.funnel_steps set completeness = 0.5, users = 5, conversion_from_prev = 0.1 "
                     "where cohort_date >= ? and step = 2", [closed])
        conn.execute("update analytics.funnel_steps set completeness = 0.5 where cohort_date >= ?", [closed])
        [tile] = kpis(conn, ["funnel:Checkout"], Period("daily", LAST, LAST), windows)
        earlier = closed - timedelta(days=1)
        assert tile.value == pytest.approx(20 / 50)          # LAST - 4's cohort, not the 10% so far of LAST - 3
        assert tile.label == f"Checkout conversion (entered {earlier.day} {earlier:%b}, window closed)"
        [week] = kpis(conn, ["funnel:Checkout"], Period("weekly", LAST - timedelta(days=6), LAST), windows)
        # entry days LAST - 10 .. LAST - 4: five at 62%, two at 40%
        assert week.value == pytest.approx((5 * 31 + 2 * 20) / (7 * 50))
