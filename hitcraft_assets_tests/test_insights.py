"""Insights are the part of the engine a person reads first, so this suite pins what they may say:
(a) the generators find exactly the findings planted in small analysis and detection tables (created with
the real DDL), with the right kind and evidence numbers equal to the tables', and nothing from
insignificant rows, tiny segments or negligible trends; duplicates of one series become one finding;
(b) the ranking formula puts higher importance, more users, higher confidence, totals and new findings
first, deterministically, ties broken by id; (c) a finding keeps its id from day to day and goes
new -> ongoing -> resolved; (d) every number in a title, summary or rule recommendation is in the
evidence (the check LLM text will also pass through); (e) writing a day twice leaves one copy."""

from __future__ import annotations

import dataclasses
import json
import random
from datetime import date, timedelta

import duckdb
import pytest

from hitcraft_assets.config import BUNDLED_CONFIG, load_config
from hitcraft_assets.insights import (
    Insight,
    generate_insights,
    numbers_allowed,
    numbers_in,
    previous_state,
    rank_insights,
    rule_recommendation,
    with_status,
    write_insights,
)
from hitcraft_assets.insights.generators import insight_context, insight_id
from hitcraft_assets.insights.ranking import importance, impact_score, news
from hitcraft_assets.insights.rules import fmt_day, unsupported_numbers
from hitcraft_assets.warehouse import ensure_schema, named_statements

DAY = date(2026, 11, 23)
CONFIG = load_config(BUNDLED_CONFIG)
MP2 = "funnel:Music Production:step2"
ONB2 = "funnel:Onboarding:step2"


# ------------------------------------------------------------------------------------------ warehouse


def warehouse(path) -> duckdb.DuckDBPyConnection:
    """An empty warehouse with every table the generators read, from the real DDL."""
    conn = duckdb.connect(str(path))
    ensure_schema(conn)
    conn.execute(named_statements("analysis/funnels.sql")["schema"])
    conn.execute(named_statements("analysis/segments.sql")["create_table"])
    conn.execute(named_statements("analysis/daily_metrics.sql")["schema"])
    conn.execute(named_statements("detection/anomalies.sql")["schema"])
    conn.execute(named_statements("detection/trends.sql")["schema"])
    return conn


def plant_funnel(conn, day, funnel, users, dimension="all", segment="all"):
    """The funnel's latest complete cohort as of `day` (its entry day is `day` - window_days)."""
    spec = next(f for f in CONFIG.funnels if f.name == funnel)
    for k, (event, n) in enumerate(zip(spec.steps, users), start=1):
        prev = users[k - 2] if k > 1 else n
        conn.execute("insert into analytics.funnel_steps (funnel, cohort_date, dimension, segment, step, step_event, "
                     "users, conversion_from_prev, conversion_from_start, completeness) "
                     "values (?, ?, ?, ?, ?, ?, ?, ?, ?, 1.0)",
                     [funnel, day - timedelta(days=spec.window_days), dimension, segment, k, event, n, n / prev,
                      n / users[0]])


def plant_comparison(conn, day, metric, dimension, segment, segment_n, rest_n, segment_value, rest_value,
                     effect_size, q, significant=True, test="two_proportion_z"):
    conn.execute("insert into analytics.segment_comparisons values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                 [day, metric, dimension, segment, segment_n, rest_n, segment_value, rest_value,
                  segment_value - rest_value, effect_size, test, -5.0, q / 10, q, significant])


def plant_anomaly(conn, day, metric, dimension, segment, observed, expected, score, q, root_cause=()):
    direction = "up" if observed > expected else "down"
    conn.execute("insert into analytics.anomalies (metric_date, metric, dimension, segment, observed, expected, "
                 "lower, upper, score, direction, p_value, q_value, root_cause) "
                 "values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                 [day, metric, dimension, segment, observed, expected, expected * 0.8, expected * 1.2, score,
                  direction, q / 10, q, json.dumps(list(root_cause))])


def plant_trend(conn, day, metric, dimension, segment, slope, q, current_7d, pct_7d, current_28d, pct_28d,
                change_points=(), line=None):
    trend = "no trend" if q > 0.05 else ("increasing" if slope > 0 else "decreasing")
    last = change_points[-1] if change_points else None
    conn.execute("insert into analytics.trends (as_of_date, metric, dimension, segment, n, slope, tau, p_value, "
                 "q_value, trend, trend_change, current_7d, pct_change_7d, current_28d, pct_change_28d, change_points, "
                 "last_change_date, last_change_shift, last_change_relative) "
                 "values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                 [day, metric, dimension, segment, 28, slope, 0.5 if slope > 0 else -0.5, q / 2, q, trend, line,
                  current_7d, pct_7d, current_28d, pct_28d, json.dumps(list(change_points)),
                  last["date"] if last else None, last["shift"] if last else None,
                  last["relative_shift"] if last else None])


def plant_dau(conn, day, sizes):
    for (dimension, segment), value in sizes.items():
        conn.execute("insert into analytics.daily_metrics values (?, 'dau', ?, ?, ?)", [day, dimension, segment, value])


TIKTOK = {"dimension": "channel", "segment": "tiktok", "expected": 9.0, "observed": 80.0, "contribution": 1.103,
          "summary": "channel = tiktok: 110% of the rise"}
ONB_SHIFT = {"date": (DAY - timedelta(days=15)).isoformat(), "mean_before": 0.45, "mean_after": 0.71,
             "shift": 0.26, "relative_shift": 0.26 / 0.45}


