"""Breakdowns by list-valued and nested event properties, as Mixpanel does them. Products track lists
(`genres: ["pop", "rock"]`): a breakdown by such a property puts the user, session, entrant or event in
EACH element's segment (once, however often the element repeats), an empty list is '(none)', so a list
dimension's segments do not sum to the total; a segment compared with "the rest" must still be compared
with the units NOT in it. A dotted property (`plan.tier`) reads the nested object unless the event has a
top-level key with that literal name. This suite pins all of it on journeys run through the real SQL (DAU,
event counts, sessions, funnels, week-1 retention, segment comparisons, check-config), and once end to
end through a Dagster materialization from export files."""

from __future__ import annotations

import dataclasses
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from hitcraft_assets.analysis.funnels import compute_funnels
from hitcraft_assets.analysis.metrics import compute_daily_metrics
from hitcraft_assets.analysis.retention import SegmentRetention, week1_cohort, week1_retention_by_segment
from hitcraft_assets.analysis.segments import MIN_SIDE_N, compute_segments
from hitcraft_assets.analysis.sessions import compute_sessions
from hitcraft_assets.config import Dimension, Funnel, ProductConfig, property_path
from hitcraft_assets.config.check import check_against_warehouse
from hitcraft_assets_tests.journeys import fresh_warehouse, load_journeys, write_export

DAY = date(2026, 3, 23)
GENRE, TIER, OS = Dimension("genre", "genres"), Dimension("tier", "plan.tier"), Dimension("platform", "$os")
FUNNEL = Funnel("Produce", ("Production Started", "Sketch Uploaded"))


def at(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=timezone.utc)


def config(*dimensions: Dimension, funnels=(FUNNEL,)) -> ProductConfig:
    return ProductConfig(path=Path("lists.yaml"), product={"name": "lists"}, timezone="UTC",
                         session_timeout_minutes=30, time_tolerance_minutes=60, dimensions=dimensions,
                         funnels=funnels, retention={"birth_event": "Sign Up", "return_event": None})


@pytest.fixture
def conn(tmp_path):
    connection = fresh_warehouse(tmp_path / "w.duckdb")
    yield connection
    connection.close()


# ------------------------------------------------------------------------------------- the property rule


@pytest.mark.parametrize(("name", "literal", "nested"), [
    ("$os", "/$os", "/$os"),
    ("plan.tier", "/plan.tier", "/plan/tier"),
    ("a/b.c~d", "/a~1b.c~0d", "/a~1b/c~0d"),     # escapes per level
    ('q".x', '/q".x', '/q"/x'),
])
def test_property_path_gives_the_literal_key_and_the_dotted_path(name, literal, nested):
    assert property_path(name) == literal
    assert property_path(name, nested=True) == nested


# --------------------------------------------------------------------------- DAU, events, sessions by list

DAY_JOURNEYS = {
    "u1": [("Login", at(DAY, 9), {"genres": ["pop", "rock"], "plan": {"tier": "pro"}, "$os": "iOS"}),
           ("Page View", at(DAY, 9, 10), {"genres": ["rock", "pop", "pop"], "plan": {"tier": "pro"},
                                          "$os": "iOS"})],   # 600 s
    "u2": [("Login", at(DAY, 10), {"genres": ["rock", "rock"], "plan.tier": "literal", "plan": {"tier": "x"},
                                   "$os": "Android"})],
    "u3": [("Login", at(DAY, 11), {"genres": [], "plan": {"tier": ["a", "b"]}, "$os": "iOS"})],
    "u4": [("Login", at(DAY, 12), {"$os": "Android"})],                           # no genres at all
    "u5": [("Login", at(DAY, 13), {"genres": "pop", "plan": "flat", "$os": "iOS"}),  # a scalar of the same property
           ("Login", at(DAY, 13, 5), {"genres": [None, ""], "$os": "iOS"})],        # nothing usable: (none)
}


def metrics_of(conn, metric: str, dimension: str) -> dict[str, float]:
    return dict(conn.execute("select segment, value from analytics.daily_metrics where metric_date = ? "
                             "and metric = ? and dimension in (?, 'all')", [DAY, metric, dimension]).fetchall())


