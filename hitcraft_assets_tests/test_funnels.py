"""compute_funnels must count funnels the way Mixpanel does (uniques, ordered, window from step 1, the
2-second grace, exclusions, hold-constant, breakdowns, identity merge, local reporting days), because the
insight stage compares our numbers with what a product team sees in Mixpanel.

Declarative journeys (`person -> [(event, timestamp, properties)]`, PostHog style) go into a real DuckDB
file; each case states the expected users and times per step, computed by hand in its comments. A second
test runs an independent plain-Python/Polars implementation of the same rules over a simulated demo
product and requires the SQL to agree on every funnel, step, dimension and segment.
"""

from __future__ import annotations

import dataclasses
import json
import random
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import polars as pl
import pytest

from hitcraft_assets.analysis.funnels import compute_funnels
from hitcraft_assets.analysis.identity import rebuild_identity
from hitcraft_assets.config import ConfigError, Dimension, Funnel, ProductConfig, load_config
from hitcraft_assets.demo.simulator import generate_demo
from hitcraft_assets.ingestion.loader import load_day
from hitcraft_assets_tests.conftest import event_line, ms, write_day
from hitcraft_assets_tests.journeys import fresh_warehouse, load_journeys

PS, SU, PC = "Production Started", "Sketch Uploaded", "Production Completed"
DAY = date(2026, 3, 2)
PRODUCTION = Funnel("Music Production", (PS, SU, PC))
PLATFORM, COUNTRY = Dimension("platform", "$os"), Dimension("country", "mp_country_code")
ALL = ("all", "all")
DAY_S = 86_400


def at(clock: str, day: str = "2026-03-02") -> str:
    return f"{day}T{clock}+00:00"


def product_config(*funnels: Funnel, tz: str = "UTC", dimensions: tuple[Dimension, ...] = ()) -> ProductConfig:
    return ProductConfig(path=Path("test.yaml"), product={"name": "test"}, timezone=tz, session_timeout_minutes=30,
                         time_tolerance_minutes=60, dimensions=dimensions, funnels=funnels, retention={})


@dataclass(frozen=True)
class Step:
    users: int
    median_s: float | None = None
    mean_s: float | None = None


@dataclass(frozen=True)
class Case:
    name: str
    journeys: dict
    expected: dict  # (dimension, segment) -> tuple[Step, ...]; {} when nobody entered
    funnel: Funnel = PRODUCTION
    day: date = DAY
    tz: str = "UTC"
    dimensions: tuple[Dimension, ...] = ()


@pytest.fixture
def conn(tmp_path):
    connection = fresh_warehouse(tmp_path / "warehouse.duckdb")
    yield connection
    connection.close()


def funnel_rows(conn, funnel: str, day: date) -> list[tuple]:
    return conn.execute(
        "select dimension, segment, step, step_event, users, conversion_from_prev, conversion_from_start, "
        "median_seconds_from_prev, mean_seconds_from_prev from analytics.funnel_steps "
        "where funnel = ? and cohort_date = ? order by dimension, segment, step", [funnel, day]).fetchall()


def observed(conn, funnel: str, day: date) -> dict:
    steps = defaultdict(list)
    for dim, seg, _step, _event, users, _cp, _cs, median, mean in funnel_rows(conn, funnel, day):
        steps[(dim, seg)].append(Step(users, None if median is None else round(median, 6),
                                      None if mean is None else round(mean, 6)))
    return {key: tuple(value) for key, value in steps.items()}


YESTERDAY_JOURNEYS = {
    "u1": [(PS, at("20:00:00", "2026-03-01")), (PS, at("09:00:00")), (SU, at("09:05:00"))],
    "u2": [(PS, at("20:00:00", "2026-03-01")), (SU, at("09:00:00"))],
    "u3": [(PS, at("09:00:00", "2026-03-01")), (PS, at("10:00:00")), (SU, at("11:00:00", "2026-03-08"))],
}
LA_JOURNEYS = {
    "u1": [(PS, "2026-03-02T06:00:00+00:00"), (SU, "2026-03-02T06:30:00+00:00")],  # 03-01 22:00 PST
    "u2": [(PS, "2026-03-02T08:00:00+00:00"), (SU, "2026-03-02T08:00:30+00:00")],  # 03-02 00:00 PST
    "u3": [(PS, "2026-03-01T07:59:59+00:00"), (SU, "2026-03-01T08:10:00+00:00")],  # 02-28 23:59:59 PST
    "u4": [(PS, "2026-03-01T08:00:00+00:00")],                                      # 03-01 00:00 PST
}

