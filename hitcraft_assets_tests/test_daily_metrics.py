"""analytics.daily_metrics must count what Mixpanel counts, since trends, anomalies and insights are read off
it: DAU/WAU/MAU with Mixpanel's trailing windows, a user in every segment they touched, new users and
stickiness, session and event metrics, over a month of declarative journeys with hand-computed numbers.
Also: empty days, idempotent re-runs, materializing days out of order, an identity merge that arrives days
after the anonymous visit, the guard against missing sessions, and a Polars cross-check on demo data."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import date, timedelta

import polars as pl
import pytest

from hitcraft_assets.analysis.identity import rebuild_identity
from hitcraft_assets.analysis.metrics import MetricsError, compute_daily_metrics
from hitcraft_assets.analysis.sessions import compute_sessions
from hitcraft_assets.config import Dimension, load_config
from hitcraft_assets.demo.simulator import generate_demo
from hitcraft_assets.ingestion.loader import load_day
from hitcraft_assets_tests.journeys import fresh_warehouse, load_journeys

CONFIG = load_config()  # UTC, dimensions platform ($os), country, channel
D1, D2, D7, D8, D30, D31 = (date(2026, 3, d) for d in (1, 2, 7, 8, 30, 31))


def at(day: date, hhmm: str) -> str:
    return f"{day.isoformat()}T{hhmm}:00+00:00"


IOS, ANDROID, WEB = {"$os": "iOS"}, {"$os": "Android"}, {"$os": "Web"}

# March 2026, UTC. D1 is the first loaded day, so everyone active on it is new.
JOURNEYS = {
    "alice": [("Page View", at(D1, "10:00"), IOS),
              ("Login", at(D2, "10:00"), ANDROID), ("Page View", at(D2, "10:10"), ANDROID),   # 600 s
              ("Login", at(D8, "09:00"), IOS)],
    "bob": [("Login", at(D2, "09:00"), IOS),                                                    # 0 s
            ("Login", at(D2, "12:00"), ANDROID), ("Page View", at(D2, "12:20"), ANDROID)],      # 1200 s
    "carol": [("Sign Up", at(D8, "11:00"), WEB)],
    "dave": [("Login", at(D1, "08:00"), IOS), ("Login", at(D31, "08:00"), IOS)],
    "erin": [("Login", at(D1, "12:00"), ANDROID)],
}
DAYS = (D1, D2, D7, D8, D30, D31)


@dataclass(frozen=True)
class M:
    """An expected row of analytics.daily_metrics; segment 'all' means the total."""

    day: date
    metric: str
    value: float
    segment: str = "all"

    @property
    def dimension(self) -> str:
        return "all" if self.segment == "all" else "platform"


EXPECTED = [
    # D1: alice (iOS), dave (iOS), erin (Android); first loaded day: all three are new.
    M(D1, "dau", 3), M(D1, "wau", 3), M(D1, "mau", 3), M(D1, "new_users", 3), M(D1, "stickiness", 1.0),
    M(D1, "dau", 2, "iOS"), M(D1, "dau", 1, "Android"), M(D1, "new_users", 2, "iOS"),
    # D2: alice (Android), bob (iOS and Android: counted in both, so segments do not sum to the total).
    M(D2, "dau", 2), M(D2, "wau", 4), M(D2, "mau", 4), M(D2, "new_users", 1), M(D2, "stickiness", 0.5),
    M(D2, "dau", 2, "Android"), M(D2, "dau", 1, "iOS"),
    M(D2, "wau", 3, "Android"), M(D2, "wau", 3, "iOS"),     # erin+alice+bob / alice+dave+bob
    M(D2, "new_users", 1, "iOS"), M(D2, "new_users", 1, "Android"),
    M(D2, "stickiness", 1 / 3, "iOS"), M(D2, "stickiness", 2 / 3, "Android"),
    # D2 sessions: alice 10:00-10:10 (2 events), bob 09:00 (1), bob 12:00-12:20 (2).
    M(D2, "sessions", 3), M(D2, "session_duration_median_s", 600), M(D2, "session_duration_mean_s", 600),
    M(D2, "events_per_session", 5 / 3),
    M(D2, "sessions", 2, "Android"), M(D2, "session_duration_median_s", 900, "Android"),
    M(D2, "events_per_session", 2, "Android"),
    M(D2, "sessions", 1, "iOS"), M(D2, "session_duration_mean_s", 0, "iOS"), M(D2, "events_per_session", 1, "iOS"),
    # D2 events: Login by alice and bob twice, Page View by alice and bob.
    M(D2, "event_count:Login", 3), M(D2, "event_users:Login", 2),
    M(D2, "event_count:Page View", 2), M(D2, "event_users:Page View", 2),
    M(D2, "event_count:Login", 2, "Android"), M(D2, "event_users:Login", 2, "Android"),
    M(D2, "event_count:Login", 1, "iOS"), M(D2, "event_users:Login", 1, "iOS"),
    M(D2, "event_count:Page View", 0, "iOS"), M(D2, "event_users:Page View", 0, "iOS"),
    # D7: nobody; WAU still holds D1..D7 (the window ends on the day: D1 is its first day).
    M(D7, "dau", 0), M(D7, "wau", 4), M(D7, "mau", 4), M(D7, "new_users", 0), M(D7, "sessions", 0),
    M(D7, "stickiness", 0.0), M(D7, "dau", 0, "iOS"), M(D7, "wau", 3, "iOS"),
    # D8: alice (iOS), carol (Web, new). WAU = D2..D8: alice, bob, carol (D1-only dave and erin are out).
    M(D8, "dau", 2), M(D8, "wau", 3), M(D8, "mau", 5), M(D8, "new_users", 1), M(D8, "stickiness", 0.4),
    M(D8, "wau", 2, "iOS"), M(D8, "wau", 2, "Android"), M(D8, "wau", 1, "Web"), M(D8, "mau", 3, "iOS"),
    M(D8, "new_users", 1, "Web"), M(D8, "new_users", 0, "iOS"),
    M(D8, "event_count:Sign Up", 1), M(D8, "event_users:Login", 1, "iOS"),
    # D30: MAU = Mar 1..30 still holds everyone; WAU = Mar 24..30 nobody.
    M(D30, "dau", 0), M(D30, "wau", 0), M(D30, "mau", 5), M(D30, "stickiness", 0.0),
    # D31: dave returns. MAU = Mar 2..31: erin (only Mar 1) drops out; dave is not new.
    M(D31, "dau", 1), M(D31, "wau", 1), M(D31, "mau", 4), M(D31, "new_users", 0), M(D31, "stickiness", 0.25),
    M(D31, "mau", 3, "iOS"), M(D31, "mau", 2, "Android"), M(D31, "mau", 1, "Web"),
]


def metrics_of(conn, day: date | None = None) -> dict[tuple, float]:
    where, params = ("where metric_date = ?", [day]) if day else ("", [])
    rows = conn.execute(f"select metric_date, metric, dimension, segment, value from analytics.daily_metrics {where}",
                        params).fetchall()
    return {(d, m, dim, seg): v for d, m, dim, seg, v in rows}


def compute_day(conn, day: date, config=CONFIG) -> dict:
    compute_sessions(conn, day, config)
    return compute_daily_metrics(conn, day, config)


@pytest.fixture(scope="module")
def month(tmp_path_factory):
    conn = fresh_warehouse(tmp_path_factory.mktemp("month") / "w.duckdb")
    load_journeys(conn, JOURNEYS)
    for day in DAYS:
        compute_day(conn, day)
    yield conn, metrics_of(conn)
    conn.close()


@pytest.mark.parametrize("m", EXPECTED, ids=[f"{m.day.day:02d}-{m.metric}-{m.segment}" for m in EXPECTED])
def test_metric_by_hand(month, m):
    _, got = month
    assert got[(m.day, m.metric, m.dimension, m.segment)] == pytest.approx(m.value)


@pytest.mark.parametrize("day, metric, segment", [
    (D7, "session_duration_median_s", "all"),   # no sessions: undefined, not 0
    (D7, "events_per_session", "all"),
    (D7, "event_count:Login", "all"),            # event metrics only for events seen that day
    (D2, "dau", "Web"),                          # Web is first touched on D8: not in D2's 30-day window
    (D2, "session_duration_median_s", "Web"),
])
def test_metric_is_absent(month, day, metric, segment):
    _, got = month
    dimension = "all" if segment == "all" else "platform"
    assert (day, metric, dimension, segment) not in got


def test_every_metric_for_total_and_each_configured_segment(month):
    conn, _ = month
    dims = {r[0] for r in conn.execute("select distinct dimension from analytics.daily_metrics").fetchall()}
    assert dims == {"all", "platform", "country", "channel"}
    per_segment = conn.execute(
        "select dimension, segment, list(metric order by metric) from analytics.daily_metrics "
        "where metric_date = ? and not contains(metric, ':') group by all", [D2]).fetchall()
    full = sorted(["dau", "wau", "mau", "stickiness", "new_users", "sessions", "session_duration_median_s",
                   "session_duration_mean_s", "events_per_session"])
    assert {(d, s): m for d, s, m in per_segment} == {
        ("all", "all"): full, ("platform", "iOS"): full, ("platform", "Android"): full,
        ("country", "(none)"): full, ("channel", "(none)"): full}


def test_user_days_hold_every_touched_segment(month):
    conn, _ = month
    rows = conn.execute("select user_key, events, segments['platform'] from core.user_days "
                        "where activity_date = ? order by user_key", [D2]).fetchall()
    assert rows == [("alice", 2, ["Android"]), ("bob", 3, ["Android", "iOS"])]


def test_rerun_is_idempotent(month):
    conn, before = month
    user_days = conn.execute("select * from core.user_days order by all").fetchall()
    summary = compute_day(conn, D8)
    assert metrics_of(conn) == before
    assert conn.execute("select * from core.user_days order by all").fetchall() == user_days
    assert (summary["dau"], summary["wau"], summary["mau"], summary["new_users"]) == (2, 3, 5, 1)
    assert summary["user_days_backfilled"] == 0


def test_days_materialized_out_of_order_give_the_same_numbers(tmp_path, month):
    """Day 8 first on a fresh warehouse: the user_days of Mar 1..7 are built on the way, in the same
    transaction, so WAU, MAU and new users do not depend on the order of materialization."""
    _, in_order = month
    conn = fresh_warehouse(tmp_path / "w.duckdb")
    load_journeys(conn, JOURNEYS)
    summary = compute_day(conn, D8)
    assert summary["user_days_backfilled_days"] == [(D1 + timedelta(days=i)).isoformat() for i in range(7)]
    assert metrics_of(conn, D8) == {k: v for k, v in in_order.items() if k[0] == D8}


def test_empty_warehouse_day_has_zero_totals(tmp_path):
    conn = fresh_warehouse(tmp_path / "w.duckdb")
    compute_day(conn, D1)
    assert metrics_of(conn) == {(D1, m, "all", "all"): 0.0 for m in ("dau", "wau", "mau", "new_users", "sessions")}


def test_identity_merge_days_after_the_anonymous_visit(tmp_path):
    """The device browsed anonymously on Mar 1 (metrics computed then), signed up on Mar 3: as after
    Mixpanel's retroactive merge, Mar 3 has one weekly user, not two, and nobody new."""
    conn = fresh_warehouse(tmp_path / "w.duckdb")
    load_journeys(conn, {"$device:d9": [("Page View", at(D1, "10:00"), {"$device_id": "d9"})]})
    assert compute_day(conn, D1)["new_users"] == 1
    assert conn.execute("select user_key from core.user_days").fetchall() == [("$device:d9",)]
    load_journeys(conn, {"u9": [("Sign Up", at(date(2026, 3, 3), "10:00"), {"$device_id": "d9", "$user_id": "u9"})]})
    summary = compute_day(conn, date(2026, 3, 3))
    assert (summary["dau"], summary["wau"], summary["mau"], summary["new_users"]) == (1, 1, 1, 0)