def test_a_list_puts_the_user_in_each_elements_segment_once(conn):
    load_journeys(conn, DAY_JOURNEYS)
    cfg = config(GENRE, TIER, OS)
    compute_sessions(conn, DAY, cfg)
    compute_daily_metrics(conn, DAY, cfg)
    # u1 in pop and rock (once each, though the second event repeats pop), u2 rock (duplicates once), u5
    # pop (scalar) and (none) (its second event), u3 (empty list) and u4 (missing) (none)
    assert metrics_of(conn, "dau", "genre") == {"all": 5, "pop": 2, "rock": 2, "(none)": 3}
    assert sum(v for k, v in metrics_of(conn, "dau", "genre").items() if k != "all") == 7   # > the total 5
    # events count in every element's segment: u1's two events in pop and in rock
    assert metrics_of(conn, "event_count:Login", "genre") == {"all": 6, "pop": 2, "rock": 2, "(none)": 3}
    assert metrics_of(conn, "event_count:Page View", "genre") == {"all": 1, "pop": 1, "rock": 1, "(none)": 0}
    assert metrics_of(conn, "event_users:Login", "genre") == {"all": 5, "pop": 2, "rock": 2, "(none)": 3}
    # sessions: a session takes its first event's list, so u1's session is in pop and in rock
    assert metrics_of(conn, "sessions", "genre") == {"all": 5, "pop": 2, "rock": 2, "(none)": 2}
    assert metrics_of(conn, "session_duration_mean_s", "genre")["rock"] == 300     # u1 600 s, u2 0 s
    # dotted: the nested value; the literal top-level key wins where the event has it; a nested list
    # is a list; a non-object `plan` has no tier
    assert metrics_of(conn, "dau", "tier") == {"all": 5, "pro": 1, "literal": 1, "a": 1, "b": 1, "(none)": 2}
    # a scalar dimension is untouched: one segment per user, summing to the total
    assert metrics_of(conn, "dau", "platform") == {"all": 5, "iOS": 3, "Android": 2}
    assert conn.execute("select segments['genre'] from core.user_days where user_key = 'u1'").fetchall() == [
        (["pop", "rock"],)]


def test_sessions_keep_each_segment_of_the_first_event(conn):
    load_journeys(conn, DAY_JOURNEYS)
    compute_sessions(conn, DAY, config(GENRE, TIER, OS))
    got = conn.execute("select user_key, segments, segment_lists from core.sessions order by user_key").fetchall()
    assert got == [
        ("u1", {"genre": "pop, rock", "tier": "pro", "platform": "iOS"},
         {"genre": ["pop", "rock"], "tier": ["pro"], "platform": ["iOS"]}),
        ("u2", {"genre": "rock", "tier": "literal", "platform": "Android"},
         {"genre": ["rock"], "tier": ["literal"], "platform": ["Android"]}),
        ("u3", {"genre": "(none)", "tier": "a, b", "platform": "iOS"},
         {"genre": ["(none)"], "tier": ["a", "b"], "platform": ["iOS"]}),
        ("u4", {"genre": "(none)", "tier": "(none)", "platform": "Android"},
         {"genre": ["(none)"], "tier": ["(none)"], "platform": ["Android"]}),
        ("u5", {"genre": "pop", "tier": "(none)", "platform": "iOS"},
         {"genre": ["pop"], "tier": ["(none)"], "platform": ["iOS"]}),
    ]


def test_session_columns_and_held_properties_read_dotted_paths(conn):
    load_journeys(conn, {"p": [("Login", at(DAY, 9), {"device": {"os": "iOS"}, "src": "x"})]})
    cfg = dataclasses.replace(config(), session_properties={"platform": "device.os", "country": None,
                                                            "utm_source": "src"})
    compute_sessions(conn, DAY, cfg)
    assert conn.execute("select platform, utm_source from core.sessions").fetchall() == [("iOS", "x")]


# -------------------------------------------------------------------------------------- funnel breakdown