CASES = [
    Case("basic_order", {
        "u1": [(PS, at("09:00:00")), (SU, at("09:01:00")), (PC, at("09:21:00"))],
        "u2": [(PS, at("10:00:00")), (SU, at("10:02:00"))],
        "u3": [(PS, at("11:00:00")), ("Page View", at("11:05:00")), (SU, at("11:10:00"))],
        "u4": [(PS, at("12:00:00"))],
    }, {ALL: (Step(4), Step(3, 120, 260), Step(1, 1200, 1200))}),  # step 2: 60, 120, 600 s
    Case("out_of_order_steps_do_not_count", {
        "u1": [(PS, at("09:00:00")), (PC, at("09:05:00")), (SU, at("09:10:00"))],  # PC before SU: step 2 only
        "u2": [(SU, at("08:00:00")), (PS, at("09:00:00"))],                        # SU an hour before PS
        "u3": [(PS, at("09:00:00")), (PC, at("09:01:00")), (SU, at("09:02:00")), (PC, at("09:03:00"))],
    }, {ALL: (Step(3), Step(2, 360, 360), Step(1, 60, 60))}),  # step 2: 600, 120 s
    Case("window_edge_is_inclusive_and_runs_from_step_1", {
        "u1": [(PS, at("09:00:00")), (SU, at("09:01:00")), (PC, at("09:00:00", "2026-03-09"))],  # exactly 7 days
        "u2": [(PS, at("10:00:00")), (SU, at("10:01:00")), (PC, at("10:00:01", "2026-03-09"))],  # 7 days + 1 s
        "u3": [(PS, at("11:00:00")), (SU, at("11:00:00", "2026-03-08")), (PC, at("11:00:01", "2026-03-09"))],
    }, {ALL: (Step(3), Step(3, 60, (60 + 60 + 6 * DAY_S) / 3), Step(1, 7 * DAY_S - 60, 7 * DAY_S - 60))}),
    Case("two_second_grace", {
        "u1": [(PS, at("09:00:00")), (SU, at("08:59:59")), (PC, at("09:10:00"))],  # SU 1 s before PS converts
        "u2": [(PS, at("10:00:00")), (SU, at("09:59:57"))],                        # 3 s before does not
        "u3": [(PS, at("11:00:00")), (SU, at("10:59:58"))],                        # exactly 2 s before converts
        "u4": [(PS, at("00:00:00")), (SU, at("23:59:59", "2026-03-01"))],          # across midnight
        "u5": [(PS, at("13:00:00")), (SU, at("12:59:57.999"))],                    # 2.001 s before does not
    }, {ALL: (Step(5), Step(3, 0, 0), Step(1, 601, 601))}),  # times before the previous step count 0 s
    Case("first_step_1_of_the_day_is_the_entry", {
        "u1": [(PS, at("09:00:00")), (PS, at("12:00:00")), (SU, at("09:30:00", "2026-03-09"))],  # 7 d 30 min
        "u2": [(PS, at("09:00:00")), (PS, at("09:30:00")), (SU, at("09:45:00"))],                 # from 09:00
    }, {ALL: (Step(2), Step(1, 2700, 2700), Step(0))}),
    Case("step_1_yesterday_enters_again_today", YESTERDAY_JOURNEYS,
         # u1 from 09:00 (SU 300 s later); u3 from 10:00 (SU 6 d 1 h later); u2 did no PS today
         {ALL: (Step(2), Step(2, (300 + 6 * DAY_S + 3600) / 2, (300 + 6 * DAY_S + 3600) / 2), Step(0))}),
    Case("yesterdays_cohort", YESTERDAY_JOURNEYS,
         # u1: 20:00 -> 09:05 next day (47,100 s); u2: 20:00 -> 09:00 (46,800 s); u3: SU 7 d 2 h after 09:00
         {ALL: (Step(3), Step(2, 46_950, 46_950), Step(0))}, day=date(2026, 3, 1)),
    Case("exclusions", {
        "u1": [(PS, at("09:00:00")), ("Logout", at("09:05:00")), (SU, at("09:10:00")), (PC, at("09:20:00"))],
        "u2": [(PS, at("09:00:00")), (SU, at("09:10:00")), (PC, at("09:20:00")), ("Logout", at("09:30:00"))],
        "u3": [(PS, at("09:00:00")), (SU, at("09:10:00")), ("Logout", at("09:15:00")), (PC, at("09:20:00"))],
        "u4": [(PS, at("09:00:00")), ("Logout", at("09:00:02")), (SU, at("09:10:00")), (PC, at("09:20:00"))],
        "u5": [("Logout", at("08:00:00")), (PS, at("09:00:00")), (SU, at("09:10:00"))],
        "u6": [(PS, at("09:00:00")), ("Logout", at("09:00:03")), (SU, at("09:10:00"))],
        "u7": [(PS, at("09:00:00")), ("Logout", at("09:09:58")), (SU, at("09:10:00"))],
    },
         # dropped after step 1: u1, u6 (Logout 3 s after PS); after step 2: u3; within 2 s of a step (u4, u7),
         # after the last step (u2) or before the entry (u5): not excluded
         {ALL: (Step(7), Step(5, 600, 600), Step(2, 600, 600))},
         funnel=dataclasses.replace(PRODUCTION, exclusions=("Logout",))),
    Case("hold_property_constant", {
        "u1": [(PS, at("09:00:00"), {"genre": "pop"}), (SU, at("09:05:00"), {"genre": "rock"}),
               (SU, at("09:10:00"), {"genre": "pop"}), (PC, at("09:20:00"), {"genre": "pop"})],
        "u2": [(PS, at("09:00:00"), {"genre": "pop"}), (SU, at("09:05:00"), {"genre": "rock"}),
               (PC, at("09:10:00"), {"genre": "pop"})],
        "u3": [(PS, at("10:00:00")), (SU, at("10:01:00")), (PC, at("10:02:00"), {"genre": "pop"})],
        "u4": [(PS, at("09:00:00"), {"genre": "pop"}), (PS, at("09:01:00"), {"genre": "rock"}),
               (SU, at("09:02:00"), {"genre": "rock"})],
    },
         # u1 converts on the pop events (600 s, 600 s); u3's missing genre matches missing (60 s), not pop;
         # u4's value is held from the first PS
         {ALL: (Step(4), Step(2, 330, 330), Step(1, 600, 600))},
         funnel=dataclasses.replace(PRODUCTION, hold_constant=("genre",))),
    Case("breakdown_segment_is_taken_from_the_entry_event", {
        "u1": [(PS, at("09:00:00"), {"$os": "iOS", "mp_country_code": "US"}),
               (SU, at("09:01:00"), {"$os": "Android"})],
        "u2": [(PS, at("09:00:00"), {"$os": "Android", "mp_country_code": "US"}), (SU, at("09:02:00")),
               (PC, at("09:05:00"))],
        "u3": [(PS, at("09:00:00"), {"$os": ""}), (SU, at("09:10:00"))],  # empty counts as not set
        "u4": [(PS, at("09:00:00"), {"$os": "iOS", "mp_country_code": "BR"})],
        "u5": [(PS, at("10:00:00"), {"$os": "Android", "mp_country_code": "DE"}),
               (PS, at("10:30:00"), {"$os": "iOS", "mp_country_code": "DE"})],
    }, {
        ALL: (Step(5), Step(3, 120, 260), Step(1, 180, 180)),
        ("platform", "iOS"): (Step(2), Step(1, 60, 60), Step(0)),            # u1, u4
        ("platform", "Android"): (Step(2), Step(1, 120, 120), Step(1, 180, 180)),  # u2, u5
        ("platform", "(none)"): (Step(1), Step(1, 600, 600), Step(0)),       # u3
        ("country", "US"): (Step(2), Step(2, 90, 90), Step(1, 180, 180)),    # u1, u2
        ("country", "BR"): (Step(1), Step(0), Step(0)),
        ("country", "DE"): (Step(1), Step(0), Step(0)),
        ("country", "(none)"): (Step(1), Step(1, 600, 600), Step(0)),
    }, dimensions=(PLATFORM, COUNTRY)),
    Case("identity_merge_anonymous_step_1", {
        "visitor": [
            (PS, at("09:00:00"), {"distinct_id": "$device:d1", "$device_id": "d1"}),
            ("Sign Up", at("09:05:00"), {"distinct_id": "user-1", "$device_id": "d1", "$user_id": "user-1"}),
            (SU, at("09:10:00"), {"distinct_id": "user-1", "$user_id": "user-1"}),
        ],
    }, {ALL: (Step(1), Step(1, 600, 600), Step(0))}),
    Case("an_event_fills_one_step_only", {
        "u1": [("Page View", at("09:00:00")), ("Sign Up", at("09:00:01"))],  # PV within the grace, already used
        "u2": [("Page View", at("09:00:00")), ("Sign Up", at("09:05:00")), ("Page View", at("09:06:00"))],
    }, {ALL: (Step(2), Step(2, 150.5, 150.5), Step(1, 60, 60))},
         funnel=Funnel("Return visit", ("Page View", "Sign Up", "Page View"))),
    Case("empty_day_writes_no_rows", {
        "u1": [(PS, at("09:00:00", "2026-03-01")), (SU, at("09:00:00"))],
    }, {}),
    Case("local_day_of_los_angeles", LA_JOURNEYS,
         {ALL: (Step(2), Step(1, 1800, 1800), Step(0))},  # u1 (22:00 PST), u4 (00:00 PST)
         day=date(2026, 3, 1), tz="America/Los_Angeles"),
    Case("next_local_day_of_los_angeles", LA_JOURNEYS,
         {ALL: (Step(1), Step(1, 30, 30), Step(0))},
         day=date(2026, 3, 2), tz="America/Los_Angeles"),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_funnel_steps(conn, case):
    load_journeys(conn, case.journeys)
    compute_funnels(conn, case.day, product_config(case.funnel, tz=case.tz, dimensions=case.dimensions))
    assert observed(conn, case.funnel.name, case.day) == case.expected


def test_conversion_columns_and_step_events(conn):
    case = next(c for c in CASES if c.name == "breakdown_segment_is_taken_from_the_entry_event")
    load_journeys(conn, case.journeys)
    compute_funnels(conn, DAY, product_config(PRODUCTION, dimensions=case.dimensions))
    rows = {(r[0], r[1], r[2]): r[3:] for r in funnel_rows(conn, PRODUCTION.name, DAY)}
    # step_event, users, conversion_from_prev, conversion_from_start, median, mean
    assert rows[("all", "all", 1)] == (PS, 5, 1.0, 1.0, None, None)
    assert rows[("all", "all", 2)] == (SU, 3, 0.6, 0.6, 120.0, 260.0)
    assert rows[("all", "all", 3)] == (PC, 1, pytest.approx(1 / 3), 0.2, 180.0, 180.0)
    # nobody reached step 2 in BR: step 3's conversion from the previous step is undefined (null)
    assert rows[("country", "BR", 2)] == (SU, 0, 0.0, 0.0, None, None)
    assert rows[("country", "BR", 3)] == (PC, 0, None, 0.0, None, None)


def test_rerun_replaces_the_day_and_leaves_other_days(conn):
    load_journeys(conn, YESTERDAY_JOURNEYS)
    config = product_config(PRODUCTION, dimensions=(PLATFORM,))
    compute_funnels(conn, date(2026, 3, 1), config)
    first = compute_funnels(conn, DAY, config)
    before = {d: funnel_rows(conn, PRODUCTION.name, d) for d in (date(2026, 3, 1), DAY)}
    again = compute_funnels(conn, DAY, config)
    assert again == first
    assert {d: funnel_rows(conn, PRODUCTION.name, d) for d in (date(2026, 3, 1), DAY)} == before
    assert conn.execute("select count(*) from analytics.funnel_steps").fetchall()[0][0] == 2 * 2 * 3

    # a late user of the day: the day's rows are replaced (3 entrants now), not appended to
    load_journeys(conn, {"late": [(PS, at("23:00:00"), {"$os": "iOS"})]})
    assert compute_funnels(conn, DAY, config)["entrants"] == {PRODUCTION.name: 3}
    assert observed(conn, PRODUCTION.name, DAY)[ALL][0] == Step(3)
    assert funnel_rows(conn, PRODUCTION.name, date(2026, 3, 1)) == before[date(2026, 3, 1)]
    assert conn.execute("select count(*) from analytics.funnel_steps where cohort_date = ?",
                        [DAY]).fetchall()[0][0] == 3 + 3 + 3  # all, (none), iOS


def test_events_filed_on_a_neighbouring_export_day_still_count(conn, tmp_path):
    """The loader keeps an event up to time_tolerance_minutes outside its file's UTC day, so the day's events
    may sit on the neighbouring export day's partition: the event_date pruning must widen by the tolerance."""
    late = write_day(tmp_path / "export", date(2026, 3, 1), [
        event_line(PS, "u1", ms(DAY, 0, 30), "i1"),   # 00:30 on Mar 2, delivered in Mar 1's file
        event_line(SU, "u1", ms(DAY, 0, 40), "i2"),
    ])
    on_time = write_day(tmp_path / "export", DAY, [event_line(PS, "u2", ms(DAY, 23, 40), "i3")])
    early = write_day(tmp_path / "export", date(2026, 3, 10), [
        event_line(SU, "u2", ms(date(2026, 3, 9), 23, 30), "i4"),  # 23:30 on Mar 9, in Mar 10's file
    ])
    for day, path in ((date(2026, 3, 1), late), (DAY, on_time), (date(2026, 3, 10), early)):
        load_day(conn, day, path, source="test")
    assert conn.execute("select event_date, count(*) from raw.events group by all order by all").fetchall() == [
        (date(2026, 3, 1), 2), (DAY, 1), (date(2026, 3, 10), 1)]
    compute_funnels(conn, DAY, product_config(PRODUCTION))
    # u1: 600 s; u2: Mar 2 23:40 -> Mar 9 23:30, 10 minutes inside the window
    assert observed(conn, PRODUCTION.name, DAY) == {
        ALL: (Step(2), Step(2, (600 + 7 * DAY_S - 600) / 2, (600 + 7 * DAY_S - 600) / 2), Step(0))}


def test_metadata_counts(conn):
    case = next(c for c in CASES if c.name == "basic_order")
    load_journeys(conn, case.journeys)
    lyrics = Funnel("Lyrics", ("Lyrics Composition Started", "Lyrics Completed"))
    meta = compute_funnels(conn, DAY, product_config(PRODUCTION, lyrics, dimensions=(PLATFORM,)))
    assert meta == {
        "cohort_date": "2026-03-02", "timezone": "UTC", "rows_written": 6, "funnels": 2,
        "entrants": {PRODUCTION.name: 4, "Lyrics": 0}, "converted": {PRODUCTION.name: 1, "Lyrics": 0},
        "events_read": {PRODUCTION.name: 8, "Lyrics": 0},
    }


@pytest.mark.parametrize("config, code", [
    (product_config(PRODUCTION, dimensions=(Dimension("all", "$os"),)), "CONFIG_DIMENSION"),
    (product_config(PRODUCTION, dimensions=(PLATFORM, Dimension("platform", "$browser"))), "CONFIG_DIMENSION"),
    (product_config(PRODUCTION, PRODUCTION), "CONFIG_FUNNEL"),
])
def test_config_that_would_collide_is_rejected(conn, config, code):
    load_journeys(conn, next(c for c in CASES if c.name == "basic_order").journeys)
    compute_funnels(conn, DAY, product_config(PRODUCTION))
    before = funnel_rows(conn, PRODUCTION.name, DAY)
    with pytest.raises(ConfigError, match=code):
        compute_funnels(conn, DAY, config)
    assert funnel_rows(conn, PRODUCTION.name, DAY) == before


# ---------------------------------------------------------------------------------------------------------
# The oracle: the same rules, written out plainly in Python over a Polars frame of every event.

GRACE_US = 2_000_000
US = 1_000_000


def prop_text(props: dict, name: str) -> str | None:
    value = props.get(name)
    if value is None:
        return None
    return value if isinstance(value, str) else json.dumps(value)


def oracle_user(events: list[tuple], funnel: Funnel, start_us: int, end_us: int):
    """events: one user's (ts_us, event, props), in time order. Returns (entry props, [step times]) or None."""
    entry = next((i for i, (ts, ev, _) in enumerate(events) if ev == funnel.steps[0] and start_us <= ts < end_us),
                 None)
    if entry is None:
        return None
    entry_ts, _, entry_props = events[entry]
    held = [prop_text(entry_props, p) for p in funnel.hold_constant]
    deadline = entry_ts + funnel.window_days * 86_400 * US
    used, times = {entry}, [entry_ts]
    for step_event in funnel.steps[1:]:
        prev = times[-1]
        found = next((i for i, (ts, ev, props) in enumerate(events)
                      if i not in used and ev == step_event and prev - GRACE_US <= ts <= deadline
                      and [prop_text(props, p) for p in funnel.hold_constant] == held), None)
        if found is None:
            break
        ts = events[found][0]
        if any(ev in funnel.exclusions and prev + GRACE_US < x < ts - GRACE_US for x, ev, _ in events):
            break
        used.add(found)
        times.append(ts)
    return entry_props, times


def oracle_rows(by_user: dict, funnel: Funnel, day: date, config: ProductConfig) -> dict:
    zone = ZoneInfo(config.timezone)
    start_us = int(datetime.combine(day, time(0), zone).timestamp()) * US
    end_us = int(datetime.combine(day + timedelta(days=1), time(0), zone).timestamp()) * US
    reached = []  # (dimension, segment, step, seconds from the previous step)
    for events in by_user.values():
        result = oracle_user(events, funnel, start_us, end_us)
        if result is None:
            continue
        props, times = result
        groups = [("all", "all")] + [(d.name, prop_text(props, d.property) or "(none)") for d in config.dimensions]
        for k, ts in enumerate(times, start=1):
            seconds = None if k == 1 else max(0, ts - times[k - 2]) / US
            reached += [(dim, seg, k, seconds) for dim, seg in groups]
    if not reached:
        return {}
    stats = (pl.DataFrame(reached, schema=["dimension", "segment", "step", "seconds"], orient="row")
             .group_by("dimension", "segment", "step")
             .agg(pl.len().alias("users"), pl.col("seconds").median().alias("median"),
                  pl.col("seconds").mean().alias("mean")))
    by_key = {(r["dimension"], r["segment"], r["step"]): r for r in stats.iter_rows(named=True)}
    rows = {}
    for dim, seg in {(r["dimension"], r["segment"]) for r in stats.iter_rows(named=True)}:
        counts = [by_key[(dim, seg, k)]["users"] if (dim, seg, k) in by_key else 0
                  for k in range(1, len(funnel.steps) + 1)]
        for k, users in enumerate(counts, start=1):
            stat = by_key.get((dim, seg, k))
            rows[(dim, seg, k)] = (
                funnel.steps[k - 1], users,
                1.0 if k == 1 else (users / counts[k - 2] if counts[k - 2] else None),
                users / counts[0],
                stat["median"] if stat else None, stat["mean"] if stat else None)
    return rows


def assert_rows_match(sql: dict, expected: dict, label: str) -> None:
    assert sql.keys() == expected.keys(), label
    for key, want in expected.items():
        got = sql[key]
        assert got[:2] == want[:2], (label, key, got, want)
        for g, w in zip(got[2:], want[2:]):
            assert (g is None and w is None) or g == pytest.approx(w, abs=1e-6), (label, key, got, want)


def events_by_user(conn) -> dict[str, list[tuple]]:
    """Every event of core.identified_events as user_key -> [(epoch microseconds, event, properties)], in
    time order (ties: $insert_id, then event name), read through Polars."""
    frame = (conn.sql("select user_key, event, time, insert_id, properties::varchar as props "
                      "from core.identified_events").pl()
             .with_columns(pl.col("time").dt.epoch("us").alias("ts"))
             .sort(["user_key", "ts", "insert_id", "event"], nulls_last=True))
    by_user = defaultdict(list)
    for user, ts, event, props in frame.select("user_key", "ts", "event", "props").iter_rows():
        by_user[user].append((ts, event, json.loads(props)))
    return by_user


def random_journeys(seed: int, users: int = 150) -> dict:
    """Dense, adversarial journeys: few event names, steps often within a few seconds of each other (the
    grace's edges), gaps of exactly a day (the window's edge), steps out of order, held and breakdown
    properties that change from event to event, anonymous devices merged into users."""
    rng = random.Random(seed)
    gaps = [-2.001, -2, -1.5, 0, 0, 0.5, 1, 2, 2.001, 3, 60, 3600, 86_399, 86_400, 86_401, 2 * 86_400]
    day_start = datetime(DAY.year, DAY.month, DAY.day, tzinfo=timezone.utc)
    journeys = {}
    for u in range(users):
        t = day_start + timedelta(seconds=rng.randint(-10 * 3600, 40 * 3600))
        anonymous = rng.random() < 0.2
        steps = []
        for _ in range(rng.randint(1, 10)):
            t += timedelta(seconds=rng.choice(gaps))
            props = {key: value for key, value in (("k", rng.choice(["p", "q", None, 1, True])),
                                                   ("$os", rng.choice(["iOS", "Android", "", None])))
                     if value is not None}
            if anonymous:
                props.update({"distinct_id": f"$device:d{u}", "$device_id": f"d{u}"})
            steps.append((rng.choice("AABBCXZ"), t, props))
        if anonymous:  # sign-up merges the device into the user, later events are the user's
            t += timedelta(seconds=rng.choice(gaps[4:]))
            steps.append(("Z", t, {"distinct_id": f"user{u}", "$device_id": f"d{u}", "$user_id": f"user{u}"}))
            t += timedelta(seconds=rng.choice(gaps[4:]))
            steps.append((rng.choice("BC"), t, {"distinct_id": f"user{u}", "$user_id": f"user{u}"}))
        journeys[f"p{u}"] = steps
    return journeys


RANDOM_FUNNELS = (
    Funnel("abc", ("A", "B", "C"), window_days=1, exclusions=("X",), hold_constant=("k",)),
    Funnel("aba", ("A", "B", "A"), window_days=1),
    Funnel("abca", ("A", "B", "C", "A"), window_days=2, exclusions=("X", "Z")),
)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_sql_matches_the_oracle_on_random_dense_journeys(conn, seed):
    load_journeys(conn, random_journeys(seed))
    by_user = events_by_user(conn)
    checked = 0
    for tz in ("UTC", "America/Los_Angeles"):
        config = product_config(*RANDOM_FUNNELS, tz=tz,
                                dimensions=(Dimension("os", "$os"), Dimension("k", "k")))
        for day in (DAY, DAY + timedelta(days=1)):
            compute_funnels(conn, day, config)
            for funnel in config.funnels:
                label = f"{funnel.name} {day} {tz}"
                sql = {(r[0], r[1], r[2]): r[3:] for r in funnel_rows(conn, funnel.name, day)}
                expected = oracle_rows(by_user, funnel, day, config)
                assert expected, f"no entrants for {label}: the comparison would prove nothing"
                assert_rows_match(sql, expected, label)
                checked += len(expected)
    assert checked > 300


ORACLE_FUNNELS = (
    Funnel("Production, same plan and browser, no page view", (PS, SU, PC), window_days=1,
           exclusions=("Page View", "Logout"), hold_constant=("plan", "$browser")),
    Funnel("Page views around a production", ("Page View", PS, "Page View"), window_days=2),
)
ORACLE_DIMENSIONS = (Dimension("genre", "genre"), Dimension("plan", "plan"))


def test_sql_matches_an_independent_polars_implementation_on_the_demo(conn, tmp_path):
    end = date(2026, 3, 20)
    generate_demo(tmp_path / "export", days=20, users=600, end_date=end, seed=3)
    for offset in range(20):
        day = end - timedelta(days=19 - offset)
        path = tmp_path / "export" / f"{day.isoformat()}.jsonl"
        load_day(conn, day, path if path.exists() else None, source="demo")
    rebuild_identity(conn)

    bundled = load_config()
    utc = dataclasses.replace(bundled, funnels=bundled.funnels + ORACLE_FUNNELS,
                              dimensions=bundled.dimensions + ORACLE_DIMENSIONS)
    los_angeles = dataclasses.replace(utc, timezone="America/Los_Angeles")

    by_user = events_by_user(conn)
    checked = 0
    for config, days in ((utc, [date(2026, 3, 2), date(2026, 3, 8), date(2026, 3, 13), date(2026, 3, 20)]),
                         (los_angeles, [date(2026, 3, 5), date(2026, 3, 12)])):
        for day in days:
            compute_funnels(conn, day, config)
            for funnel in config.funnels:
                label = f"{funnel.name} {day} {config.timezone}"
                sql = {(r[0], r[1], r[2]): r[3:] for r in funnel_rows(conn, funnel.name, day)}
                expected = oracle_rows(by_user, funnel, day, config)
                assert expected, f"no entrants for {label}: the comparison would prove nothing"
                assert_rows_match(sql, expected, label)
                checked += len(expected)
    assert checked > 1000


# --- Provisional cohorts: conversions that arrive on days 1-6 ------------------------------------------

def _loaded_through(conn, last: date) -> None:
    """raw.load_log says the export days up to `last` are loaded (what completeness is measured against)."""
    conn.execute("delete from raw.load_log")
    conn.executemany("insert into raw.load_log (event_date, loaded_at, source, source_found, lines, rows_loaded, "
                     "rejected, duplicates_removed, distinct_users, bytes_read) "
                     "values (?, now(), 'test', true, 0, 0, 0, 0, 0, 0)",
                     [[DAY + timedelta(days=i)] for i in range(-1, (last - DAY).days + 1)])


def late_journeys() -> dict:
    """60 users start a production on DAY at 10:00; user i uploads a sketch (i % 6) + 1 days later at 10:00
    (days 1..6, ten users each); 20 more upload within the hour."""
    out = {}
    entry = datetime.combine(DAY, time(10), tzinfo=timezone.utc)
    for i in range(60):
        out[f"late{i}"] = [(PS, entry), (SU, entry + timedelta(days=i % 6 + 1))]
    for i in range(20):
        out[f"fast{i}"] = [(PS, entry), (SU, entry + timedelta(minutes=30))]
    return out


def _cohort_totals(conn) -> list[tuple]:
    """DAY's totals per step: step, users, users_1d, conversion_from_prev, conversion_1d_from_prev, completeness."""
    return conn.execute("select step, users, users_1d, conversion_from_prev, conversion_1d_from_prev, completeness "
                        "from analytics.funnel_steps where cohort_date = ? and dimension = 'all' order by step",
                        [DAY]).fetchall()


def test_a_cohort_still_converting_says_how_complete_it_is(conn):
    journeys = late_journeys()
    config = product_config(PRODUCTION)
    # the daily run of DAY + 1: only the events up to the end of DAY + 1 exist yet
    horizon = datetime.combine(DAY + timedelta(days=2), time(0), tzinfo=timezone.utc)
    load_journeys(conn, {u: [e for e in ev if e[1] < horizon] for u, ev in journeys.items()})
    _loaded_through(conn, DAY + timedelta(days=1))
    compute_funnels(conn, DAY, config)
    early = _cohort_totals(conn)
    # 20 within the hour and 10 exactly one day (86,400 s) later; the window of DAY's last entrant is 1/7 over
    assert early[1][:3] == (2, 30, 30)
    assert early[1][3] == pytest.approx(30 / 80) and early[1][4] == pytest.approx(30 / 80)
    assert early[1][5] == pytest.approx(1 / 7)
    # a week later every conversion has arrived: the full conversion is 100%, the first-day one has not moved
    conn.execute("delete from raw.events")
    load_journeys(conn, journeys)
    _loaded_through(conn, DAY + timedelta(days=8))
    compute_funnels(conn, DAY, config)
    final = _cohort_totals(conn)
    assert final[1][:3] == (2, 80, 30)
    assert final[1][3] == 1.0 and final[1][4] == pytest.approx(30 / 80)   # like with like, whatever the age
    assert final[1][5] == 1.0
    assert final[0][1:3] == (80, 80) and final[0][4] == 1.0
