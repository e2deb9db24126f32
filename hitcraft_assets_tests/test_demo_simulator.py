"""Tests of the demo product simulator (hitcraft_assets.demo.simulator).

The whole engine is developed and demonstrated against this simulator's output, and its
ground_truth.json is the answer key the detection and insight stages are scored against. So the files
must look exactly like Mixpanel's raw export, the documented dirt must be exactly what is in the
files, and each documented story must really be visible in the events. These tests read the files
back (as JSON and through DuckDB) and check those promises; they do not re-run the model.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from hitcraft_assets.demo.simulator import FUNNELS, DemoSummary, demo_exists, generate_demo

END = date(2025, 3, 31)
DAYS = 60
USERS = 2500
SEED = 7
TRACKING_PLAN = {
    "Sign Up", "Login", "Logout", "Profile Completed", "Page View", "Production Started", "Sketch Uploaded",
    "Prompt Selected", "Production Completed", "Lyrics Composition Started", "Lyrics Completed",
    "Feature Used", "Feedback Submitted", "Message Liked", "Message Disliked", "Subscription Started",
    "Subscription Cancelled",
}
STORY_IDS = {"sketch_upload_android_break", "tiktok_campaign_spike", "stem_separation_adoption",
             "producer_retention_decline", "onboarding_success"}
HEX32 = re.compile(r"^[0-9a-f]{32}$")


def _hashes(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def _day_ms(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() * 1000)


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> tuple[Path, DemoSummary, dict]:
    out = tmp_path_factory.mktemp("demo")
    summary = generate_demo(out, days=DAYS, end_date=END, users=USERS, seed=SEED)
    return out, summary, json.loads((out / "ground_truth.json").read_text())


@pytest.fixture(scope="module")
def lines(demo) -> dict[str, list[str]]:
    out, _, truth = demo
    return {name: (out / name).read_text().splitlines() for name in truth["files"]}


@pytest.fixture(scope="module")
def con(demo) -> duckdb.DuckDBPyConnection:
    """Well-formed, deduplicated events (Mixpanel's dedup key), one row each."""
    out, _, _ = demo
    db = duckdb.connect()
    db.execute(f"""
        create table ev as
        select distinct event, did, t, make_timestamp(t * 1000)::date as dt, os, ch, campaign, feature, uid, device
        from (
            select event, properties->>'distinct_id' as did, try_cast(properties->>'time' as bigint) as t,
                   properties->>'$."$os"' as os, properties->>'utm_source' as ch,
                   properties->>'utm_campaign' as campaign, properties->>'feature' as feature,
                   properties->>'$."$user_id"' as uid, properties->>'$."$device_id"' as device,
                   properties->>'$."$insert_id"' as insert_id
            from read_ndjson('{out}/*.jsonl', columns = {{'event': 'VARCHAR', 'properties': 'JSON'}},
                             ignore_errors = true)
        )
        where event is not null and t is not null and did is not null
    """)
    return db


def _story(truth: dict, story_id: str) -> tuple[date, date]:
    story = next(s for s in truth["stories"] if s["id"] == story_id)
    return date.fromisoformat(story["start_date"]), date.fromisoformat(story["end_date"])


# ---------------------------------------------------------------------------- determinism

def test_same_seed_gives_byte_identical_files_and_another_seed_differs(demo, tmp_path):
    out, _, _ = demo
    again = tmp_path / "again"
    other = tmp_path / "other"
    generate_demo(again, days=DAYS, end_date=END, users=USERS, seed=SEED)
    generate_demo(other, days=DAYS, end_date=END, users=USERS, seed=SEED + 1)
    assert _hashes(again) == _hashes(out)
    first_day = f"{END - timedelta(days=DAYS - 1)}.jsonl"
    assert _hashes(other)[first_day] != _hashes(out)[first_day]


# ---------------------------------------------------------------------------- format and dirt

def test_summary_and_files_agree_with_ground_truth(demo):
    out, summary, truth = demo
    start = END - timedelta(days=DAYS - 1)
    assert (summary.start_date, summary.end_date) == (start, END)
    assert truth["start_date"] == start.isoformat() and truth["end_date"] == END.isoformat()
    assert truth["seed"] == SEED
    [missing] = summary.missing_days
    assert truth["missing_days"] == [missing.isoformat()]
    assert start < missing < END
    assert not (out / f"{missing}.jsonl").exists()
    expected = [f"{start + timedelta(days=i)}.jsonl" for i in range(DAYS) if start + timedelta(days=i) != missing]
    assert truth["files"] == expected
    assert sorted(p.name for p in out.glob("*.jsonl") if p.name != "profiles.jsonl") == expected
    assert summary.days_written == DAYS - 1
    assert summary.duplicates == sum(truth["dirt"]["duplicates"].values())
    assert summary.malformed == len(truth["dirt"]["malformed"]) >= 4
    assert summary.events == sum(truth["events"].values())
    assert demo_exists(out)


def test_demo_exists_needs_every_listed_file(tmp_path):
    assert not demo_exists(tmp_path / "nowhere")
    generate_demo(tmp_path, days=3, end_date=END, users=50, seed=1)
    assert demo_exists(tmp_path)
    (tmp_path / f"{END}.jsonl").unlink()
    assert not demo_exists(tmp_path)


def _malformed_reason(line: str) -> str | None:
    """Why a line is not a usable export event, or None when it is."""
    try:
        obj = json.loads(line)
    except json.JSONDecodeError:
        return "truncated_json"
    props = obj.get("properties", {})
    if "event" not in obj:
        return "missing_event"
    if not isinstance(props.get("time"), int):
        return "non_numeric_time"
    if "distinct_id" not in props:
        return "missing_distinct_id"
    return None


def test_every_line_is_an_export_event_except_exactly_the_listed_malformed_ones(demo, lines):
    _, _, truth = demo
    listed = {(m["date"], m["line_no"]): m["reason"] for m in truth["dirt"]["malformed"]}
    found = {}
    for name, day_lines in lines.items():
        day = date.fromisoformat(name.removesuffix(".jsonl"))
        lo, hi = _day_ms(day), _day_ms(day + timedelta(days=1))
        for no, line in enumerate(day_lines, start=1):
            reason = _malformed_reason(line)
            if reason:
                found[(day.isoformat(), no)] = reason
                continue
            event = json.loads(line)
            props = event["properties"]
            assert event["event"] in TRACKING_PLAN
            assert lo <= props["time"] < hi, (name, no)
            assert isinstance(props["distinct_id"], str) and props["distinct_id"]
            assert HEX32.match(props["$insert_id"])
            assert isinstance(props["mp_processing_time_ms"], int) and props["mp_processing_time_ms"] >= props["time"]
    assert found == listed
    assert set(listed.values()) == {"truncated_json", "missing_event", "non_numeric_time", "missing_distinct_id"}


def test_duplicate_deliveries_match_ground_truth_and_keep_their_identity(demo, lines):
    _, _, truth = demo
    bad = {(m["date"], m["line_no"]) for m in truth["dirt"]["malformed"]}
    insert_ids = {}
    for name, day_lines in lines.items():
        day = name.removesuffix(".jsonl")
        keys = Counter()
        processing = {}
        for no, line in enumerate(day_lines, start=1):
            if (day, no) in bad:
                continue
            e = json.loads(line)
            p = e["properties"]
            key = (e["event"], p["distinct_id"], p["time"], p["$insert_id"])
            if keys[key]:
                assert p["mp_processing_time_ms"] >= processing[key]  # a redelivery is never earlier
            processing[key] = p["mp_processing_time_ms"]
            keys[key] += 1
            assert insert_ids.setdefault(p["$insert_id"], key) == key  # ids are unique per event
        assert sum(keys.values()) - len(keys) == truth["dirt"]["duplicates"][day], day
        assert len(keys) == truth["events"][day]
    total = sum(truth["dirt"]["duplicates"].values())
    assert 0.005 < total / len(insert_ids) < 0.02  # about 1%


# ---------------------------------------------------------------------------- identity and profiles

def test_identity_follows_simplified_id_merge(con):
    anon = con.execute("""select count(*), count(*) filter (did <> '$device:' || device or uid is not null)
                      from ev where did like '$device:%'""").fetchone()
    assert anon[0] > 1000 and anon[1] == 0
    identified = con.execute(
        "select count(*) filter (did <> uid or device is null) from ev where uid is not null").fetchone()
    assert identified == (0,)
    assert con.execute("select count(*) from ev where uid is null and did not like '$device:%'").fetchone() == (0,)
    signups = con.execute("""select count(*), count(*) filter (uid is null or device is null) from ev
                         where event = 'Sign Up'""").fetchone()
    assert signups[0] > 300 and signups[1] == 0
    # Sign Up is the first event carrying the user id, and the device browsed anonymously before it
    late = con.execute("""
        with s as (select uid, device, t from ev where event = 'Sign Up')
        select count(*) filter (first_t < s.t), count(*) filter (anon_t is null or anon_t > s.t)
        from s
        join (select uid, min(t) as first_t from ev where uid is not null group by uid) f using (uid)
        left join (select device, min(t) as anon_t from ev where uid is null group by device) a using (device)
    """).fetchone()
    assert late == (0, 0)


def test_profiles_are_engage_records_of_the_users_seen(demo, con):
    out, summary, _ = demo
    profiles = [json.loads(line) for line in (out / "profiles.jsonl").read_text().splitlines()]
    ids = {p["$distinct_id"] for p in profiles}
    assert len(ids) == len(profiles) == summary.users
    seen = {row[0] for row in con.execute("select distinct uid from ev where uid is not null").fetchall()}
    assert seen <= ids
    for p in profiles:
        props = p["$properties"]
        assert props["plan"] in {"free", "pro", "studio"}
        assert props["role"] and props["$country_code"]
        assert props["$created"] <= props["$last_seen"]
        assert props.get("$email", "x@example.com").endswith("@example.com")


# ---------------------------------------------------------------------------- realism

def test_growth_weekends_and_sessions_across_midnight(con):
    daily = dict(con.execute("select dt, count(distinct did) from ev group by dt").fetchall())
    days = sorted(daily)
    first, last = days[:14], days[-14:]
    assert sum(daily[d] for d in last) > 1.15 * sum(daily[d] for d in first)
    weekend = [daily[d] for d in days if d.weekday() >= 5]
    weekday = [daily[d] for d in days if d.weekday() < 5]
    assert sum(weekend) / len(weekend) < 0.92 * sum(weekday) / len(weekday)
    per_user_day = con.execute("select count(*) / count(distinct (did, dt)) from ev").fetchone()[0]
    assert 10 <= per_user_day <= 25
    # users active within minutes on both sides of a UTC midnight
    crossing = con.execute("""
        select count(distinct did) from ev a join ev b using (did)
        where b.dt = a.dt + 1 and a.t >= epoch_ms(b.dt::timestamp) - 600000 and b.t < epoch_ms(b.dt::timestamp) + 600000
    """).fetchone()[0]
    assert crossing > 20


# ---------------------------------------------------------------------------- stories

def test_ground_truth_lists_the_five_stories_after_a_baseline(demo):
    _, _, truth = demo
    start = date.fromisoformat(truth["start_date"])
    assert {s["id"] for s in truth["stories"]} == STORY_IDS
    for s in truth["stories"]:
        assert s["kind"] in {"risk", "opportunity", "success", "trend", "anomaly"}
        assert s["dimension"] in {"platform", "country", "channel", "all"}
        assert s["direction"] in {"up", "down"} and (s["size"] > 0) == (s["direction"] == "up")
        assert (date.fromisoformat(s["start_date"]) - start).days >= 14
        assert s["end_date"] <= truth["end_date"]
        if s["metric"] == "funnel_conversion":
            assert s["funnel"] in FUNNELS and 2 <= s["step"] <= len(FUNNELS[s["funnel"]])
        else:
            assert s["funnel"] is None and s["step"] is None
            assert s["metric"] == "dau" or s["metric"].split(":")[1] in TRACKING_PLAN


def test_short_runs_leave_out_stories_that_do_not_fit(tmp_path):
    generate_demo(tmp_path, days=20, end_date=END, users=100, seed=3)
    truth = json.loads((tmp_path / "ground_truth.json").read_text())
    assert len(truth["missing_days"]) == 1
    assert {s["id"] for s in truth["stories"]} < STORY_IDS  # only the late ones fit
    with pytest.raises(ValueError):
        generate_demo(tmp_path, days=0, end_date=END)


@pytest.mark.parametrize("seed", [1, 2])
def test_a_flat_demo_keeps_its_volume_and_the_default_one_grows(tmp_path, seed):
    """bench/history.py times day 30 against day 365 of a flat demo: the two days must differ in history,
    not in volume. Its last four weeks hold the stories' losses (the YouTube decline, the Android break)."""
    def weeks(flat: bool) -> tuple[float, float, float]:
        out = tmp_path / str(flat)
        generate_demo(out, days=180, end_date=END, users=3000, seed=seed, flat=flat)
        truth = json.loads((out / "ground_truth.json").read_text())
        v = [truth["events"][k] for k in sorted(truth["events"])]
        assert truth["growth"] == ("flat" if flat else "growing")
        return sum(v[:28]) / 28, sum(v[76:104]) / 28, sum(v[-28:]) / 28
    first, middle, last = weeks(True)
    assert 0.9 < middle / first < 1.1 and 0.8 < last / first < 1.1
    first, middle, last = weeks(False)
    assert middle / first > 1.15 and last / first > 1.5


def test_android_sketch_upload_breaks_and_other_platforms_do_not(demo, con):
    _, _, truth = demo
    broken, _ = _story(truth, "sketch_upload_android_break")
    rows = con.execute("""
        select os, dt >= $broken as after,
               count(*) filter (event = 'Sketch Uploaded') / count(*) filter (event = 'Production Started')
        from ev where event in ('Production Started', 'Sketch Uploaded') group by all
    """, {"broken": broken}).fetchall()
    ratio = {(os, after): r for os, after, r in rows}
    assert ratio[("Android", True)] < 0.55 * ratio[("Android", False)]
    assert ratio[("Android", True)] < 0.55 * ratio[("iOS", True)]
    for os in ("iOS", "Windows", "Mac OS X"):
        assert abs(ratio[(os, True)] / ratio[(os, False)] - 1) < 0.1


def test_tiktok_campaign_spikes_sign_ups_of_poorly_converting_users(demo, con):
    _, _, truth = demo
    a, b = _story(truth, "tiktok_campaign_spike")
    daily = dict(con.execute(
        "select dt, count(*) from ev where event = 'Sign Up' and ch = 'tiktok' group by dt").fetchall())
    inside = [daily.get(a + timedelta(days=i), 0) for i in range((b - a).days + 1)]
    outside = [n for d, n in daily.items() if not a <= d <= b]
    assert sum(inside) / len(inside) > 3 * sum(outside) / (DAYS - 1 - len(inside))
    rates = con.execute("""
        select campaign = 'viral_hook_v2',
               count(distinct uid) filter (event = 'Profile Completed') / count(distinct uid) filter (event = 'Sign Up')
        from ev where ch = 'tiktok' and uid is not null group by 1
    """).fetchall()
    rate = dict(rates)
    assert rate[True] < 0.3 < rate[False]


def test_stem_separation_users_grow_steadily_from_launch(demo, con):
    _, _, truth = demo
    launch, end = _story(truth, "stem_separation_adoption")
    daily = dict(con.execute("""select dt, count(distinct did) from ev
                            where event = 'Feature Used' and feature = 'Stem Separation' group by dt""").fetchall())
    assert min(daily) == launch
    n = (end - launch).days + 1
    series = [daily.get(launch + timedelta(days=i), 0) for i in range(n)]
    third = n // 3
    early, middle, late = (sum(series[i * third:(i + 1) * third]) for i in range(3))
    assert early < middle < late
    assert late > 2.5 * early


def test_onboarding_redesign_lifts_profile_completion(demo, con):
    _, _, truth = demo
    redesign, _ = _story(truth, "onboarding_success")
    a, b = _story(truth, "tiktok_campaign_spike")
    rates = dict(con.execute("""
        select s.dt >= $redesign, count(p.uid) / count(*)
        from (select uid, dt from ev where event = 'Sign Up') s
        left join (select distinct uid from ev where event = 'Profile Completed') p using (uid)
        where s.dt not between $a and $b
        group by 1
    """, {"redesign": redesign, "a": a, "b": b}).fetchall())
    assert rates[False] < 0.55 and rates[True] > 0.6


def test_youtube_users_return_less_and_less(demo, con):
    _, _, truth = demo
    start, end = _story(truth, "producer_retention_decline")
    # returning users (no Sign Up that day) from YouTube, as a share of all returning users
    share = dict(con.execute("""
        select dt, count(distinct did) filter (ch = 'youtube') / count(distinct did)
        from ev where uid is not null
          and (uid, dt) not in (select (uid, dt) from ev where event = 'Sign Up')
        group by dt
    """).fetchall())
    before = [v for d, v in share.items() if start - timedelta(days=14) <= d < start]
    last = [v for d, v in share.items() if d > end - timedelta(days=10)]
    assert sum(last) / len(last) < 0.7 * sum(before) / len(before)


# ---------------------------------------------------------------------------- scale

def test_events_per_day_sets_the_daily_volume(tmp_path):
    summary = generate_demo(tmp_path, days=1, end_date=END, events_per_day=20_000, seed=5)
    with open(tmp_path / f"{END}.jsonl") as fh:
        n = sum(1 for _ in fh)
    assert 18_000 <= n <= 22_000
    assert summary.events + summary.duplicates + summary.malformed == n
    assert summary.missing_days == []