def plant_day(conn, day=DAY):
    """One day with a known finding of every kind, and rows that must produce nothing."""
    plant_dau(conn, day, {("all", "all"): 2000, ("channel", "youtube"): 180, ("channel", "direct"): 900,
                          ("channel", "tiny"): 20, ("platform", "Android"): 500})
    # funnels: Music Production loses 400 of 1,000 at step 2; Onboarding 60 of 200 at step 2
    plant_funnel(conn, day, "Music Production", [1000, 600, 550])
    plant_funnel(conn, day, "Onboarding", [200, 140, 138])
    plant_funnel(conn, day, "Music Production", [300, 120, 110], "platform", "Android")
    # Android converts far worse at step 2, significant for three days (not on the fourth day back)
    for back, q in ((0, 1e-48), (1, 1e-40), (2, 1e-30)):
        plant_comparison(conn, day - timedelta(days=back), MP2, "platform", "Android", 300, 700, 0.4, 0.9, -1.1, q)
    plant_comparison(conn, day - timedelta(days=3), MP2, "platform", "Android", 300, 700, 0.88, 0.9, -0.05, 0.6,
                     significant=False)
    # iOS looks better only because Android drags the rest down: not an opportunity
    plant_comparison(conn, day, MP2, "platform", "iOS", 400, 600, 0.95, 0.75, 0.55, 1e-10)
    # not significant: nothing
    plant_comparison(conn, day, "funnel:Lyrics Composition:step2", "country", "US", 400, 900, 0.88, 0.9, -0.06,
                     0.3, significant=False)
    # Canada retains far better but is a small share of users: a high-converting path few users take
    plant_comparison(conn, day, "week1_retention", "country", "CA", 50, 800, 0.68, 0.45, 0.46, 0.025)
    # anomalies: sign-ups spike, driven by tiktok (iOS shows the same move); Android's step 2 drops
    plant_anomaly(conn, day, "event_users:Sign Up", "all", "all", 171.0, 107.0, 3.78, 0.0073, [TIKTOK])
    plant_anomaly(conn, day, "event_users:Sign Up", "platform", "iOS", 63.0, 26.0, 3.88, 0.0057)
    plant_anomaly(conn, day, MP2, "platform", "Android", 0.44, 0.94, -18.3, 7e-72)
    # onboarding jumped 10 days ago and held; a level shift 15 days ago; an increasing trend
    plant_anomaly(conn, day - timedelta(days=10), ONB2, "all", "all", 0.67, 0.45, 4.2, 0.023)
    plant_trend(conn, day, ONB2, "all", "all", 0.014, 0.017, 0.71, -0.011, 0.60, 0.31, [ONB_SHIFT])
    # rising feature use; falling youtube activity
    plant_trend(conn, day, "event_users:Feature Used", "all", "all", 11.1, 0.0099, 1244.0, 0.081, 1113.0, 0.32)
    plant_trend(conn, day, "dau", "channel", "youtube", -3.1, 0.0033, 180.0, -0.074, 207.0, -0.253)
    # nothing from these: not significant, a tiny segment, a negligible change
    plant_trend(conn, day, "dau", "channel", "direct", 2.0, 0.2, 900.0, 0.01, 890.0, 0.02)
    plant_trend(conn, day, "dau", "channel", "tiny", -1.0, 0.001, 20.0, -0.3, 25.0, -0.3)
    plant_trend(conn, day, "sessions", "all", "all", 1.0, 0.01, 3000.0, 0.01, 2990.0, 0.02)


EXPECTED = {
    ("risk", MP2, "platform", "Android"),
    ("risk", MP2, "all", "all"),
    # (Onboarding's standing drop-off at step 2 is context inside the success of that step, below)
    ("opportunity", "week1_retention", "country", "CA"),
    ("anomaly", "event_users:Sign Up", "all", "all"),
    ("opportunity", "event_users:Feature Used", "all", "all"),
    ("success", ONB2, "all", "all"),
    ("risk", "dau", "channel", "youtube"),       # users lost: a risk
}


@pytest.fixture
def planted(tmp_path):
    conn = warehouse(tmp_path / "w.duckdb")
    plant_day(conn)
    yield conn
    conn.close()


def by_series(insights):
    return {(i.kind, i.evidence["metric"], i.evidence["dimension"], i.evidence["segment"]): i for i in insights}


# ------------------------------------------------------------------------------------------ generators


def test_generators_find_exactly_the_planted_findings(planted):
    insights = generate_insights(planted, DAY, CONFIG)
    assert set(by_series(insights)) == EXPECTED
    assert all(i.status == "new" and i.recommendation == "" and i.generated_by == "rules" and i.as_of_date == DAY
               for i in insights)
    assert len({i.insight_id for i in insights}) == len(insights)
    assert all(0.0 <= i.confidence <= 1.0 for i in insights)


def test_a_segment_converting_worse_is_one_risk_with_the_tables_numbers(planted):
    risk = by_series(generate_insights(planted, DAY, CONFIG))[("risk", MP2, "platform", "Android")]
    ev = risk.evidence
    # the comparison and the same series' anomaly are one finding: the anomaly's evidence is inside
    assert ev["lead"] == "comparison" and set(ev["source"]) == {"analytics.segment_comparisons",
                                                                "analytics.anomalies"}
    c = ev["comparison"]
    assert (c["segment_value"], c["rest_value"], c["segment_n"], c["rest_n"], c["q_value"], c["test"]) == \
        (0.4, 0.9, 300, 700, 1e-48, "two_proportion_z")
    assert c["effect"] == pytest.approx(-0.5) and c["effect_size"] == -1.1
    assert (c["significant_since"], c["days_significant"]) == ((DAY - timedelta(days=2)).isoformat(), 3)
    assert (ev["anomaly"]["observed"], ev["anomaly"]["expected"], ev["anomaly"]["score"]) == (0.44, 0.94, -18.3)
    assert (ev["funnel"], ev["step"], ev["prev_event"], ev["step_event"]) == \
        ("Music Production", 2, "Production Started", "Sketch Uploaded")
    assert risk.confidence == pytest.approx(1.0)
    assert risk.context["area"] == "production" and risk.context["owner"] == "studio-team@hitcraft.example"
    # people read percentages, never 0.40, and no statistic in the headline
    assert "40%" in risk.title and "90%" in risk.title and "0.4" not in risk.title and "q=" not in risk.title


def test_the_largest_funnel_drop_off_is_a_risk_with_users_lost(planted):
    found = by_series(generate_insights(planted, DAY, CONFIG))
    drop = found[("risk", MP2, "all", "all")].evidence["dropoff"]
    assert (drop["users_prev"], drop["users"], drop["users_lost"], drop["entrants"]) == (1000, 600, 400, 1000)
    assert drop["drop_rate"] == pytest.approx(0.4) and drop["cohort_date"] == (DAY - timedelta(days=7)).isoformat()
    assert drop["window_days"] == 7 and drop["completeness"] == 1.0
    assert "within its 7-day window" in found[("risk", MP2, "all", "all")].summary
    # Onboarding's drop-off at step 2, the same size as ever, is context of that step's success: one insight
    success = found[("success", ONB2, "all", "all")].evidence
    [onboarding] = [r for r in success["related_metrics"] if r["facet"] == "dropoff"]
    assert (onboarding["users_lost"], onboarding["metric"]) == (60, ONB2)


