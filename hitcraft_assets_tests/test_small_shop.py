"""A small shop end to end (issue 14): 75 days of a young web shop with 5-12 daily users and three planted
incidents (hitcraft_assets.demo.shop), run through `hitcraft run` (a real Dagster run into a DuckDB file).
Each incident must be flagged within 3 days of its start by a finding in that day's top 10, and nothing may
be called a spike because a count of 1 or 2 came after weeks of zeros."""

import subprocess
from datetime import timedelta

import duckdb
import pytest

from hitcraft_assets.demo.shop import START, Shop, write_shop
from hitcraft_assets_tests.cli_env import HITCRAFT, env_for

DAYS, VIRAL, PAYMENT, LOOP = 75, 40, 55, 64


@pytest.fixture(scope="module")
def shop_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("shop")
    export = write_shop(tmp, Shop(DAYS, 3, PAYMENT, LOOP, VIRAL))
    env = env_for(tmp, HITCRAFT_SOURCE="files", HITCRAFT_EXPORT_DIR=str(export),
                  HITCRAFT_CONFIG=str(tmp / "shop.yaml"), HITCRAFT_START_DATE=START.isoformat())
    run = subprocess.run([*HITCRAFT, "run"], cwd=tmp, env=env, capture_output=True, text=True, timeout=1200)
    assert run.returncode == 0, run.stderr[-3000:]
    conn = duckdb.connect(env["HITCRAFT_DUCKDB_PATH"], read_only=True)
    yield conn
    conn.close()


def top10(conn, first_day: int) -> list[tuple]:
    """(days after the start, rank, kind, title, metric, segment) of the open top-10 insights of an
    incident's first 3 days."""
    days = [START + timedelta(days=first_day + k) for k in range(3)]
    rows = conn.execute(
        "select as_of_date, priority_rank, kind, title, evidence->>'metric', evidence->>'segment' "
        "from insights.insights where as_of_date in (?, ?, ?) and status <> 'resolved' and priority_rank <= 10 "
        "order by as_of_date, priority_rank", days).fetchall()
    return [((d - days[0]).days, *rest) for d, *rest in rows]


def test_payment_failures_are_a_risk_named_by_their_new_event(shop_run):
    rows = top10(shop_run, PAYMENT)
    new_event = [r for r in rows if r[2] == "risk" and r[3].startswith("New event payment_error")]
    assert new_event, rows
    # and the support chats that came with it, as their own finding
    assert any("support_chat" in (r[4] or "") for r in rows), rows


def test_the_viral_articles_visitors_are_flagged(shop_run):
    rows = top10(shop_run, VIRAL)
    # led by the activity it moved, not by a side effect (support chats of the new visitors)
    assert any(r[4] in ("dau", "new_users") and "spiked" in r[3] for r in rows if r[1] <= 3), rows


def test_the_mobile_checkout_loop_is_flagged(shop_run):
    rows = top10(shop_run, LOOP)
    assert any(r[2] == "risk" and r[3].startswith("New event checkout_bug") for r in rows), rows


def test_no_spike_is_a_count_of_one_or_two_after_zeros(shop_run):
    """The shop's segments are small: most of their event series are 0 on most days. An alerted count day
    with at most 2 against an expectation below 0.1 is a degenerate baseline, not evidence."""
    bad = shop_run.execute(
        "select metric_date, metric, dimension, segment, observed, expected from analytics.anomalies "
        "where (metric like 'event_count:%' or metric like 'event_users:%') "
        "and observed <= 2 and expected < 0.1").fetchall()
    assert bad == []
    assert shop_run.execute("select count(*) from analytics.anomalies").fetchone()[0] > 0  # alerts, each a row
