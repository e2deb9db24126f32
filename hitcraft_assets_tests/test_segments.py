"""Segment comparisons turn "this segment looks different" into a finding only when it is not noise, so
this suite pins (a) the statistics against textbook and published numbers (Fisher's tea-tasting table,
a Yates chi-square worked by hand, a two-proportion z, Cohen's h table values, Mann-Whitney U, and
Benjamini-Hochberg worked by hand), (b) which test is chosen from the expected cell counts and which
comparisons the minimum sizes leave out, and (c) compute_segments on small warehouses with planted
findings: a segment converting clearly worse is significant in the right direction, a tiny segment gives
no row, q-values are BH over the whole day, and re-running a day replaces exactly that day."""

from __future__ import annotations

import math
from datetime import date, datetime, timedelta, timezone

import numpy as np
import pytest

from hitcraft_assets.analysis import stats
from hitcraft_assets.analysis.segments import (
    MIN_SIDE_N,
    compare_proportions,
    compute_segments,
)
from hitcraft_assets.config import load_config
from hitcraft_assets_tests.journeys import fresh_warehouse, load_journeys

# ---------------------------------------------------------------------------------------------- stats


@pytest.mark.parametrize(("x1", "n1", "x2", "n2", "test"), [
    (10, 20, 10, 20, stats.Z_TEST),          # smallest expected cell exactly 10
    (45, 100, 30, 100, stats.Z_TEST),
    (9, 19, 10, 20, stats.CHI_SQUARE),       # 19 * 19 / 39 = 9.26
    (5, 10, 5, 10, stats.CHI_SQUARE),        # exactly 5
    (4, 10, 5, 10, stats.FISHER),            # 10 * 9 / 20 = 4.5
    (3, 4, 1, 4, stats.FISHER),
    (0, 30, 40, 100, stats.CHI_SQUARE),      # 30 * 40 / 130 = 9.2
    (0, 30, 4, 100, stats.FISHER),           # 30 * 4 / 130 = 0.9
])
def test_choose_proportion_test_by_smallest_expected_cell(x1, n1, x2, n2, test):
    assert stats.choose_proportion_test(x1, n1, x2, n2) == test
    assert stats.two_proportion_test(x1, n1, x2, n2)[0] == test


@pytest.mark.parametrize(("x1", "n1", "x2", "n2", "test", "statistic", "p"), [
    # Fisher's lady tasting tea, [[3, 1], [1, 3]]: p = 17/35, sample odds ratio 9
    (3, 4, 1, 4, stats.FISHER, 9.0, 17 / 35),
    # scipy's documented example [[6, 2], [1, 4]]: p = 0.1026 (= 4/39), odds ratio 12
    (6, 8, 1, 5, stats.FISHER, 12.0, 4 / 39),
    # [[0, 10], [5, 5]]: odds ratio 0; the two tails are symmetric, p = 2 * C(10,5)/C(20,5)
    (0, 10, 5, 10, stats.FISHER, 0.0, 2 * math.comb(10, 5) / math.comb(20, 5)),
    # [[5, 0], [5, 5]]: odds ratio infinite (stored as null); hypergeometric tables as unlikely as the
    # observed one (1, 50 and 252 of 3003): p = 303/3003
    (5, 5, 5, 10, stats.FISHER, None, 303 / 3003),
    # [[12, 18], [5, 25]]: Yates chi2 = N(|ad - bc| - N/2)^2 / (r1 r2 c1 c2) = 60 * 180^2 / 657900
    (12, 30, 5, 30, stats.CHI_SQUARE, 60 * 180 ** 2 / 657900, 0.08564),
    # 45% vs 30% of 100: pooled 0.375, z = 0.15 / sqrt(0.375 * 0.625 * 0.02) = 2.1909, p = 0.02846
    (45, 100, 30, 100, stats.Z_TEST, 2.19089, 0.02846),
    (30, 100, 45, 100, stats.Z_TEST, -2.19089, 0.02846),
    (50, 100, 50, 100, stats.Z_TEST, 0.0, 1.0),
])
def test_two_proportion_test_known_values(x1, n1, x2, n2, test, statistic, p):
    got_test, got_statistic, got_p = stats.two_proportion_test(x1, n1, x2, n2)
    assert got_test == test
    assert got_statistic == (None if statistic is None else pytest.approx(statistic, abs=1e-4))
    assert got_p == pytest.approx(p, abs=5e-5)