def test_a_cohort_still_converting_is_not_read_as_a_drop_off(tmp_path):
    conn = warehouse(tmp_path / "w.duckdb")
    # yesterday's and today's entrants (completeness 0.14 and 0): most have not uploaded a sketch *yet*
    for age, share in ((0, 0.0), (1, 1 / 7)):
        for k, (event, n) in enumerate(zip(("Production Started", "Sketch Uploaded", "Production Completed"),
                                           (1000, 90, 20)), start=1):
            conn.execute("insert into analytics.funnel_steps (funnel, cohort_date, dimension, segment, step, "
                         "step_event, users, conversion_from_prev, conversion_from_start, completeness) "
                         "values ('Music Production', ?, 'all', 'all', ?, ?, ?, 0.1, 0.1, ?)",
                         [DAY - timedelta(days=age), k, event, n, share])
    assert [i for i in generate_insights(conn, DAY, CONFIG) if i.evidence["lead"] == "dropoff"] == []
    plant_funnel(conn, DAY, "Music Production", [1000, 600, 550])     # the cohort of DAY - 7: complete
    [drop] = [i.evidence["dropoff"] for i in generate_insights(conn, DAY, CONFIG) if i.evidence["lead"] == "dropoff"]
    assert (drop["users_lost"], drop["cohort_date"]) == (400, (DAY - timedelta(days=7)).isoformat())


def test_an_anomaly_carries_its_root_cause_and_absorbs_the_same_move_in_a_segment(planted):
    anomaly = by_series(generate_insights(planted, DAY, CONFIG))[("anomaly", "event_users:Sign Up", "all", "all")]
    ev = anomaly.evidence
    assert (ev["anomaly"]["observed"], ev["anomaly"]["expected"], ev["anomaly"]["q_value"]) == (171.0, 107.0, 0.0073)
    assert ev["anomaly"]["root_cause"] == [TIKTOK]
    assert "driven by channel = tiktok: 110% of the rise" in anomaly.summary.lower()
    assert [(s["dimension"], s["segment"]) for s in ev["segments"]] == [("platform", "iOS")]
    assert anomaly.context["area"] == "onboarding"


def test_successes_opportunities_and_trends_carry_their_evidence(planted):
    found = by_series(generate_insights(planted, DAY, CONFIG))
    success = found[("success", ONB2, "all", "all")].evidence
    assert success["lead"] == "persisted"
    # a funnel step's series is dated the day after entry: the evidence names the entry day
    assert success["persisted"]["anomaly_date"] == (DAY - timedelta(days=11)).isoformat()
    assert (success["persisted"]["observed"], success["persisted"]["current_7d"]) == (0.67, 0.71)
    assert {k: success["change_point"][k] for k in ONB_SHIFT if k not in ("shift", "date")} == \
        {k: v for k, v in ONB_SHIFT.items() if k not in ("shift", "date")}
    assert success["change_point"]["date"] == (date.fromisoformat(ONB_SHIFT["date"]) - timedelta(days=1)).isoformat()
    assert success["trend"]["q_value"] == 0.017
    feature = found[("opportunity", "event_users:Feature Used", "all", "all")].evidence["trend"]
    assert (feature["slope"], feature["pct_change_28d"], feature["current_7d"]) == (11.1, 0.32, 1244.0)
    youtube = found[("risk", "dau", "channel", "youtube")].evidence
    assert (youtube["trend"]["trend"], youtube["trend"]["pct_change_28d"], youtube["users_affected"]) == \
        ("decreasing", -0.253, 180.0)
    canada = found[("opportunity", "week1_retention", "country", "CA")]
    assert canada.evidence["comparison"]["share_of_users"] == pytest.approx(50 / 850)
    assert canada.title.startswith("CA users do better") and "yet they are only" in canada.title


def test_a_turn_from_rising_to_falling_is_sized_by_its_trend_line(tmp_path):
    """Three weeks into a decline after a rise, the last 28 days' mean is still above the 28 before: the
    trend's size (and the title's number) is how far Sen's line fell, so the decline is a finding."""
    conn = warehouse(tmp_path / "w.duckdb")
    plant_dau(conn, DAY, {("all", "all"): 3000.0, ("channel", "youtube"): 240.0})
    plant_trend(conn, DAY, "dau", "channel", "youtube", -2.4, 0.002, 240.0, -0.05, 262.0, 0.06, line=-0.24)
    found = by_series(generate_insights(conn, DAY, CONFIG))
    risk = found[("risk", "dau", "channel", "youtube")]
    assert risk.evidence["trend"]["trend_change"] == -0.24
    assert risk.title == "Daily active users among users from youtube down 24% in 28 days"
    assert "-24% along its trend line over 28 days" in risk.summary
    assert not unsupported_numbers(risk.title + " " + risk.summary, risk.evidence)
    # a row written before trend lines (no trend_change) keeps the mean-on-mean change: up, so no finding
    conn.execute("update analytics.trends set trend_change = null")
    assert ("risk", "dau", "channel", "youtube") not in by_series(generate_insights(conn, DAY, CONFIG))


