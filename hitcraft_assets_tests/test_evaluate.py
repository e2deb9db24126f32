"""How `hitcraft evaluate` scores detection against ground truth: which detections count for a story
(its own series, its direction, within 3 days), how delays are measured, and which alerts on total
series count as false."""

from datetime import date

from hitcraft_assets.detection.evaluate import score, story_series

FUNNELS = {"Music Production": ["Production Started", "Sketch Uploaded", "Production Completed"]}
TRUTH = {"stories": [
    {"id": "android", "metric": "funnel_conversion", "funnel": "Music Production", "step": 2,
     "dimension": "platform", "segment": "Android", "start_date": "2026-03-10", "end_date": "2026-03-30",
     "direction": "down"},
    {"id": "spike", "metric": "event_count:Sign Up", "dimension": "channel", "segment": "tiktok",
     "start_date": "2026-03-05", "end_date": "2026-03-07", "direction": "up"},
    {"id": "slow", "metric": "dau", "dimension": "channel", "segment": "youtube",
     "start_date": "2026-03-01", "end_date": "2026-03-30", "direction": "down"},
]}


def anomaly(day, metric, dimension="all", segment="all", direction="up"):
    return {"metric_date": date.fromisoformat(day), "metric": metric, "dimension": dimension, "segment": segment,
            "direction": direction}


def trend(day, metric, dimension, segment, trend="no trend", q=0.5, change_points=()):
    return {"as_of_date": date.fromisoformat(day), "metric": metric, "dimension": dimension, "segment": segment,
            "trend": trend, "q_value": q, "change_points": list(change_points)}


def run(anomalies=(), trends=()):
    return score(TRUTH, anomalies, trends, FUNNELS, first_scored_day=date(2026, 3, 1), last_day=date(2026, 3, 30))


def test_a_funnel_story_is_scored_on_its_step_series():
    assert story_series(TRUTH["stories"][0]) == ("funnel:Music Production:step2", "platform", "Android")
    ev = run([anomaly("2026-03-11", "funnel:Music Production:step2", "platform", "Android", "down")])
    android = ev.stories[0]
    assert (android.detected, android.delay_days, android.how) == (True, 1, "anomaly")


def test_wrong_direction_wrong_segment_or_too_late_do_not_count():
    ev = run([anomaly("2026-03-10", "funnel:Music Production:step2", "platform", "Android", "up"),
              anomaly("2026-03-10", "funnel:Music Production:step2", "platform", "iOS", "down"),
              anomaly("2026-03-05", "event_count:Sign Up", "channel", "tiktok", "up")])
    assert not ev.stories[0].detected and ev.stories[0].delay_days is None
    ev = run([anomaly("2026-03-15", "funnel:Music Production:step2", "platform", "Android", "down")])
    assert not ev.stories[0].detected and ev.stories[0].delay_days == 5       # late, but reported


def test_change_points_and_new_trends_count_pre_existing_trends_do_not():
    cp = {"date": "2026-03-02", "shift": -40.0}
    ev = run(trends=[trend("2026-03-03", "dau", "channel", "youtube", change_points=[cp])])
    assert (ev.stories[2].detected, ev.stories[2].how, ev.stories[2].delay_days) == (True, "change_point", 2)
    fresh = [trend("2026-02-28", "dau", "channel", "youtube"),
             trend("2026-03-20", "dau", "channel", "youtube", "decreasing", 0.01)]
    assert run(trends=fresh).stories[2].delay_days == 19
    stale = [trend("2026-02-28", "dau", "channel", "youtube", "decreasing", 0.01),
             trend("2026-03-02", "dau", "channel", "youtube", "decreasing", 0.01)]
    assert run(trends=stale).stories[2].delay_days is None


def test_false_alerts_are_unexplained_alerts_on_totals_per_30_days():
    ev = run([
        anomaly("2026-03-06", "dau"),                                   # the sign-up spike moves volume: explained
        anomaly("2026-03-12", "event_count:Sketch Uploaded", direction="down"),  # a step event of the funnel story
        anomaly("2026-03-12", "event_count:Message Liked", "platform", "iOS"),   # a segment: not a total
        anomaly("2026-03-20", "event_count:Feedback Submitted"),        # nothing explains it
        anomaly("2026-03-03", "sessions"),                              # the DAU decline story moves volume
        anomaly("2026-03-03", "event_users:Lyrics Completed"),          # no story involves lyrics
    ])
    assert ev.false_alerts == 2 and ev.evaluated_days == 30 and ev.false_alerts_per_30_days == 2.0
    assert {a["metric"] for a in ev.unexplained} == {"event_count:Feedback Submitted", "event_users:Lyrics Completed"}


def test_false_alerts_per_series_per_30_days_on_totals_and_segments():
    """Per series tested: 2 unexplained total alerts over 30 days x 40 totals; 1 unexplained segment alert (the
    Android funnel's own break is the story, a segment's Sign Up burst on the spike's days is explained)."""
    tested = {date(2026, 3, d): (40, 600) for d in range(1, 31)}
    tested[date(2026, 2, 27)] = (40, 600)                               # before the scored days: not counted
    ev = score(TRUTH, [
        anomaly("2026-03-20", "event_count:Feedback Submitted"),
        anomaly("2026-03-03", "event_users:Lyrics Completed"),
        anomaly("2026-03-12", "event_count:Message Liked", "platform", "iOS"),
        anomaly("2026-03-12", "funnel:Music Production:step2", "platform", "Android", direction="down"),
        anomaly("2026-03-06", "event_count:Sign Up", "country", "US"),
    ], [], FUNNELS, first_scored_day=date(2026, 3, 1), last_day=date(2026, 3, 30), tested=tested)
    assert (ev.false_alerts, ev.segment_false_alerts) == (2, 1)
    assert (ev.totals_series_days, ev.segment_series_days) == (1200, 18000)
    assert ev.totals_per_series_30d == 0.05 and ev.segments_per_series_30d == round(30 / 18000, 4)
    assert run().totals_per_series_30d is None                          # nothing tested: no rate