@pytest.mark.parametrize(("x1", "n1", "x2", "n2"), [(5, 4, 1, 4), (-1, 4, 1, 4), (0, 0, 1, 4)])
def test_two_proportion_test_rejects_impossible_counts(x1, n1, x2, n2):
    with pytest.raises(ValueError, match="STATS_COUNTS"):
        stats.two_proportion_test(x1, n1, x2, n2)


@pytest.mark.parametrize(("p1", "p2", "h"), [
    (0.5, 0.5, 0.0),
    (1.0, 0.0, math.pi),
    (0.45, 0.30, 0.3113),   # Cohen (1988) table: phi(0.45) = 1.4706, phi(0.30) = 1.1593
    (0.30, 0.45, -0.3113),
    (0.10, 0.12, -0.0640),  # phi(0.10) = 0.6435, phi(0.12) = 0.7075
])
def test_cohens_h(p1, p2, h):
    assert stats.cohens_h(p1, p2) == pytest.approx(h, abs=1e-4)


def test_cohens_h_rejects_a_rate_above_one():
    with pytest.raises(ValueError, match="STATS_PROPORTION"):
        stats.cohens_h(1.2, 0.5)


@pytest.mark.parametrize(("a", "b", "u", "p", "r"), [
    # complete separation, 3 vs 3, exact: 2 of the C(6,3) = 20 arrangements are as extreme
    ([1, 2, 3], [4, 5, 6], 0.0, 0.1, -1.0),
    ([4, 5, 6], [1, 2, 3], 9.0, 0.1, 1.0),
    # U counts the pairs where a wins: 3 + 4 + 2 + 4 + 4 = 17 of 20; exact two-sided p = 2 * 7/126
    ([19, 22, 16, 29, 24], [20, 11, 17, 12], 17.0, 14 / 126, 0.7),
    # identical samples: U = n_a n_b / 2, no evidence at all
    ([1.0] * 40, [1.0] * 40, 800.0, 1.0, 0.0),
])
def test_mann_whitney_known_values(a, b, u, p, r):
    got_u, got_p, got_r = stats.mann_whitney(a, b)
    assert got_u == pytest.approx(u)
    assert got_p == pytest.approx(p, abs=1e-9)
    assert got_r == pytest.approx(r)


def test_mann_whitney_needs_both_sides():
    with pytest.raises(ValueError, match="STATS_EMPTY"):
        stats.mann_whitney([], [1.0])


@pytest.mark.parametrize(("pvalues", "qvalues"), [
    # by hand: sorted 0.005, 0.01, 0.03, 0.04 -> p*m/rank = 0.02, 0.02, 0.04, 0.04 (then running minimum
    # from the largest p down), back in input order
    ([0.01, 0.04, 0.03, 0.005], [0.02, 0.04, 0.04, 0.02]),
    # scipy's documented example
    ([0.5, 0.6, 0.1, 0.001], [0.6, 0.6, 0.2, 0.004]),
    # a larger p can pull a smaller one's q down to its own: 0.04*2/2 = 0.04 < 0.03*2/1 = 0.06
    ([0.03, 0.04], [0.04, 0.04]),
    ([0.2, 0.9, 0.9], [0.6, 0.9, 0.9]),
    ([0.3], [0.3]),
    ([], []),
])
def test_benjamini_hochberg_by_hand(pvalues, qvalues):
    assert stats.benjamini_hochberg(pvalues).tolist() == pytest.approx(qvalues)


def test_benjamini_hochberg_rejects_nan():
    with pytest.raises(ValueError, match="STATS_PVALUE"):
        stats.benjamini_hochberg([0.1, float("nan")])


@pytest.mark.parametrize(("x1", "n1", "x2", "n2", "compared"), [
    (1, 8, 50, 100, True),                  # a segment of 8 users: Fisher's exact test judges it
    (10, 100, 0, 3, True),                  # a rest of 3
    (0, 0, 50, 100, False),                 # nobody in the segment
    (0, 30, 4, 100, False),                 # 4 successes in all: nothing to compare
    (30, 30, 96, 100, False),               # 4 failures in all
    (0, 30, 40, 100, True),                 # a segment at 0%: the strongest finding, kept
])
def test_compare_proportions_minimum_sizes(x1, n1, x2, n2, compared):
    got = compare_proportions("m", "d", "s", x1, n1, x2, n2)
    assert (got is not None) == compared
    if got:
        assert got.effect == pytest.approx(x1 / n1 - x2 / n2)
        assert got.effect_size == pytest.approx(stats.cohens_h(x1 / n1, x2 / n2))