def test_the_products_usage_rising_as_a_whole_is_one_trend_and_a_segment_returning_less_is_a_risk(tmp_path):
    conn = warehouse(tmp_path / "w.duckdb")
    plant_dau(conn, DAY, {("all", "all"): 3000.0, ("channel", "youtube"): 240.0})
    for metric, current in (("dau", 3000.0), ("sessions", 5200.0), ("wau", 9000.0), ("mau", 21000.0),
                            ("event_users:Page View", 2900.0)):
        plant_trend(conn, DAY, metric, "all", "all", 5.0, 0.001, current, 0.03, current * 0.95, 0.15, line=0.18)
    plant_trend(conn, DAY, "stickiness", "channel", "youtube", -0.002, 0.004, 0.11, -0.05, 0.12, -0.2, line=-0.27)
    found = by_series(generate_insights(conn, DAY, CONFIG))
    assert set(found) == {("trend", "dau", "all", "all"), ("risk", "stickiness", "channel", "youtube")}
    usage = found[("trend", "dau", "all", "all")]
    assert {r["metric"] for r in usage.evidence["related_metrics"]} == {"sessions", "wau", "mau",
                                                                       "event_users:Page View"}
    returning = found[("risk", "stickiness", "channel", "youtube")]
    assert returning.title == "Stickiness (DAU/MAU) among users from youtube down 27% in 28 days"
    assert "come back less often" in rule_recommendation(returning)
    # a segment's WAU and MAU only repeat its DAU: never findings of their own
    plant_trend(conn, DAY, "mau", "channel", "youtube", -3.0, 0.001, 900.0, -0.1, 950.0, -0.2, line=-0.2)
    assert ("risk", "mau", "channel", "youtube") not in by_series(generate_insights(conn, DAY, CONFIG))


def plant_return_change(conn, day, metric, dimension, segment, recent, baseline, q, days=2, recent_from=None):
    """`days` tested days running, ending on `day`, on which the series' return rate was significantly down:
    recent (successes, trials) of the cohorts from `recent_from` against the baseline's."""
    conn.execute(named_statements("analysis/return_rates.sql")["create_table"])
    for back in range(days):
        d = day - timedelta(days=back)
        start = (recent_from or day - timedelta(days=14)) - timedelta(days=back)
        conn.execute("insert into analytics.return_rates values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
                     "?, ?, ?, ?, ?, ?)",
                     [d, metric, dimension, segment, start + timedelta(days=6), start + timedelta(days=6),
                      recent[1] // 7, recent[0] // 7, recent[0] / recent[1], start, start + timedelta(days=6),
                      recent[1], recent[0], start - timedelta(days=28), start - timedelta(days=1), baseline[1],
                      baseline[0], 0.0, q / 10, q, "down", True])


def test_a_channels_cohorts_returning_less_is_one_risk_with_its_falling_activity_inside(tmp_path):
    conn = warehouse(tmp_path / "w.duckdb")
    plant_dau(conn, DAY, {("all", "all"): 3000.0, ("channel", "youtube"): 240.0})
    plant_trend(conn, DAY, "dau", "channel", "youtube", -3.1, 0.0033, 180.0, -0.074, 207.0, -0.253)
    plant_trend(conn, DAY, "stickiness", "channel", "youtube", -0.002, 0.004, 0.11, -0.05, 0.12, -0.2, line=-0.27)
    plant_comparison(conn, DAY, "week1_retention", "channel", "youtube", 90, 800, 0.36, 0.52, -0.3, 1e-4)
    joined = DAY - timedelta(days=20)
    plant_return_change(conn, DAY, "first_week_return", "channel", "youtube", (43, 140), (246, 560), 2e-6,
                        days=3, recent_from=joined)
    # a single significant day is not yet a sustained change
    plant_return_change(conn, DAY, "first_week_return", "channel", "google", (60, 140), (300, 560), 0.01, days=1)
    found = by_series(generate_insights(conn, DAY, CONFIG))
    assert set(found) == {("risk", "first_week_return", "channel", "youtube")}
    risk = found[("risk", "first_week_return", "channel", "youtube")]
    ev = risk.evidence
    assert {r["metric"] for r in ev["related_metrics"]} == {"dau", "stickiness", "week1_retention"}
    # dated by the cohorts where the change was first seen (the run's first day: 2 days before this one)
    assert ev["since"] == (joined - timedelta(days=2)).isoformat()
    assert risk.title == (f"Users from youtube: first-week return down to 31% for those who joined since "
                          f"{fmt_day(joined - timedelta(days=2))} (from 44%)")
    assert "came back within a week of joining" in risk.summary and "(strong evidence)" in risk.summary
    assert unsupported_numbers(risk.title + " " + risk.summary + " " + rule_recommendation(risk), ev) == []
    # ranked as the risk it is: a change (news), sized by the rise of the share who do not come back
    assert ev["retention"]["lost_share_change"] == pytest.approx((246 / 560 - 43 / 140) / (1 - 246 / 560))
    ranked = rank_insights(with_status(list(found.values()), set(), []), CONFIG)
    assert news(ranked[0].evidence, ranked[0].kind) == 1.0


def test_missing_tables_are_skipped(tmp_path):
    conn = duckdb.connect(str(tmp_path / "empty.duckdb"))
    ensure_schema(conn)
    assert generate_insights(conn, DAY, CONFIG) == []
    conn.execute(named_statements("analysis/funnels.sql")["schema"])
    plant_funnel(conn, DAY, "Music Production", [1000, 600, 550])
    assert [(i.kind, i.evidence["lead"]) for i in generate_insights(conn, DAY, CONFIG)] == [("risk", "dropoff")]


def test_the_end_of_a_spike_is_not_a_fall_and_generic_events_are_not_opportunities(tmp_path):
    conn = warehouse(tmp_path / "w.duckdb")
    spike = [{"date": (DAY - timedelta(days=12)).isoformat(), "mean_before": 100.0, "mean_after": 160.0,
              "shift": 60.0, "relative_shift": 0.6},
             {"date": (DAY - timedelta(days=7)).isoformat(), "mean_before": 160.0, "mean_after": 105.0,
              "shift": -55.0, "relative_shift": -0.34}]
    plant_trend(conn, DAY, "event_users:Sign Up", "all", "all", 0.1, 0.5, 104.0, 0.0, 120.0, 0.01, spike)
    plant_trend(conn, DAY, "event_users:Login", "all", "all", 5.0, 0.001, 900.0, 0.05, 850.0, 0.2)
    found = by_series(generate_insights(conn, DAY, CONFIG))
    assert set(found) == {("trend", "event_users:Login", "all", "all")}
    # the same drop without the spike before it is a risk on an important metric
    conn.execute("delete from analytics.trends where metric = 'event_users:Sign Up'")
    plant_trend(conn, DAY, "event_users:Sign Up", "all", "all", 0.1, 0.5, 104.0, 0.0, 120.0, 0.01, spike[1:])
    risk = by_series(generate_insights(conn, DAY, CONFIG))[("risk", "event_users:Sign Up", "all", "all")]
    assert risk.evidence["change_point"]["mean_after"] == 105.0