def test_metrics_need_the_days_sessions(tmp_path):
    conn = fresh_warehouse(tmp_path / "w.duckdb")
    load_journeys(conn, {"p": [("Login", at(D1, "10:00"))]})
    with pytest.raises(MetricsError, match="SESSIONS_NOT_CURRENT"):
        compute_daily_metrics(conn, D1, CONFIG)
    # Nothing of the day was written: the transaction rolled back.
    assert conn.execute("select count(*) from core.user_days").fetchall() == [(0,)]
    assert conn.execute("select count(*) from analytics.daily_metrics").fetchall() == [(0,)]
    compute_day(conn, D1)
    assert metrics_of(conn)[(D1, "dau", "all", "all")] == 1


def test_dimensions_come_from_the_config(tmp_path):
    conn = fresh_warehouse(tmp_path / "w.duckdb")
    load_journeys(conn, {"p": [("Login", at(D1, "10:00"), {"plan": "pro", "$os": "iOS"})],
                         "q": [("Login", at(D1, "11:00"), {"plan": "free"}), ("Login", at(D1, "13:00"), {"plan": "pro"})]})
    config = dataclasses.replace(CONFIG, dimensions=(Dimension("tier", "plan"),))
    compute_day(conn, D1, config)
    got = metrics_of(conn, D1)
    assert {k[2] for k in got} == {"all", "tier"}
    assert (got[(D1, "dau", "tier", "pro")], got[(D1, "dau", "tier", "free")]) == (2, 1)
    assert (got[(D1, "sessions", "tier", "pro")], got[(D1, "sessions", "tier", "free")]) == (2, 1)
    assert got[(D1, "event_count:Login", "tier", "pro")] == 2