# ------------------------------------------------------------------------------------ the warehouse


DAY = date(2026, 3, 23)
STEP2 = "funnel:Music Production:step2"
STEP3 = "funnel:Music Production:step3"
COHORT = DAY - timedelta(days=1)

# (dimension, segment) -> users at steps 1, 2, 3 within one day of entry, of the funnel cohort of COHORT (the
# day before DAY: its first-day conversion is final by the end of DAY). Android converts to step 2 at 40%
# against 68.6% for the rest; Linux is tiny; US and DE convert alike.
FUNNEL = {
    ("all", "all"): (1000, 600, 500),
    ("platform", "Android"): (300, 120, 90),
    ("platform", "iOS"): (690, 475, 406),
    ("platform", "Linux"): (10, 5, 4),
    ("country", "US"): (500, 300, 250),
    ("country", "DE"): (500, 300, 250),
}


def insert_funnel(conn, day: date = COHORT) -> None:
    conn.execute("""create table if not exists analytics.funnel_steps (
        funnel varchar, cohort_date date, dimension varchar, segment varchar, step integer,
        step_event varchar, users bigint, conversion_from_prev double, conversion_from_start double,
        median_seconds_from_prev double, users_1d bigint)""")
    events = ["Production Started", "Sketch Uploaded", "Production Completed"]
    rows = []
    for (dim, seg), users in FUNNEL.items():
        for k, n in enumerate(users, start=1):
            prev = users[k - 2] if k > 1 else None
            late = 7 if k > 1 else 0     # 7 more reach the step after their first day: not compared
            rows.append(("Music Production", day, dim, seg, k, events[k - 1], n + late,
                         (n + late) / prev if prev else None, (n + late) / users[0], None, n))
    conn.executemany("insert into analytics.funnel_steps values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)


def insert_sessions(conn, day: date = DAY) -> None:
    """40 Android sessions of 60..99 s, 40 iOS of 200..239 s, 5 Linux of 150 s."""
    conn.execute("""create table if not exists core.sessions (
        session_id varchar, user_key varchar, session_date date, session_start timestamptz,
        duration_s double, event_count integer, segments map(varchar, varchar))""")
    conn.execute("""
        insert into core.sessions
        select 's' || i, 'u' || i, $day::date, $day::date::timestamptz, d, 3, map {'platform': p}
        from (select i, 60 + i as d, 'Android' as p from range(40) t(i)
              union all select 100 + i, 200 + i, 'iOS' from range(40) t(i)
              union all select 200 + i, 150, 'Linux' from range(5) t(i))""", {"day": day.isoformat()})


def ts(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=timezone.utc)


def retention_and_activity_journeys() -> dict:
    """Week 1 of DAY covers births on 3..9 March. iOS: 32 of 40 come back on day 8; Android: 6 of 40;
    Linux: 1 of 3. On DAY itself, 40 tiktok users send 2 events each, 40 youtube users 8, 2 google users 5,
    and one user 3 with an empty utm_source (segment '(none)')."""
    journeys = {}
    for os_name, born, n, back in (("iOS", date(2026, 3, 4), 40, 32), ("Android", date(2026, 3, 5), 40, 6),
                                   ("Linux", date(2026, 3, 6), 3, 1)):
        for i in range(n):
            steps = [("Sign Up", ts(born, 10, i), {"$os": os_name})]
            if i < back:
                steps.append(("Play", ts(born + timedelta(days=8), 10, i)))
            journeys[f"{os_name}-{i}"] = steps
    for channel, n, events in (("tiktok", 40, 2), ("youtube", 40, 8), ("google", 2, 5), ("", 1, 3)):
        for i in range(n):
            journeys[f"{channel or 'blank'}-{i}"] = [("Play", ts(DAY, 9, i) + timedelta(seconds=s), {"utm_source": channel})
                                          for s in range(events)]
    return journeys


def rows_of(conn, day: date = DAY) -> dict[tuple[str, str, str], dict]:
    cur = conn.execute("select * from analytics.segment_comparisons where metric_date = ?", [day])
    names = [d[0] for d in cur.description]
    out = {}
    for values in cur.fetchall():
        row = dict(zip(names, values))
        out[(row["metric"], row["dimension"], row["segment"])] = row
    return out


@pytest.fixture
def conn(tmp_path):
    c = fresh_warehouse(tmp_path / "w.duckdb")
    yield c
    c.close()


@pytest.fixture
def loaded(conn):
    load_journeys(conn, retention_and_activity_journeys())
    insert_funnel(conn)
    insert_sessions(conn)
    return conn


def test_a_segment_converting_worse_is_significant_in_the_right_direction(loaded):
    meta = compute_segments(loaded, DAY, load_config())
    rows = rows_of(loaded)
    android = rows[(STEP2, "platform", "Android")]
    assert (android["segment_n"], android["rest_n"]) == (300, 700)
    assert android["segment_value"] == pytest.approx(0.4)
    assert android["rest_value"] == pytest.approx(480 / 700)
    assert android["effect"] == pytest.approx(0.4 - 480 / 700)
    assert android["effect_size"] == pytest.approx(stats.cohens_h(0.4, 480 / 700))
    assert android["test"] == stats.Z_TEST and android["statistic"] < -8
    assert android["p_value"] == pytest.approx(stats.two_proportion_test(120, 300, 480, 700)[2])
    assert android["significant"] and android["q_value"] < 1e-10
    # the other side of the same split: iOS converts better
    ios = rows[(STEP2, "platform", "iOS")]
    assert ios["effect"] > 0 and ios["significant"]
    # step 3 counts from step 2: Android 90 of 120 against 410 of 480
    step3 = rows[(STEP3, "platform", "Android")]
    assert (step3["segment_n"], step3["rest_n"]) == (120, 480)
    assert step3["segment_value"] == pytest.approx(0.75) and step3["rest_value"] == pytest.approx(410 / 480)
    # US and DE convert alike: compared, not significant
    for seg in ("US", "DE"):
        assert rows[(STEP2, "country", seg)]["p_value"] == pytest.approx(1.0)
        assert not rows[(STEP2, "country", seg)]["significant"]
    assert meta["rows"] == len(rows) and meta["significant"] == sum(r["significant"] for r in rows.values())
    assert meta["skipped"] == {}
    assert len(meta["top_findings"]) == 5 and all(" vs " in line for line in meta["top_findings"])


def test_tiny_segments_are_judged_exactly_and_single_segment_dimensions_give_no_rows(loaded):
    compute_segments(loaded, DAY, load_config())
    rows = rows_of(loaded)
    # a handful of Linux users: their proportions are compared by Fisher's exact test (not significant on so
    # little), never by a rank test's normal approximation
    tiny = {k: r for k, r in rows.items() if k[2] == "Linux"}
    assert tiny and all(r["test"] == stats.FISHER and not r["significant"] for r in tiny.values())
    assert min(r["segment_n"] for r in tiny.values()) == 3
    assert not [k for k in tiny if k[0] in ("session_duration_s", "events_per_user")]
    assert not [k for k in rows if k[2] in ("google", "(none)", "")]
    # every retention user lacks a country: one segment, no rest to compare with
    assert not [k for k in rows if k[0] == "week1_retention" and k[1] != "platform"]
    assert {k for k in rows if k[0] == "week1_retention"} == {
        ("week1_retention", "platform", "iOS"), ("week1_retention", "platform", "Android"),
        ("week1_retention", "platform", "Linux")}


def test_retention_sessions_and_events_per_user(loaded):
    # an export file may hold events up to the time tolerance outside its UTC day: one youtube user's
    # events of DAY stored with the previous day's partition still count for DAY
    loaded.execute("update raw.events set event_date = event_date - 1 where distinct_id = 'youtube-0'")
    compute_segments(loaded, DAY, load_config())
    rows = rows_of(loaded)
    ios = rows[("week1_retention", "platform", "iOS")]
    assert (ios["segment_n"], ios["rest_n"]) == (40, 43)
    assert ios["segment_value"] == pytest.approx(32 / 40) and ios["rest_value"] == pytest.approx(7 / 43)
    assert ios["significant"] and ios["effect"] > 0
    assert ios["test"] == stats.choose_proportion_test(32, 40, 7, 43)

    short = rows[("session_duration_s", "platform", "Android")]
    assert (short["segment_n"], short["rest_n"]) == (40, 45)
    assert short["test"] == stats.MANN_WHITNEY and short["statistic"] == 0.0
    assert short["effect_size"] == pytest.approx(-1.0)     # every Android session is shorter
    assert short["segment_value"] == pytest.approx(79.5)
    assert short["rest_value"] == pytest.approx((sum(range(200, 240)) + 5 * 150) / 45)
    assert short["significant"]

    light = rows[("events_per_user", "channel", "tiktok")]
    assert (light["segment_n"], light["rest_n"]) == (40, 43)
    assert light["segment_value"] == pytest.approx(2.0)
    assert light["rest_value"] == pytest.approx((40 * 8 + 2 * 5 + 3) / 43)
    assert light["effect_size"] == pytest.approx(-1.0) and light["significant"]


def test_q_values_are_benjamini_hochberg_over_the_whole_day(loaded):
    compute_segments(loaded, DAY, load_config())
    rows = sorted(rows_of(loaded).values(), key=lambda r: (r["p_value"], r["q_value"]))
    metrics = {r["metric"] for r in rows}
    assert {STEP2, STEP3, "week1_retention", "session_duration_s", "events_per_user"} <= metrics
    p = np.array([r["p_value"] for r in rows])
    q = np.array([r["q_value"] for r in rows])
    assert (q >= p - 1e-15).all()
    assert (np.diff(q) >= -1e-15).all()          # monotone in p
    assert q == pytest.approx(stats.benjamini_hochberg(p))   # one family: every metric of the day
    assert [r["significant"] for r in rows] == [bool(x < 0.05) for x in q]


def test_rerun_replaces_only_its_day(loaded):
    config = load_config()
    compute_segments(loaded, DAY, config)
    next_day = compute_segments(loaded, DAY + timedelta(days=1), config)
    assert next_day["rows"] > 0      # week-1 cohorts of the next day still hold the iOS/Android users
    first = rows_of(loaded)
    compute_segments(loaded, DAY, config)
    assert rows_of(loaded) == first
    count = loaded.execute("select count(*) from analytics.segment_comparisons").fetchall()[0][0]
    assert count == len(first) + next_day["rows"]


def test_an_empty_warehouse_gives_no_rows(conn):
    meta = compute_segments(conn, DAY, load_config())
    assert meta["rows"] == 0 and meta["top_findings"] == []
    assert conn.execute("select count(*) from analytics.segment_comparisons").fetchall() == [(0,)]


def test_missing_inputs_are_skipped(conn):
    load_journeys(conn, retention_and_activity_journeys())
    meta = compute_segments(conn, DAY, load_config())
    assert set(meta["skipped"]) == {"funnels", "session_duration_s"}
    assert set(meta["comparisons_by_metric"]) == {"week1_retention", "events_per_user"}
    # a funnel table without rows for yesterday's cohort gives no funnel rows: only that cohort is compared
    insert_funnel(conn, day=DAY - timedelta(days=2))
    meta = compute_segments(conn, DAY, load_config())
    assert "funnels" not in meta["skipped"] and "funnel steps" not in meta["comparisons_by_metric"]


def test_session_length_compares_users_not_sessions(conn):
    """One Android user with 60 long sessions does not make Android's session length significant: users are
    the units (a user's sessions are not independent samples). Counted per session, the same data would be
    (95 Android sessions, 60 of them long, against 40 iOS)."""
    conn.execute("""create table if not exists core.sessions (
        session_id varchar, user_key varchar, session_date date, session_start timestamptz,
        duration_s double, event_count integer, segments map(varchar, varchar))""")
    conn.execute("""
        insert into core.sessions
        select 's' || i, u, $day::date, $day::date::timestamptz, d, 3, map {'platform': p}
        from (select i, 'a' || i as u, 100 + i % 7 as d, 'Android' as p from range(35) t(i)
              union all select 100 + i, 'heavy', 1000 + i, 'Android' from range(60) t(i)
              union all select 200 + i, 'i' || i, 100 + i % 7, 'iOS' from range(40) t(i))""",
                 {"day": DAY.isoformat()})
    compute_segments(conn, DAY, load_config())
    n, rest_n, value, significant = conn.execute(
        "select segment_n, rest_n, segment_value, significant from analytics.segment_comparisons "
        "where metric = 'session_duration_s' and dimension = 'platform' and segment = 'Android'").fetchall()[0]
    assert (n, rest_n) == (36, 40)
    assert value == pytest.approx((sum(100 + i % 7 for i in range(35)) + sum(1000 + i for i in range(60)) / 60) / 36)
    assert not significant
    # per session it would have been: the same test on the 95 sessions against the 40
    android = [100 + i % 7 for i in range(35)] + [1000 + i for i in range(60)]
    ios = [100 + i % 7 for i in range(40)]
    assert stats.mann_whitney(android, ios)[1] < 1e-6
