"""The language of insights, pinned on generated insights (the planted day of test_insights.py, and days built
for one rule each): what a product manager reads must be forwardable as it is.

- numbers as people read them: conversions as percentages (never 0.40), counts with thousands separators,
  days as "4 Nov", the strength of the evidence in words; no q-, p- or z-value, test name, effect size or
  slope in a title, summary or recommendation (they stay in the evidence);
- names instead of ids: no metric id (`funnel:...`, `event_users:...`) in any text;
- one headline number per title (a comparison states its two sides), recommendations of two or three
  sentences before the owner;
- one story, one insight: a segment that explains the total's move carries it; an event's users and the
  funnel step into that event are one finding; the same break seen through two dimensions is one finding;
- a change is dated by its first anomalous day, and a finding on an event with a key property names the
  value that carries it ("Stem Separation (Feature Used): ... from 0 at its launch on ...").
"""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest

from hitcraft_assets.insights import generate_insights, rank_insights, rule_recommendation, with_status
from hitcraft_assets.insights.llm import language_problem
from hitcraft_assets.insights.rules import fmt_day, numbers_in, unsupported_numbers
from hitcraft_assets_tests.test_insights import (
    CONFIG,
    DAY,
    MP2,
    ONB2,
    by_series,
    plant_anomaly,
    plant_comparison,
    plant_dau,
    plant_day,
    plant_return_change,
    plant_trend,
    planted,  # noqa: F401  (fixture)
    warehouse,
)

ISO_DATE = re.compile(r"\b\d{4}-\d{2}-\d{2}\b")
METRIC_ID = re.compile(r"\b(?:funnel|event_users|event_count):")
UNSEPARATED = re.compile(r"(?<![\d,.])\d{4,}(?![\d,])")
YEARS = {str(y) for y in range(2000, 2100)}


def texts(insight) -> dict[str, str]:
    return {"title": insight.title, "summary": insight.summary, "recommendation": rule_recommendation(insight)}


def all_insights(conn):
    found = rank_insights(generate_insights(conn, DAY, CONFIG), CONFIG)
    resolved = with_status([], set(), [{"insight_id": "x1", "as_of_date": DAY - timedelta(days=1), "kind": "risk",
                                        "title": "t", "evidence": found[0].evidence, "context": {},
                                        "confidence": 0.9}], day=DAY)
    return found + resolved


def test_no_statistic_decimal_share_iso_date_or_metric_id_in_any_text(planted):  # noqa: F811
    insights = all_insights(planted)
    assert len(insights) >= 7
    for insight in insights:
        for field, text in texts(insight).items():
            where = (insight.kind, field, text)
            assert language_problem(text) is None, where
            assert not ISO_DATE.search(text), where
            assert not METRIC_ID.search(text), where
            assert not unsupported_numbers(text, insight.evidence), where
            if insight.evidence.get("conversion"):
                assert not re.search(r"(?<![\w.])0\.\d", text), where


def test_counts_have_thousands_separators_and_days_read_as_days(planted):  # noqa: F811
    for insight in all_insights(planted):
        for text in texts(insight).values():
            assert not [n for n in UNSEPARATED.findall(text) if n not in YEARS], text
    feature = by_series(generate_insights(planted, DAY, CONFIG))[("opportunity", "event_users:Feature Used", "all", "all")]
    assert "1,244" in feature.summary
    assert fmt_day("2026-11-04") == "4 Nov" and fmt_day(None) == "n/a"


def test_one_headline_number_per_title_and_short_recommendations(planted):  # noqa: F811
    for insight in generate_insights(planted, DAY, CONFIG):
        numbers = [n for n in numbers_in(insight.title) if not ISO_DATE.fullmatch(n)]
        lead = insight.evidence["lead"]
        # a comparison states both sides; a change its level after (and before); day numbers are dates
        limit = 4 if lead in ("comparison", "change_point") else 3
        assert len(numbers) <= limit, insight.title
        body = rule_recommendation(insight).split(" Owner:")[0]
        sentences = [s for s in re.split(r"(?<=[.!?])\s+", body) if s]
        assert 1 <= len(sentences) <= 3, body