def test_los_angeles_days(tmp_path):
    """Events are counted on their local day: 23:30 PST on Mar 1 is Mar 2 07:30 UTC."""
    conn = fresh_warehouse(tmp_path / "w.duckdb")
    load_journeys(conn, {"p": [("Login", "2026-03-01T23:30:00-08:00")], "q": [("Login", "2026-03-02T00:30:00-08:00")]})
    config = dataclasses.replace(CONFIG, timezone="America/Los_Angeles")
    compute_day(conn, D1, config)
    compute_day(conn, D2, config)
    got = metrics_of(conn)
    assert (got[(D1, "dau", "all", "all")], got[(D2, "dau", "all", "all")], got[(D2, "wau", "all", "all")]) == (1, 1, 2)


# --- Cross-check against Polars on demo data ----------------------------------------------------------

def test_dau_wau_mau_by_platform_match_polars_on_demo(tmp_path):
    end = date(2026, 3, 10)
    generate_demo(tmp_path / "export", days=10, users=800, end_date=end, seed=5)
    conn = fresh_warehouse(tmp_path / "demo.duckdb")
    for i in range(10):
        day = end - timedelta(days=9 - i)
        file = tmp_path / "export" / f"{day.isoformat()}.jsonl"
        if file.exists():
            load_day(conn, day, file, source="demo")
    rebuild_identity(conn)
    summary = compute_day(conn, end)
    assert summary["user_days_backfilled"] == 9

    events = conn.sql("""select user_key, time, coalesce(nullif(properties ->> '$."$os"', ''), '(none)') as platform
                         from core.identified_events""").pl()
    active = events.with_columns(day=pl.col("time").dt.convert_time_zone("UTC").dt.date()).select(
        "user_key", "day", "platform").unique()

    def users(first_day: date, segment: str | None = None) -> int:
        window = active.filter(pl.col("day").is_between(first_day, end))
        if segment is not None:
            window = window.filter(pl.col("platform") == segment)
        return window["user_key"].n_unique()

    got = metrics_of(conn, end)
    for segment in [None, *active["platform"].unique().to_list()]:
        key = ("all", "all") if segment is None else ("platform", segment)
        assert got[(end, "dau", *key)] == users(end, segment), segment
        assert got[(end, "wau", *key)] == users(end - timedelta(days=6), segment), segment
        assert got[(end, "mau", *key)] == users(end - timedelta(days=29), segment), segment
    assert got[(end, "dau", "all", "all")] > 100
    sessions = conn.execute("select count(*) from core.sessions where session_date = ?", [end]).fetchall()[0][0]
    assert got[(end, "sessions", "all", "all")] == sessions