def test_a_funnel_breakdown_by_a_list_counts_an_entrant_in_each_element(conn):
    ps, su = FUNNEL.steps
    load_journeys(conn, {
        "a": [(ps, at(DAY, 9), {"genres": ["pop", "rock"]}), (su, at(DAY, 9, 5), {"genres": ["jazz"]})],
        "b": [(ps, at(DAY, 10), {"genres": ["rock"]})],
        "c": [(ps, at(DAY, 11), {"genres": []}), (su, at(DAY, 11, 5))],
        "d": [(ps, at(DAY, 12), {"plan.tier": "lit", "plan": {"tier": "pro"}}),
              (ps, at(DAY, 12, 1), {"genres": ["pop"]})],             # a later step-1 event is not the entry
    })
    compute_funnels(conn, DAY, config(GENRE, TIER))
    rows = conn.execute("select dimension, segment, step, users from analytics.funnel_steps "
                        "where cohort_date = ? order by all", [DAY]).fetchall()
    assert rows == [
        ("all", "all", 1, 4), ("all", "all", 2, 2),
        ("genre", "(none)", 1, 2), ("genre", "(none)", 2, 1),     # c (empty list), d (missing)
        ("genre", "pop", 1, 1), ("genre", "pop", 2, 1),           # a, by its entry event
        ("genre", "rock", 1, 2), ("genre", "rock", 2, 1),         # a and b
        ("tier", "(none)", 1, 3), ("tier", "(none)", 2, 2),
        ("tier", "lit", 1, 1), ("tier", "lit", 2, 0),             # the literal dotted key wins
    ]


# ---------------------------------------------------------------------------------- week-1 retention


def test_week1_retention_by_a_list_and_the_cohort_total(conn):
    born = DAY - timedelta(days=16)
    back = born + timedelta(days=8)
    load_journeys(conn, {
        "a": [("Sign Up", at(born, 9), {"genres": ["pop", "rock"]}), ("Login", at(back, 9))],
        "b": [("Sign Up", at(born, 10), {"genres": ["rock"]})],
        "c": [("Sign Up", at(born, 11), {"genres": []}), ("Login", at(back, 11))],
    })
    cfg = config(GENRE)
    assert set(week1_retention_by_segment(conn, DAY, cfg)) == {
        SegmentRetention("genre", "pop", 1, 1), SegmentRetention("genre", "rock", 2, 1),
        SegmentRetention("genre", "(none)", 1, 1)}
    # the segments hold 4 users; the cohort has 3, 2 of them retained
    assert week1_cohort(conn, DAY, cfg)[1:] == (3, 2)


# ------------------------------------------------------------------------------ segment vs the rest


def comparison_journeys() -> dict:
    """On DAY: 40 users with genres ["pop", "rock"] (8 events in one 660 s session, all reach step 2 of the
    funnel; 32 of 40 born D-16 come back on D-8), 40 with ["jazz"] (2 events in a 100 s session, 10 reach
    step 2; 6 of 40 come back)."""
    born, back = DAY - timedelta(days=16), DAY - timedelta(days=8)
    ps, su = FUNNEL.steps
    journeys = {}
    for i in range(40):
        props = {"genres": ["pop", "rock"]}
        journeys[f"m{i}"] = ([("Sign Up", at(born, 9), props)] + ([("Login", at(back, 9))] if i < 32 else [])
                             + [(ps, at(DAY, 9), props)] + [(su, at(DAY, 9, 1 + k), props) for k in range(6)]
                             + [("Page View", at(DAY, 9, 11), props)])
        solo = {"genres": ["jazz"]}
        journeys[f"j{i}"] = ([("Sign Up", at(born, 10), solo)] + ([("Login", at(back, 10))] if i < 6 else [])
                             + [(ps, at(DAY, 10), solo)]
                             + [(su if i < 10 else "Page View", datetime(DAY.year, DAY.month, DAY.day, 10, 1, 40,
                                                                         tzinfo=timezone.utc), solo)])
    return journeys