def test_the_day_keeps_the_most_important_findings(planted, monkeypatch):
    from hitcraft_assets.insights import generators

    everything = generate_insights(planted, DAY, CONFIG)
    monkeypatch.setattr(generators, "MAX_INSIGHTS", 3)
    kept = generate_insights(planted, DAY, CONFIG)
    best = [i.insight_id for i in rank_insights(everything, CONFIG)[:3]]
    assert sorted(i.insight_id for i in kept) == sorted(best)


def test_generation_is_deterministic(planted):
    first = generate_insights(planted, DAY, CONFIG)
    assert generate_insights(planted, DAY, CONFIG) == first


# ------------------------------------------------------------------------------------------ ranking


def make(kind="risk", metric="event_users:Login", dimension="all", users=1000.0, rel=0.3, confidence=0.99,
         status="new", ident=None):
    ev = {"metric": metric, "dimension": dimension, "segment": "all" if dimension == "all" else "x",
          "users_affected": users, "relative_change": rel, "source": ["test"]}
    return Insight(insight_id=ident or insight_id(kind, metric, dimension, ev["segment"]), as_of_date=DAY,
                   kind=kind, title="t", summary="s", evidence=ev, confidence=confidence, status=status)


@pytest.mark.parametrize(("better", "worse"), [
    (make(metric="event_users:Production Completed"), make(metric="event_users:Login")),     # importance
    (make(metric=MP2), make(metric="funnel:Onboarding:step3")),      # a leak before Production Completed
    (make(users=10_000), make(users=100, ident="z")),                # users affected
    (make(confidence=0.99), make(confidence=0.6, ident="z")),        # confidence
    (make(rel=0.5), make(rel=0.05, ident="z")),                      # effect size
    (make(dimension="all"), make(dimension="platform")),             # totals over segments
    (make(status="new"), make(status="ongoing", ident="z")),         # novelty
    (make(status="ongoing"), make(status="resolved", ident="z")),
])
def test_ranking_puts_the_more_important_finding_first(better, worse):
    ranked = rank_insights([worse, better], CONFIG)
    assert [i.insight_id for i in ranked] == [better.insight_id, worse.insight_id]
    assert [i.priority_rank for i in ranked] == [1, 2]
    assert ranked[0].impact_score > ranked[1].impact_score > 0


def test_ranking_is_deterministic_and_breaks_ties_by_id():
    twins = [make(ident=f"id{n}") for n in (3, 1, 2)]
    others = [make(metric=f"event_users:E{n}", users=10 ** (n % 4 + 1), rel=0.1 * (n % 5 + 1)) for n in range(12)]
    pool = twins + others
    ranked = rank_insights(pool, CONFIG)
    rng = random.Random(7)
    for _ in range(5):
        rng.shuffle(pool)
        assert rank_insights(pool, CONFIG) == ranked
    tied = [i.insight_id for i in ranked if i.insight_id.startswith("id")]
    assert tied == ["id1", "id2", "id3"]
    assert [i.priority_rank for i in ranked] == list(range(1, len(pool) + 1))


def test_importance_counts_downstream_funnel_events_and_defaults_to_one():
    assert importance(MP2, CONFIG) == 4.0             # Sketch Uploaded 3, Production Completed 4
    assert importance("event_count:Sign Up", CONFIG) == 3.0
    assert importance("dau", CONFIG) == 1.0
    assert impact_score(make(), CONFIG) > 0


# ------------------------------------------------------------------------------------------ identity and status


def test_ids_are_stable_and_status_goes_new_ongoing_resolved(tmp_path):
    conn = warehouse(tmp_path / "w.duckdb")
    day1, day2, day3, day4 = (DAY + timedelta(days=n) for n in range(4))
    plant_comparison(conn, day1, MP2, "platform", "Android", 300, 700, 0.4, 0.9, -1.1, 1e-48)
    plant_comparison(conn, day1, ONB2, "country", "US", 400, 600, 0.3, 0.5, -0.4, 1e-5)
    plant_comparison(conn, day2, MP2, "platform", "Android", 320, 690, 0.35, 0.92, -1.2, 1e-60)   # other numbers
    plant_comparison(conn, day4, ONB2, "country", "US", 400, 600, 0.3, 0.5, -0.4, 1e-5)           # back again

    def run(day):
        ids, open_rows = previous_state(conn, day)
        insights = with_status(generate_insights(conn, day, CONFIG), ids, open_rows, day=day)
        insights = [dataclasses.replace(i, recommendation=rule_recommendation(i))
                    for i in rank_insights(insights, CONFIG)]
        write_insights(conn, day, insights)
        return {(i.evidence["metric"], i.status): i for i in insights}

    android_id = insight_id("risk", MP2, "platform", "Android")
    us_id = insight_id("risk", ONB2, "country", "US")
    first = run(day1)
    assert {k: i.insight_id for k, i in first.items()} == {(MP2, "new"): android_id, (ONB2, "new"): us_id}
    second = run(day2)
    assert set(second) == {(MP2, "ongoing"), (ONB2, "resolved")}
    assert second[(MP2, "ongoing")].insight_id == android_id
    assert second[(MP2, "ongoing")].evidence["comparison"]["segment_value"] == 0.35
    resolved = second[(ONB2, "resolved")]
    assert resolved.insight_id == us_id and resolved.kind == "risk" and resolved.title == first[(ONB2, "new")].title
    assert resolved.evidence["comparison"] == first[(ONB2, "new")].evidence["comparison"]
    assert resolved.priority_rank == 2      # resolved rows come after open ones
    third = run(day3)
    assert set(third) == {(MP2, "resolved")}    # the finding resolved yesterday is not resolved again
    fourth = run(day4)
    assert set(fourth) == {(ONB2, "new")}       # a finding that comes back after resolution is new again
    assert fourth[(ONB2, "new")].insight_id == us_id
    stored = conn.execute("select as_of_date, status, count(*) from insights.insights "
                          "group by all order by all").fetchall()
    assert stored == [(day1, "new", 2), (day2, "ongoing", 1), (day2, "resolved", 1), (day3, "resolved", 1),
                      (day4, "new", 1)]