def test_first_days_kept_incrementally_match_a_rebuild_from_every_user_day(tmp_path):
    """Issue 15: new users are read from core.user_first_days (each user-key/device pair and its first day),
    kept up to date as days are built, rebuilt and built out of order, not from every earlier user-day. After
    each of those, the table is row for row what a rebuild from core.user_days gives, and every day's
    new_users is the count of users with no earlier user-day, re-resolved through the identity map."""
    end = date(2026, 3, 12)
    generate_demo(tmp_path / "export", days=12, users=300, end_date=end, seed=11)
    conn = fresh_warehouse(tmp_path / "demo.duckdb")
    days = [end - timedelta(days=11 - i) for i in range(12)]
    for day in days:
        file = tmp_path / "export" / f"{day.isoformat()}.jsonl"
        if file.exists():
            load_day(conn, day, file, source="demo")
    rebuild_identity(conn)

    def check() -> None:
        kept = conn.execute("select * from core.user_first_days order by all").fetchall()
        rebuilt = conn.execute("select user_key, device_id, min(activity_date) from core.user_days "
                               "group by all order by all").fetchall()
        assert kept == rebuilt and len(kept) > 100
        expected = dict(conn.execute("""
            with resolved as (select ud.activity_date, coalesce(m.user_id, ud.user_key) as user_key
                              from core.user_days ud left join core.identity_map m on m.device_id = ud.device_id)
            select activity_date, count(distinct user_key) filter (where user_key not in (
                       select r.user_key from resolved r where r.activity_date < d.activity_date))
            from resolved d group by activity_date""").fetchall())
        got = dict(conn.execute("select metric_date, value from analytics.daily_metrics where metric = 'new_users' "
                                "and dimension = 'all'").fetchall())
        assert {d: got[d] for d in expected} == {d: float(v) for d, v in expected.items()}

    for day in days[6:]:            # out of order: day 7 first builds days 1-6 on the way
        compute_day(conn, day)
    for day in days[:6]:
        compute_day(conn, day)
    check()
    # a user whose first day was day 3 loses that day's events (the day is rebuilt without them): their first
    # day moves to a later one; another of day 3's users now shows up on day 2 first (and still on day 3)
    moved, earlier = conn.execute("""
        select (select f.user_key from core.user_first_days f where f.first_date = $d3
                and exists (select 1 from core.user_days u where u.user_key = f.user_key and u.activity_date > $d3)
                order by f.user_key limit 1),
               (select u.user_key from core.user_days u where u.activity_date = $d3 and u.events >= 2
                and u.user_key in (select user_key from core.user_first_days where first_date = $d3)
                order by u.user_key desc limit 1)
        """, {"d3": days[2]}).fetchall()[0]
    assert moved and earlier and moved != earlier
    conn.execute("delete from raw.events where distinct_id = ? and event_date = ?", [moved, days[2]])
    # one of their events a day earlier (the others stay on day 3)
    conn.execute("update raw.events set time = time - interval 1 day, event_date = event_date - 1 "
                 "where distinct_id = ? and event_date = ? and time = (select min(time) from raw.events "
                 "where distinct_id = ? and event_date = ?)", [earlier, days[2], earlier, days[2]])
    for day in (days[1], days[2]):
        compute_day(conn, day)
    first = dict(conn.execute("select user_key, first_date from core.user_first_days "
                              "where user_key in (?, ?)", [moved, earlier]).fetchall())
    assert first[moved] > days[2] and first[earlier] == days[1]
    for day in days[3:]:
        compute_day(conn, day)
    check()