def test_top_insight_coverage_counts_days_with_the_story_in_the_top_10():
    from hitcraft_assets.detection.evaluate import top_insight_coverage

    def row(day, rank, metric, dimension="all", segment="all", status="new", merged=()):
        return {"as_of_date": date.fromisoformat(day), "priority_rank": rank, "status": status,
                "evidence": {"metric": metric, "dimension": dimension, "segment": segment,
                             "related_metrics": list(merged)}}

    insights = [
        row("2026-03-10", 1, "funnel:Music Production:step2", "platform", "Android"),
        row("2026-03-11", 12, "funnel:Music Production:step2", "platform", "Android"),      # below the top 10
        row("2026-03-12", 3, "funnel:Music Production:step2", "platform", "Android", status="resolved"),
        # a sign-up count merged into a users insight still speaks for the story's series
        row("2026-03-06", 2, "event_users:Sign Up", "channel", "tiktok"),
        row("2026-03-07", 4, "dau", merged=[{"metric": "event_count:Sign Up", "dimension": "channel",
                                              "segment": "tiktok"}]),
    ]
    cov = {c.story_id: c for c in top_insight_coverage(TRUTH, insights, last_day=date(2026, 3, 30))}
    assert (cov["android"].active_days, cov["android"].days_in_top, cov["android"].first_delay_days) == (21, 1, 0)
    assert (cov["spike"].days_in_top, cov["spike"].first_delay_days) == (2, 1)
    assert cov["slow"].days_in_top == 0 and cov["slow"].first_delay_days is None


def test_a_move_the_other_way_does_not_tell_a_story_and_a_segment_returning_less_does():
    from hitcraft_assets.detection.evaluate import top_insight_coverage

    def row(day, metric, direction, dimension="all", segment="all", segments=()):
        return {"as_of_date": date.fromisoformat(day), "priority_rank": 1, "status": "new",
                "evidence": {"metric": metric, "dimension": dimension, "segment": segment, "direction": direction,
                             "segments": list(segments)}}

    youtube = {"metric": "dau", "dimension": "channel", "segment": "youtube"}
    insights = [row("2026-03-02", "dau", "up", segments=[youtube]),        # the product's rise, YouTube in it
                row("2026-03-03", "dau", "down", segments=[youtube]),      # the product's fall, YouTube in it
                row("2026-03-04", "stickiness", "down", "channel", "youtube"),
                row("2026-03-05", "stickiness", "up", "channel", "youtube")]
    cov = {c.story_id: c for c in top_insight_coverage(TRUTH, insights, last_day=date(2026, 3, 30))}
    assert cov["slow"].days_in_top == 2 and cov["slow"].first_delay_days == 2


def test_a_new_value_of_the_storys_key_property_tells_its_launch():
    from hitcraft_assets.detection.evaluate import top_insight_coverage

    truth = {"stories": [{"id": "launch", "metric": "event_users:Feature Used", "dimension": "all", "segment": "all",
                          "start_date": "2026-03-10", "end_date": "2026-03-30", "direction": "up",
                          "event_filter": {"feature": "Stem Separation"}}]}

    def row(day, segment):
        return {"as_of_date": date.fromisoformat(day), "priority_rank": 1, "status": "new",
                "evidence": {"metric": "event_users:Feature Used", "dimension": "feature", "segment": segment,
                             "direction": "up"}}

    insights = [row("2026-03-10", "Stem Separation"), row("2026-03-11", "Lyrics Assist")]
    [cov] = top_insight_coverage(truth, insights, last_day=date(2026, 3, 30))
    assert (cov.days_in_top, cov.first_delay_days) == (1, 0)


def test_evaluate_reuses_only_the_demo_it_was_asked_for(tmp_path):
    """`hitcraft evaluate` keeps an export in its folder only when it is the demo asked for (seed, days,
    user base and, with --end-date, last day); otherwise it says why and regenerates it."""
    from hitcraft_assets.cli import demo_mismatch
    from hitcraft_assets.demo.simulator import generate_demo

    export = tmp_path / "export"
    end = date(2026, 11, 30)
    assert demo_mismatch(export, 3, 7, 400, end) == "no complete demo"
    generate_demo(export, days=3, end_date=end, users=400, seed=7)
    assert demo_mismatch(export, 3, 7, 400, end) is None
    assert demo_mismatch(export, 3, 7, 400, None) is None          # no --end-date: any last day will do
    held = "it holds seed 7, 3 days to 2026-11-30, a base of 400 users"
    assert demo_mismatch(export, 3, 7, 400, date(2026, 12, 1)) == held
    assert demo_mismatch(export, 3, 42, 400, end) == held
    assert demo_mismatch(export, 4, 7, 400, end) == held
    assert demo_mismatch(export, 3, 7, 800, end) == held
    assert demo_mismatch(export, 3, 7, None, end) == held          # the default base is 15,000 users
    generate_demo(export, days=3, end_date=end, users=400, seed=7, flat=True)   # bench/history.py's demo
    assert demo_mismatch(export, 3, 7, 400, end) == held + ", flat"
    (export / "ground_truth.json").unlink()
    assert demo_mismatch(export, 3, 7, 400, end) == "no complete demo"