def test_evidence_strength_is_in_words_and_the_q_value_stays_in_the_evidence(planted):  # noqa: F811
    android = by_series(generate_insights(planted, DAY, CONFIG))[("risk", MP2, "platform", "Android")]
    assert "very strong evidence" in android.summary
    assert android.evidence["comparison"]["q_value"] == 1e-48
    assert "40%" in android.title and "90%" in android.title


def test_a_segment_that_explains_the_totals_fall_is_one_insight_with_the_total_inside(planted):  # noqa: F811
    # the whole step falls from 98% to 83% on the day Android (30% of the users) falls from 97% to 40%
    shift = {"date": (DAY - timedelta(days=5)).isoformat(), "mean_before": 0.98, "mean_after": 0.83,
             "shift": -0.15, "relative_shift": -0.15 / 0.98}
    plant_trend(planted, DAY, MP2, "all", "all", -0.001, 0.01, 0.82, -0.01, 0.84, -0.14, [shift])
    android_shift = {"date": (DAY - timedelta(days=5)).isoformat(), "mean_before": 0.97, "mean_after": 0.40,
                     "shift": -0.57, "relative_shift": -0.57 / 0.97}
    plant_trend(planted, DAY, MP2, "platform", "Android", -0.01, 0.001, 0.40, -0.01, 0.45, -0.5, [android_shift])
    found = by_series(generate_insights(planted, DAY, CONFIG))
    assert not [k for k in found if k[1:] == (MP2, "all", "all")]
    android = found[("risk", MP2, "platform", "Android")]
    assert android.evidence["total"]["mean_after"] == 0.83 and android.evidence["total"]["mean_before"] == 0.98
    assert "for all users down to 83% from 98%" in android.summary


def test_an_events_users_and_the_funnel_step_into_it_are_one_insight(planted):  # noqa: F811
    plant_trend(planted, DAY, "event_users:Profile Completed", "all", "all", 2.4, 0.002, 111.0, 0.036, 89.2, 0.69)
    found = by_series(generate_insights(planted, DAY, CONFIG))
    assert ("opportunity", "event_users:Profile Completed", "all", "all") not in found
    success = found[("success", ONB2, "all", "all")]
    assert "event_users:Profile Completed" in [r["metric"] for r in success.evidence["related_metrics"]]
    assert "Profile Completed users" in success.summary


def test_the_same_break_in_two_dimensions_is_one_insight(planted):  # noqa: F811
    # a country with many Android users converts worse from the same day: Android explains more of it
    day = (DAY - timedelta(days=5)).isoformat()
    for dim, seg, before, after, n in (("platform", "Android", 0.97, 0.40, 300), ("country", "NG", 0.98, 0.77, 60)):
        plant_trend(planted, DAY, MP2, dim, seg, -0.01, 0.001, after, -0.01, after, -0.3,
                    [{"date": day, "mean_before": before, "mean_after": after, "shift": after - before,
                      "relative_shift": (after - before) / before}])
    plant_comparison(planted, DAY, MP2, "country", "NG", 60, 940, 0.66, 0.83, -0.4, 1e-4)
    found = by_series(generate_insights(planted, DAY, CONFIG))
    assert ("risk", MP2, "country", "NG") not in found
    android = found[("risk", MP2, "platform", "Android")]
    assert ("country", "NG") in [(s["dimension"], s["segment"]) for s in android.evidence["segments"]]