def test_write_insights_replaces_the_day(planted):
    insights = rank_insights(generate_insights(planted, DAY, CONFIG), CONFIG)
    insights = [dataclasses.replace(i, recommendation=rule_recommendation(i)) for i in insights]
    assert write_insights(planted, DAY, insights) == len(insights)
    before = planted.execute("select * from insights.insights order by insight_id").fetchall()
    write_insights(planted, DAY, insights)
    assert planted.execute("select * from insights.insights order by insight_id").fetchall() == before
    write_insights(planted, DAY + timedelta(days=1), insights[:2])
    counts = planted.execute("select as_of_date, count(*) from insights.insights group by 1 order by 1").fetchall()
    assert counts == [(DAY, len(insights)), (DAY + timedelta(days=1), 2)]
    ids, open_rows = previous_state(planted, DAY + timedelta(days=2))
    assert ids == {i.insight_id for i in insights[:2]} and all(isinstance(r["evidence"], dict) for r in open_rows)
    stored = json.loads(planted.execute("select evidence from insights.insights where insight_id = ? "
                                        "and as_of_date = ?", [insights[0].insight_id, DAY]).fetchone()[0])
    assert stored == insights[0].evidence


# ------------------------------------------------------------------------------------------ numbers and rules


@pytest.mark.parametrize(("text", "tokens"), [
    ("Android converts 0.40 vs 0.98 since 2026-10-28 (q=1e-179)", ["0.40", "0.98", "2026-10-28", "1e-179"]),
    ("1,234 users (+64 %), -12%, 3E-05", ["1234", "64%", "12%", "3e-5"]),
    ("step2 of funnel:Music Production:step2, viral_hook_v2, mp3", []),
    ("z=-18.3; 7 days", ["18.3", "7"]),
])
def test_numbers_in(text, tokens):
    assert numbers_in(text) == tokens


EVIDENCE = {"rate": 0.397, "q": 1.4e-179, "p": 1.004e-181, "n": 1234, "since": "2026-10-28", "change": -0.12,
            "cause": [{"summary": "channel = tiktok: 64% of the rise"}]}


@pytest.mark.parametrize("token", ["0.40", "0.4", "0.397", "40%", "39.7%", "1e-181", "1.4e-179", "1234",
                                   "2026-10-28", "28", "64%", "12%", "0.12"])
def test_numbers_allowed_accepts_evidence_numbers_as_people_write_them(token):
    assert token in numbers_allowed(EVIDENCE)


@pytest.mark.parametrize("token", ["0.41", "41%", "0", "1e-179", "1e-178", "99", "2027-01-01", "1235", "13%"])
def test_numbers_allowed_rejects_numbers_not_in_evidence(token):
    assert token not in numbers_allowed(EVIDENCE)


def test_every_number_of_titles_summaries_and_recommendations_is_in_the_evidence(planted):
    insights = rank_insights(generate_insights(planted, DAY, CONFIG), CONFIG)
    resolved = with_status([], set(), [{"insight_id": "x1", "as_of_date": DAY, "kind": "risk", "title": "t",
                                         "evidence": insights[0].evidence, "context": {}, "confidence": 0.9}],
                           day=DAY + timedelta(days=1))
    checked = 0
    for insight in insights + resolved:
        allowed = numbers_allowed(insight.evidence)
        for text in (insight.title, insight.summary, rule_recommendation(insight)):
            assert set(numbers_in(text)) <= allowed, (insight.kind, text)
            checked += len(numbers_in(text))
    assert checked > 50


def test_rule_recommendations_are_specific_and_deterministic(planted):
    found = by_series(generate_insights(planted, DAY, CONFIG))
    android = found[("risk", MP2, "platform", "Android")]
    text = rule_recommendation(android)
    assert text == rule_recommendation(android)
    # the day the change began: the anomaly episode's first day (today's alert here, on the first-day
    # conversion known today), named by the entry day of the users it concerns: "22 Nov"
    for part in ("Android users", f"around {DAY.day - 1} Nov", "Sketch Uploaded", "studio-team@hitcraft.example"):
        assert part in text
    assert "q=" not in text and "0.40" not in text and text.count(". ") <= 3      # two or three sentences
    assert "tiktok" in rule_recommendation(found[("anomaly", "event_users:Sign Up", "all", "all")])
    # the change point of Onboarding's step 2 on 13 Nov, in first-day conversion: the users who entered on 12 Nov
    assert "12 Nov" in rule_recommendation(found[("success", ONB2, "all", "all")])
    drop = rule_recommendation(found[("risk", MP2, "all", "all")])
    assert "after Production Started in Music Production" in drop and "studio-team@hitcraft.example" in drop
    assert all(rule_recommendation(i) for i in found.values())


# ------------------------------------------------------------------------------------------ context


@pytest.mark.parametrize(("metric", "area"), [
    ("event_users:Sign Up", "onboarding"),
    ("event_count:Profile Completed", "onboarding"),
    ("funnel:Onboarding:step3", "onboarding"),
    ("event_users:Sketch Uploaded", "production"),
    (MP2, "production"),
    ("event_users:Production Completed", "production"),
    ("event_users:Prompt Selected", "lyrics"),
    ("event_count:Lyrics Completed", "lyrics"),
    ("event_users:Subscription Started", "billing"),
    ("dau", None),
])
def test_context_maps_metrics_to_areas_and_owners(metric, area):
    context = insight_context(metric, "all", CONFIG)
    assert context["area"] == area
    assert context["owner"] == (CONFIG.product["owners"][area] if area else None)
    assert context["product"] == "HitCraft" and context["goals"] == CONFIG.product["goals"]


def test_context_areas_from_config_and_glossary():
    config = dataclasses.replace(CONFIG, product={**CONFIG.product, "areas": {"billing": ["Sketch*"]}})
    assert insight_context("event_users:Sketch Uploaded", "all", config)["area"] == "billing"
    glossary = insight_context(MP2, "all", CONFIG)["glossary"]
    assert set(glossary) == {"Production Started", "Sketch Uploaded"}