def test_segment_comparisons_compare_with_the_users_without_the_element(conn):
    load_journeys(conn, comparison_journeys())
    cfg = config(GENRE)
    compute_sessions(conn, DAY, cfg)
    compute_funnels(conn, DAY, cfg)
    compute_segments(conn, DAY, cfg)
    # a funnel cohort is compared on its first-day conversion, the day after entry
    compute_segments(conn, DAY + timedelta(days=1), cfg)
    rows = {(m, s): (n1, n2, v1, v2) for m, s, n1, n2, v1, v2 in conn.execute(
        "select metric, segment, segment_n, rest_n, segment_value, rest_value from analytics.segment_comparisons "
        "where metric_date = ? and dimension = 'genre'", [DAY]).fetchall()}
    rows |= {(m, s): (n1, n2, v1, v2) for m, s, n1, n2, v1, v2 in conn.execute(
        "select metric, segment, segment_n, rest_n, segment_value, rest_value from analytics.segment_comparisons "
        "where metric_date = ? and dimension = 'genre' and metric like 'funnel:%'",
        [DAY + timedelta(days=1)]).fetchall()}
    assert MIN_SIDE_N <= 40
    for seg in ("pop", "rock"):
        # the rest of pop is the 40 jazz users, never the same users again under rock
        assert rows[("events_per_user", seg)] == (40, 40, 8.0, 2.0)
        assert rows[("session_duration_s", seg)] == (40, 40, 660.0, 100.0)
        assert rows[("funnel:Produce:step2", seg)] == (40, 40, 1.0, 0.25)
        assert rows[("week1_retention", seg)] == (40, 40, 0.8, 0.15)
    assert rows[("events_per_user", "jazz")] == (40, 40, 2.0, 8.0)
    assert rows[("week1_retention", "jazz")] == (40, 40, 0.15, 0.8)


# --------------------------------------------------------------------------------------- check-config


def test_check_config_sees_a_dotted_property_in_the_nested_object(conn):
    load_journeys(conn, {"p": [("Login", at(DAY, 9), {"plan": {"tier": "pro"}, "a.b": 1})]})
    cfg = config(Dimension("tier", "plan.tier"), Dimension("ab", "a.b"), Dimension("nope", "plan.seats"),
                 funnels=())
    warnings, _ = check_against_warehouse(conn, cfg)
    assert [(w.code, w.key) for w in warnings if w.key.startswith("dimensions")] == [
        ("CONFIG_UNSEEN_PROPERTY", "dimensions[2].property")]


# ------------------------------------------------------------------------- end to end, through Dagster

CONFIG_YAML = """
product: {name: lists}
timezone: UTC
session_timeout_minutes: 30
time_tolerance_minutes: 60
dimensions:
  - {name: genre, property: genres}
  - {name: tier, property: plan.tier}
funnels:
  - {name: Produce, steps: [Production Started, Sketch Uploaded], window_days: 7}
retention: {birth_event: Production Started, return_event: null}
"""


def test_materialized_assets_break_down_by_lists_and_nested_paths(tmp_path, monkeypatch, instance,
                                                                 files_resources, export_dir, warehouse):
    from hitcraft_assets.analysis.assets import daily_metrics, funnels, identity_map, sessions
    from hitcraft_assets.ingestion.assets import raw_events

    path = tmp_path / "lists.yaml"
    path.write_text(CONFIG_YAML)
    monkeypatch.setenv("HITCRAFT_CONFIG", str(path))
    ps, su = FUNNEL.steps
    write_export(export_dir, {
        "a": [(ps, at(DAY, 9), {"genres": ["pop", "rock"], "plan": {"tier": "pro"}}), (su, at(DAY, 9, 5), {"genres": ["pop", "rock"], "plan": {"tier": "pro"}})],
        "b": [(ps, at(DAY, 10), {"genres": ["rock", "rock"], "plan.tier": "team"})],
        "c": [(ps, at(DAY, 11), {"genres": []})],
    })
    result = dg.materialize([raw_events, identity_map, sessions, daily_metrics, funnels],
                            resources=files_resources, instance=instance, partition_key=DAY.isoformat())
    assert result.success
    with duckdb.connect(str(warehouse), read_only=True) as db:
        dau = dict(db.execute("select dimension || ':' || segment, value from analytics.daily_metrics "
                              "where metric = 'dau' and metric_date = ?", [DAY]).fetchall())
        steps = db.execute("select dimension, segment, step, users from analytics.funnel_steps "
                           "where cohort_date = ? and dimension <> 'tier' order by all", [DAY]).fetchall()
    assert dau == {"all:all": 3, "genre:pop": 1, "genre:rock": 2, "genre:(none)": 1,
                   "tier:pro": 1, "tier:team": 1, "tier:(none)": 1}
    assert steps == [("all", "all", 1, 3), ("all", "all", 2, 1), ("genre", "(none)", 1, 1), ("genre", "(none)", 2, 0),
                     ("genre", "pop", 1, 1), ("genre", "pop", 2, 1), ("genre", "rock", 1, 2), ("genre", "rock", 2, 1)]