def test_a_change_is_dated_by_its_first_anomalous_day(tmp_path):
    conn = warehouse(tmp_path / "w.duckdb")
    plant_dau(conn, DAY, {("all", "all"): 2000})
    start = DAY - timedelta(days=6)
    # the anomaly episode began on `start`; the change point, found later, puts the step a day after it
    plant_anomaly(conn, start, "dau", "all", "all", 1500.0, 2000.0, -6.0, 1e-6)
    conn.execute("update analytics.anomalies set status = 'new', episode_start = ? where metric_date = ?",
                 [start, start])
    shift = {"date": (start + timedelta(days=1)).isoformat(), "mean_before": 2000.0, "mean_after": 1500.0,
             "shift": -500.0, "relative_shift": -0.25}
    CONFIG_IMPORTANT = CONFIG.__class__(**{**CONFIG.__dict__, "metric_importance": {"dau": 2.0}})
    plant_trend(conn, DAY, "dau", "all", "all", -5.0, 0.001, 1500.0, -0.01, 1600.0, -0.2, [shift])
    [insight] = [i for i in generate_insights(conn, DAY, CONFIG_IMPORTANT) if i.evidence["metric"] == "dau"]
    assert insight.evidence["since"] == start.isoformat()
    assert f"since {fmt_day(start)}" in insight.title
    conn.close()


def test_an_event_with_a_key_property_names_the_value_that_carries_it(tmp_path):
    conn = warehouse(tmp_path / "w.duckdb")
    plant_dau(conn, DAY, {("all", "all"): 2000})
    launch = DAY - timedelta(days=20)
    for back in range(60):
        day = DAY - timedelta(days=back)
        stem = 0 if day < launch else 20 * (day - launch).days
        rows = [("Stem Separation", stem), ("Mastering", 300)] if day >= launch else [("Mastering", 300)]
        for value, users in rows:
            conn.execute("insert into analytics.daily_metrics values (?, 'event_users:Feature Used', 'feature', ?, ?)",
                         [day, value, users])
    plant_trend(conn, DAY, "event_users:Feature Used", "all", "all", 20.0, 0.001, 650.0, 0.3, 500.0, 0.9)
    [insight] = [i for i in generate_insights(conn, DAY, CONFIG) if i.evidence["metric"] == "event_users:Feature Used"]
    named = insight.evidence["named"]
    assert (named["property"], named["value"], named["launched"]) == ("feature", "Stem Separation",
                                                                      (launch + timedelta(days=1)).isoformat())
    assert insight.title.startswith("Stem Separation (Feature Used): ")
    assert f"from 0 at its launch on {fmt_day(launch + timedelta(days=1))}" in insight.title
    assert "Stem Separation" in rule_recommendation(insight)
    assert not unsupported_numbers(insight.title + insight.summary, insight.evidence)
    conn.close()


def test_insight_texts_are_json_safe(planted):  # noqa: F811
    for insight in all_insights(planted):
        json.dumps(texts(insight))


def test_a_campaigns_spike_and_its_users_converting_worse_are_one_insight(tmp_path):
    conn = warehouse(tmp_path / "w.duckdb")
    plant_dau(conn, DAY, {("all", "all"): 2000, ("channel", "tiktok"): 300})
    # tiktok sign-ups spike, and tiktok's new users rarely complete their profile
    plant_anomaly(conn, DAY, "event_users:Sign Up", "channel", "tiktok", 81.0, 12.0, 9.0, 1e-9)
    plant_comparison(conn, DAY, ONB2, "channel", "tiktok", 81, 120, 0.15, 0.52, -0.8, 1e-6)
    found = by_series(generate_insights(conn, DAY, CONFIG))
    assert ("risk", ONB2, "channel", "tiktok") not in found
    spike = found[("anomaly", "event_users:Sign Up", "channel", "tiktok")]
    assert ONB2 in [r["metric"] for r in spike.evidence["related_metrics"]]
    conn.close()