def test_a_level_shift_of_a_total_names_the_segments_behind_it(planted):
    shift = {"date": (DAY - timedelta(days=6)).isoformat(), "mean_before": 420.0, "mean_after": 260.0,
             "shift": -160.0, "relative_shift": -160.0 / 420.0}
    plant_trend(planted, DAY, "event_users:Sketch Uploaded", "all", "all", -2.0, 0.3, 262.0, -0.02, 300.0,
                -0.2, [shift])
    cause = [{"dimension": "platform", "segment": "Android", "before": 170.0, "after": 22.0,
              "contribution": 0.925, "summary": "platform = Android: 92% of the drop"}]
    planted.execute("update analytics.trends set root_cause = ? where metric = 'event_users:Sketch Uploaded'",
                    [json.dumps(cause)])
    found = by_series(generate_insights(planted, DAY, CONFIG))
    # Android users, whose Sketch Uploaded step is broken, carry 92% of the total's fall: one story, told by
    # the Android finding, with the total's fall inside it
    assert ("risk", "event_users:Sketch Uploaded", "all", "all") not in found
    android = found[("risk", MP2, "platform", "Android")]
    merged = [r for r in android.evidence["related_metrics"] if r["metric"] == "event_users:Sketch Uploaded"]
    assert merged and merged[0]["mean_after"] == 260.0 and merged[0]["dimension"] == "all"
    text = rule_recommendation(android)
    assert not unsupported_numbers(text, android.evidence)
    assert "Sketch Uploaded users" in android.summary


# ------------------------------------------------------------------------------------------ new things

def small_shop(path, days: int = 40):
    """A product of 12 daily users (5 iOS, 7 Android) and 150 page views a day over `days` days to DAY."""
    from hitcraft_assets.analysis.identity import ensure_identity

    conn = warehouse(path)
    ensure_identity(conn)
    rows = []
    for i in range(days):
        d = DAY - timedelta(days=days - 1 - i)
        rows += [(d, "dau", "all", "all", 12.0), (d, "dau", "platform", "iOS", 5.0),
                 (d, "dau", "platform", "Android", 7.0), (d, "event_count:Page View", "all", "all", 150.0)]
    conn.executemany("insert into analytics.daily_metrics values (?, ?, ?, ?, ?)", rows)
    return conn


def plant_new_event(conn, event: str, per_day: list[int], users: int, platform: str = "iOS") -> None:
    """`event` on the last len(per_day) days, by `users` users, all on `platform`."""
    from hitcraft_assets_tests.journeys import load_journeys

    journeys: dict = {}
    n = 0
    for k, count in enumerate(per_day):
        d = DAY - timedelta(days=len(per_day) - 1 - k)
        conn.executemany("insert into analytics.daily_metrics values (?, ?, ?, ?, ?)",
                         [(d, f"event_count:{event}", "all", "all", float(count)),
                          (d, f"event_count:{event}", "platform", platform, float(count))])
        for j in range(count):
            journeys.setdefault(f"{event}-u{n % users}", []).append(
                (event, f"{d.isoformat()}T10:{j % 60:02d}:00+00:00", {"$os": platform}))
            n += 1
    load_journeys(conn, journeys)


def test_a_new_error_event_is_a_risk_from_its_first_days_with_where_it_happens(tmp_path):
    conn = small_shop(tmp_path / "w.duckdb")
    plant_new_event(conn, "payment_error", [4, 15, 11], users=9)
    plant_new_event(conn, "debug_ping", [1], users=1)           # one stray event: not news
    found = {i.evidence["metric"]: i for i in generate_insights(conn, DAY, CONFIG) if i.evidence["lead"] == "new"}
    assert set(found) == {"event_count:payment_error"}
    risk = found["event_count:payment_error"]
    new = risk.evidence["new"]
    assert risk.kind == "risk" and (new["events"], new["users"], new["days_before"]) == (30, 9, 37)
    assert new["p_value"] < 1e-8
    assert risk.title == f"New event payment_error since {DAY.day - 2} Nov: 30 events from 9 users"
    assert "100% of them among iOS (platform; 42% of users)" in risk.summary
    assert unsupported_numbers(risk.title + " " + risk.summary, risk.evidence) == []
    assert "iOS" in rule_recommendation(risk)


def test_nothing_is_new_in_a_products_first_weeks_and_a_new_feature_value_is_an_opportunity(tmp_path):
    young = small_shop(tmp_path / "young.duckdb", days=10)
    plant_new_event(young, "payment_error", [4, 15, 11], users=9)
    assert [i for i in generate_insights(young, DAY, CONFIG) if i.evidence["lead"] == "new"] == []
    conn = small_shop(tmp_path / "w.duckdb")
    conn.execute("insert into analytics.daily_metrics values (?, 'event_users:Feature Used', 'feature', "
                 "'Stem Separation', 5)", [DAY])
    [launch] = [i for i in generate_insights(conn, DAY, CONFIG) if i.evidence["lead"] == "new"]
    assert launch.kind == "opportunity" and launch.evidence["new"]["first_seen"] == DAY.isoformat()
    assert launch.title == f"New: Stem Separation (Feature Used) since {DAY.day} Nov, 5 users a day"


def test_a_new_events_evidence_rows(tmp_path):
    from hitcraft_assets.delivery.evidence import evidence_rows

    conn = small_shop(tmp_path / "w.duckdb")
    plant_new_event(conn, "payment_error", [4, 15, 11], users=9)
    [risk] = [i for i in generate_insights(conn, DAY, CONFIG) if i.evidence["lead"] == "new"]
    rows = dict(evidence_rows(json.loads(json.dumps(risk.evidence, default=str))))
    assert rows["First seen"] == (DAY - timedelta(days=2)).isoformat()
    assert (rows["Events since"], rows["Users since"]) == ("30", "9")
    assert rows["Among iOS (platform)"] == "100% of the events, 42% of users"


