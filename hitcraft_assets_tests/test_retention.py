"""Cohort retention must match Mixpanel's Retention report, so each of its semantics is pinned here on
declarative journeys with hand-computed matrices: rolling weeks from each user's birth (day 6 vs day 7),
"on" vs "on or after", users without a birth event left out, identity merge, incomplete buckets, cohort
weeks in a non-UTC reporting timezone, and the week-1-by-segment figures the segment comparisons use."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import date

import pytest

from hitcraft_assets.analysis.retention import (
    NOT_SET,
    SegmentRetention,
    compute_retention,
    week1_retention_by_segment,
)
from hitcraft_assets.config import load_config
from hitcraft_assets_tests.journeys import fresh_warehouse, load_journeys


@dataclass(frozen=True)
class Cell:
    cohort_week: date
    weeks_since: int
    measure: str
    cohort_size: int
    retained: int
    complete: bool


def config(tz: str = "UTC", birth_event: str | None = "Sign Up", return_event: str | None = None):
    return dataclasses.replace(load_config(), timezone=tz,
                               retention={"birth_event": birth_event, "return_event": return_event})


def matrix(conn) -> set[Cell]:
    rows = conn.execute(
        "select cohort_week, weeks_since, measure, cohort_size, retained_users, retention_rate, complete "
        "from analytics.retention").fetchall()
    for _, _, _, size, retained, rate, _ in rows:
        assert rate == pytest.approx(retained / size)
    return {Cell(w, n, m, s, r, c) for w, n, m, s, r, _, c in rows}


def cells(week: date, size: int, on: list[int], on_or_after: list[int], complete_until: int) -> set[Cell]:
    """Rows of one cohort: retained counts for weeks 0..len-1, complete for weeks <= complete_until."""
    out = set()
    for measure, counts in (("on", on), ("on_or_after", on_or_after)):
        for n, retained in enumerate(counts):
            out.add(Cell(week, n, measure, size, retained, n <= complete_until))
    return out


# Mon 2 March 2026 starts the first cohort week (UTC). u1 comes back 6 days 23:59 after birth (still week
# 0) and again exactly 14 days after (week 2); u2 exactly 7 days after (week 1); u3 never; u4 never signs
# up; u5 was active before signing up on 9 March (birth is the Sign Up) and returns 21 days 1 hour later.
JOURNEYS = {
    "u1": [("Sign Up", "2026-03-02T10:00:00+00:00"), ("Play", "2026-03-09T09:59:00+00:00"),
           ("Play", "2026-03-16T10:00:00+00:00")],
    "u2": [("Sign Up", "2026-03-03T12:00:00+00:00"), ("Play", "2026-03-10T12:00:00+00:00")],
    "u3": [("Sign Up", "2026-03-04T08:00:00+00:00")],
    "u4": [("Play", "2026-03-02T09:00:00+00:00"), ("Play", "2026-03-12T09:00:00+00:00")],
    "u5": [("Play", "2026-03-01T09:00:00+00:00"), ("Sign Up", "2026-03-09T09:00:00+00:00"),
           ("Play", "2026-03-30T10:00:00+00:00")],
}
# Data ends with 30 March (UTC), so the cutoff is 31 March 00:00 UTC. Cohort of 2 March: u1, u2, u3; the
# last born (u3, 4 March 08:00) finishes week N at 4 March + 7(N+1) days, so weeks 0-2 are complete;
# week 4 has begun for u1 (30 March 10:00), week 5 for nobody. Cohort of 9 March: u5 alone, weeks 0-3
# begun, 0-2 complete (week 2 ends 30 March 09:00).
EXPECTED = (
    cells(date(2026, 3, 2), 3, on=[3, 1, 1, 0, 0], on_or_after=[3, 2, 1, 0, 0], complete_until=2)
    | cells(date(2026, 3, 9), 1, on=[1, 0, 0, 1], on_or_after=[1, 1, 1, 1], complete_until=2)
)


@pytest.fixture
def conn(tmp_path):
    c = fresh_warehouse(tmp_path / "w.duckdb")
    yield c
    c.close()


@pytest.mark.parametrize("as_of", [None, date(2026, 3, 30), date(2026, 4, 15)])
def test_rolling_weeks_on_and_on_or_after(conn, as_of):
    """as_of past the data is capped at the data horizon: buckets are never complete beyond the data."""
    load_journeys(conn, JOURNEYS)
    meta = compute_retention(conn, config(), as_of=as_of)
    assert matrix(conn) == EXPECTED
    assert meta["cohorts"] == 2 and meta["users"] == 4 and meta["rows"] == len(EXPECTED)
    assert meta["cutoff"] == "2026-03-31T00:00:00+00:00"
    # users-weighted week 1 'on or after' over complete cohorts: (2 + 1) / (3 + 1)
    assert meta["week1_on_or_after_complete"] == pytest.approx(0.75)


def test_as_of_ignores_later_events_and_marks_buckets_incomplete(conn):
    load_journeys(conn, JOURNEYS)
    compute_retention(conn, config(), as_of=date(2026, 3, 15))
    # cutoff 16 March 00:00: u1's return on the 16th is not seen, u5's cohort has week 0 only, and the
    # 2 March cohort's week 1 ends for u3 on 18 March 08:00.
    assert matrix(conn) == (
        cells(date(2026, 3, 2), 3, on=[3, 1], on_or_after=[3, 1], complete_until=0)
        | cells(date(2026, 3, 9), 1, on=[1], on_or_after=[1], complete_until=-1)
    )


def test_birth_and_return_events_are_configurable(conn):
    load_journeys(conn, JOURNEYS)
    compute_retention(conn, config(birth_event=None, return_event="Play"), weeks=2)
    got = matrix(conn)
    # Any event is a birth: u4 (first seen Mon 2 March 09:00) joins u1, u2 and u3; u5's first event is on
    # Sunday 1 March, so u5 alone forms the cohort of 23 February. Only Play counts as a return: u4's Play
    # of 12 March (10 days) is week 1; u5's only later Play (30 March 10:00, 29 days) is week 4, so it is
    # retained "on or after" weeks 1 and 2 but "on" neither.
    assert got == (
        cells(date(2026, 3, 2), 4, on=[4, 2, 1], on_or_after=[4, 3, 1], complete_until=2)
        | cells(date(2026, 2, 23), 1, on=[1, 0, 0], on_or_after=[1, 1, 1], complete_until=2)
    )


def test_identity_merge_counts_a_person_once(conn):
    device = {"distinct_id": "$device:D1", "$device_id": "D1"}
    load_journeys(conn, {
        "U1": [("Page View", "2026-03-01T23:00:00+00:00", device),
               ("Sign Up", "2026-03-02T10:00:00+00:00", {"$device_id": "D1", "$user_id": "U1"}),
               ("Play", "2026-03-10T10:00:00+00:00", device)],   # anonymous again, same device: week 1
        "U2": [("Sign Up", "2026-03-03T10:00:00+00:00"), ("Play", "2026-03-20T10:00:00+00:00")],
    })
    compute_retention(conn, config(), weeks=2)
    # cutoff 21 March 00:00; last birth 3 March 10:00 ends week 1 on 17 March, week 2 on 24 March
    assert matrix(conn) == cells(date(2026, 3, 2), 2, on=[2, 1, 1], on_or_after=[2, 2, 1], complete_until=1)
    compute_retention(conn, config(birth_event=None), weeks=2)
    # birth = the anonymous Page View (Sunday 1 March 23:00): U1 is one user in the cohort of 23 February
    assert {c.cohort_size for c in matrix(conn) if c.cohort_week == date(2026, 2, 23)} == {1}


def test_cohort_weeks_and_completeness_in_the_reporting_timezone(conn):
    # Los Angeles is on PDT (UTC-7) from 8 March 2026. A: 8 March 22:00 local, a Sunday -> cohort of
    # 2 March (in UTC it would be 9 March). B: Monday 9 March 01:00 local -> cohort of 9 March.
    load_journeys(conn, {
        "A": [("Sign Up", "2026-03-09T05:00:00+00:00"), ("Play", "2026-03-17T00:00:00+00:00")],
        "B": [("Sign Up", "2026-03-09T08:00:00+00:00"), ("Play", "2026-03-20T12:00:00+00:00")],
    })
    compute_retention(conn, config(tz="America/Los_Angeles"), as_of=date(2026, 3, 15))
    # cutoff: end of 15 March local = 16 March 07:00 UTC. A's week 0 ended 16 March 05:00 (complete); A's
    # week 1 has begun but its Play (17 March) is after the cutoff. The 9 March cohort week ended 16 March
    # 07:00 UTC, but B's week 0 only ends at 08:00: incomplete.
    assert matrix(conn) == (
        cells(date(2026, 3, 2), 1, on=[1, 0], on_or_after=[1, 0], complete_until=0)
        | cells(date(2026, 3, 9), 1, on=[1], on_or_after=[1], complete_until=-1)
    )


def test_rerun_replaces_the_table_and_an_empty_warehouse_gives_no_rows(conn):
    meta = compute_retention(conn, config())
    assert meta["rows"] == 0 and meta["cutoff"] is None
    load_journeys(conn, JOURNEYS)
    compute_retention(conn, config())
    compute_retention(conn, config())
    assert matrix(conn) == EXPECTED
    assert conn.execute("select count(*) from analytics.retention").fetchall()[0][0] == len(EXPECTED)


def test_weeks_must_be_positive(conn):
    with pytest.raises(ValueError, match="RETENTION_WEEKS"):
        compute_retention(conn, config(), weeks=0)


def test_week1_retention_by_segment(conn):
    # day 23 March: births on 3..9 March count (their week 1 is over by the end of the 23rd)
    load_journeys(conn, {
        "a": [("Sign Up", "2026-03-03T00:30:00+00:00", {"$os": "iOS"}),
              ("Play", "2026-03-10T00:30:00+00:00")],                       # exactly 7 days: retained
        "b": [("Sign Up", "2026-03-09T23:00:00+00:00", {"$os": "Android"}),
              ("Play", "2026-03-16T22:59:00+00:00"),                          # 6 d 23:59: week 0
              ("Play", "2026-03-23T23:00:00+00:00")],                         # 14 days: week 2
        "c": [("Sign Up", "2026-03-02T12:00:00+00:00", {"$os": "iOS"}),
              ("Play", "2026-03-10T12:00:00+00:00")],                         # born too early
        "d": [("Sign Up", "2026-03-10T01:00:00+00:00", {"$os": "iOS"})],      # born too late
        "e": [("Sign Up", "2026-03-05T10:00:00+00:00"),                       # no $os on the birth event
              ("Play", "2026-03-18T09:59:00+00:00", {"$os": "iOS"})],         # 12 d 23:59: retained
        "f": [("Play", "2026-03-01T10:00:00+00:00", {"$os": "Android"}),
              ("Sign Up", "2026-03-04T10:00:00+00:00", {"$os": "iOS", "mp_country_code": "DE"})],
        "g": [("Sign Up", "2026-03-06T10:00:00+00:00", {"$os": ""})],           # empty counts as missing
    })
    got = set(week1_retention_by_segment(conn, date(2026, 3, 23), config()))
    assert {r for r in got if r.dimension == "platform"} == {
        SegmentRetention("platform", "iOS", 2, 1),          # a (retained), f
        SegmentRetention("platform", "Android", 1, 0),      # b
        SegmentRetention("platform", NOT_SET, 2, 1),        # e (retained), g
    }
    assert {r for r in got if r.dimension == "country"} == {
        SegmentRetention("country", "DE", 1, 0), SegmentRetention("country", NOT_SET, 4, 2)}


def test_the_kept_day_summaries_give_the_matrix_of_every_event(conn):
    """Issue 15: retention reads each UTC day once into a summary (per day and ids: first and last birth and
    return event) rather than every event every run. A day's returns that straddle a week boundary count in
    both weeks (the two ends of the day), and an event of the last day's file past the cutoff (within the
    loader's time tolerance) is not seen, as from the events; for every config and as-of tried, the matrix
    equals the one computed from every event, row for row."""
    load_journeys(conn, {
        "S": [("Sign Up", "2026-03-02T10:00:00+00:00"),
              ("Play", "2026-03-09T09:00:00+00:00"), ("Play", "2026-03-09T11:00:00+00:00"),   # weeks 0 and 1
              ("Play", "2026-03-16T09:30:00+00:00"), ("Play", "2026-03-16T10:30:00+00:00")],  # weeks 1 and 2
        "T": [("Sign Up", "2026-03-13T23:00:00+00:00")],
        "X": [("Play", "2026-03-20T12:00:00+00:00")],
    })
    # T's return 7 days and 70 minutes after birth, in the file of 20 March: past the cutoff (21 March 00:00)
    conn.execute("insert into raw.events values (date '2026-03-20', 'Play', 'T', timestamptz '2026-03-21 00:10:00+00', "
                 "'late-1', null, null, '{}', now())")
    compute_retention(conn, config(), weeks=3)
    got = {(c.cohort_week, c.weeks_since, c.measure): c.retained for c in matrix(conn)}
    assert [got[(date(2026, 3, 2), n, "on")] for n in range(3)] == [1, 1, 1]
    assert got[(date(2026, 3, 9), 1, "on")] == 0
    for cfg, as_of in [(config(), None), (config(), date(2026, 3, 9)), (config(birth_event=None), None),
                       (config(birth_event=None, return_event="Play"), date(2026, 3, 16)),
                       (config(tz="America/Los_Angeles"), None)]:
        compute_retention(conn, cfg, as_of=as_of, weeks=3)
        kept = matrix(conn)
        compute_retention(conn, cfg, as_of=as_of, weeks=3, from_events=True)
        assert kept == matrix(conn) != set(), (cfg.retention, as_of)