def test_a_segment_doing_less_and_retaining_worse_is_one_insight(tmp_path):
    conn = warehouse(tmp_path / "w.duckdb")
    plant_dau(conn, DAY, {("all", "all"): 2000, ("channel", "youtube"): 200})
    plant_trend(conn, DAY, "event_users:Production Completed", "channel", "youtube", -2.0, 0.001, 150.0, -0.05,
                170.0, -0.22)
    plant_comparison(conn, DAY, "week1_retention", "channel", "youtube", 90, 800, 0.36, 0.52, -0.3, 1e-4)
    found = by_series(generate_insights(conn, DAY, CONFIG))
    assert ("risk", "week1_retention", "channel", "youtube") not in found
    [activity] = [i for k, i in found.items() if k[1] == "event_users:Production Completed"]
    assert "week1_retention" in [r["metric"] for r in activity.evidence["related_metrics"]]
    conn.close()


def test_a_return_rate_change_reads_as_cohorts_with_percentages_and_days(tmp_path):
    conn = warehouse(tmp_path / "w.duckdb")
    plant_day(conn)
    plant_return_change(conn, DAY, "first_week_return", "channel", "youtube", (43, 140), (2460, 5600), 2e-6,
                        days=3)
    plant_return_change(conn, DAY, "weekly_return", "channel", "direct", (1400, 2000), (6800, 8000), 1e-4)
    found = [i for i in all_insights(conn) if i.evidence["lead"] == "retention"]
    assert {i.evidence["metric"] for i in found} == {"first_week_return", "weekly_return"}
    for insight in found:
        for field, text in texts(insight).items():
            where = (insight.kind, field, text)
            assert language_problem(text) is None, where
            assert not ISO_DATE.search(text) and not METRIC_ID.search(text), where
            assert not unsupported_numbers(text, insight.evidence), where
            assert not re.search(r"(?<![\w.])0\.\d", text), where
            assert not [n for n in UNSEPARATED.findall(text) if n not in YEARS], text
        assert len([n for n in numbers_in(insight.title)]) <= 3, insight.title
    weekly = next(i for i in found if i.evidence["metric"] == "weekly_return")
    assert weekly.title.startswith("Returning users from direct come back less since ")
    assert "5,600" in next(i for i in found if i.evidence["metric"] == "first_week_return").summary
    conn.close()


def test_a_pooled_conversion_change_names_its_days_not_one_day(tmp_path):
    # a funnel step with few entrants a day is judged on its last 3 days pooled (detection/rates.py): the
    # insight says so, and names the entry days, instead of "spiked to 75% on" one day
    conn = warehouse(tmp_path / "w.duckdb")
    plant_dau(conn, DAY, {("all", "all"): 20})
    plant_anomaly(conn, DAY, ONB2, "all", "all", 0.74, 0.45, 4.2, 1e-4)
    conn.execute("update analytics.anomalies set window_days = 3 where metric_date = ?", [DAY])
    [insight] = [i for i in generate_insights(conn, DAY, CONFIG) if i.evidence["metric"] == ONB2]
    entry_day = fmt_day(DAY - timedelta(days=1))
    assert f"rose to 74% in the 3 days to {entry_day}" in insight.title, insight.title
    assert f"entered Onboarding in the 3 days to {entry_day}" in insight.summary, insight.summary
    assert not unsupported_numbers(insight.title + " " + insight.summary, insight.evidence)
    # a one-day judgement reads as before
    conn.execute("update analytics.anomalies set window_days = 1 where metric_date = ?", [DAY])
    [insight] = [i for i in generate_insights(conn, DAY, CONFIG) if i.evidence["metric"] == ONB2]
    assert " on " in insight.title and "3 days" not in insight.title
    conn.close()


def test_a_sentence_opening_with_a_named_segment_keeps_its_capitals():
    """'iOS users' at the start of a sentence stay 'iOS users' (not 'IOS users'); a plain word is capitalised."""
    from hitcraft_assets.insights.rules import _upper_first, _who

    assert _who({"dimension": "platform", "segment": "iOS"}) == "iOS users"
    assert _who({"dimension": "platform", "segment": "web"}) == "Web users"
    assert _upper_first("eBay sellers") == "eBay sellers" and _upper_first("all users") == "All users"
    assert _upper_first("") == ""