def test_a_young_products_growth_ranks_below_an_incident_in_its_first_weeks(tmp_path):
    """A shop three weeks old whose usage has risen on every day it could be trended: that growth is how it
    began, a standing fact; a small segment's step breaking on the day ranks above it. The same growth in a
    product trended for 80 days, significant only lately, is news."""
    def shop(path, trended_days):
        conn = small_shop(path, days=max(trended_days + 10, 21))
        for k in range(trended_days):
            plant_trend(conn, DAY - timedelta(days=k), "dau", "all", "all", 0.4, 0.001 if k < 12 else 0.5,
                        12.0, 0.2, 9.0, 1.5, line=1.5)
        plant_anomaly(conn, DAY, MP2, "platform", "iOS", 0.1, 0.7, -6.0, 0.001)
        plant_funnel(conn, DAY, "Music Production", [5, 4, 3], "platform", "iOS")
        return rank_insights(generate_insights(conn, DAY, CONFIG), CONFIG)

    young = shop(tmp_path / "young.duckdb", trended_days=12)
    [growth] = [i for i in young if i.evidence["metric"] == "dau"]
    [incident] = [i for i in young if i.evidence["metric"] == MP2]
    assert growth.evidence["trend"]["days_trended"] == 12 and growth.evidence["trend"]["days_significant"] == 12
    assert incident.priority_rank < growth.priority_rank
    older = shop(tmp_path / "older.duckdb", trended_days=80)
    [growth_old] = [i for i in older if i.evidence["metric"] == "dau"]
    assert growth_old.evidence["trend"]["days_significant"] == 12
    assert growth_old.impact_score > growth.impact_score * 2.5   # news 1, not 0.3


ARTICLE = {"dimension": "channel", "segment": "article", "expected": 0.0, "observed": 47.0, "contribution": 0.95,
           "summary": "channel = article: 95% of the rise"}


def test_a_burst_of_visitors_is_told_by_the_activity_it_moved(tmp_path):
    """A viral article's visitors lift DAU, page views and support chats together (one root cause, one
    story). The story is "Daily active users spiked to 56", not its side effect: the support chats' exact
    tail from 1.5 a day moves relatively as much, and the page views' score is higher, yet the activity's
    move counts double. A side effect that moved far more than the activity still leads."""
    conn = warehouse(tmp_path / "w.duckdb")
    plant_dau(conn, DAY, {("all", "all"): 56})
    plant_anomaly(conn, DAY, "dau", "all", "all", 56.0, 8.66, 8.3, 1e-10, [ARTICLE])
    plant_anomaly(conn, DAY, "event_users:$mp_web_page_view", "all", "all", 56.0, 8.66, 10.1, 1e-12, [ARTICLE])
    plant_anomaly(conn, DAY, "event_users:support_chat", "all", "all", 10.0, 1.46, 4.3, 1e-4, [ARTICLE])
    [story] = [i for i in generate_insights(conn, DAY, CONFIG) if i.kind == "anomaly"]
    assert story.evidence["metric"] == "dau" and story.title.startswith("Daily active users spiked to 56")
    assert {r["metric"] for r in story.evidence["related_metrics"]} >= {"event_users:$mp_web_page_view",
                                                                        "event_users:support_chat"}
    conn.execute("delete from analytics.anomalies")
    plant_anomaly(conn, DAY, "dau", "all", "all", 62.0, 56.0, 4.0, 1e-3, [ARTICLE])
    plant_anomaly(conn, DAY, "event_users:support_chat", "all", "all", 18.0, 1.5, 7.0, 1e-8, [ARTICLE])
    [story] = generate_insights(conn, DAY, CONFIG)
    # led by the support chats, it is a risk: users asking for help twelve times as often
    assert story.evidence["metric"] == "event_users:support_chat" and story.kind == "risk"
    text = rule_recommendation(story)
    assert "incident" in text and "support_chat" in text and unsupported_numbers(text, story.evidence) == []
    conn.close()


def test_more_errors_or_support_requests_are_a_risk_and_fewer_are_not(tmp_path):
    """A rise of an event that reads as a failure or a request for help is a risk with incident advice;
    the same rise of an ordinary event is an anomaly, and a fall of the error event is not a risk."""
    conn = warehouse(tmp_path / "w.duckdb")
    plant_anomaly(conn, DAY, "event_count:payment_error", "all", "all", 40.0, 4.0, 9.0, 1e-9, [])
    plant_anomaly(conn, DAY, "event_users:Refund Requested", "all", "all", 12.0, 2.0, 6.0, 1e-7, [])
    plant_anomaly(conn, DAY, "event_users:Song Shared", "all", "all", 40.0, 4.0, 9.0, 1e-9, [])
    plant_anomaly(conn, DAY, "event_users:checkout_error", "all", "all", 1.0, 12.0, -5.0, 1e-6, [])
    found = {i.evidence["metric"]: i for i in generate_insights(conn, DAY, CONFIG)}
    assert found["event_count:payment_error"].kind == "risk"
    assert found["event_users:Refund Requested"].kind == "risk"
    assert found["event_users:Song Shared"].kind == "anomaly"
    assert found["event_users:checkout_error"].kind == "anomaly"
    for metric in ("event_count:payment_error", "event_users:Refund Requested"):
        text = rule_recommendation(found[metric])
        assert text.startswith("Treat it as an incident") and metric.split(":")[1] in text, text
        assert "Rule out bots" not in text
    assert "Rule out bots" in rule_recommendation(found["event_users:Song Shared"])
    conn.close()


def test_a_risks_recommendation_points_at_its_leading_segment_without_repeating_the_summary(planted):
    """The summary says what drove the move ("Driven by channel = tiktok: ..."); a risk's recommendation
    sends the reader there first rather than repeating that sentence. (The planted day's anomaly with a
    root cause is a rise; read as a risk it takes the anomaly branch of the risk recommendations.)"""
    anomaly = by_series(generate_insights(planted, DAY, CONFIG))[("anomaly", "event_users:Sign Up", "all", "all")]
    risk = dataclasses.replace(anomaly, kind="risk")
    text = rule_recommendation(risk)
    assert "Start with channel = tiktok, where most of the change is." in text
    assert "Driven by" not in text and "Driven by" in risk.summary
    assert unsupported_numbers(text, risk.evidence) == []
    # a segment that moved against the total is not where to start
    against = dict(TIKTOK, contribution=-0.2)
    other = {"dimension": "platform", "segment": "iOS", "contribution": 0.7, "summary": "platform = iOS: 70% of the rise"}
    ev = dict(risk.evidence, anomaly=dict(risk.evidence["anomaly"], root_cause=[against, other]))
    assert "Start with platform = iOS," in rule_recommendation(dataclasses.replace(risk, evidence=ev))
