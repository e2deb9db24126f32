"""anomalies and trends as Dagster materializes them over a real DuckDB warehouse: a planted level drop
in one segment is flagged once (not every day after), with the segment as its root cause; trends find the
change point; a day without an export file is never an anomaly; the scan's counts are recorded."""

import json
from datetime import date, timedelta

import dagster as dg
import duckdb
import numpy as np

from hitcraft_assets.detection.assets import anomalies, trends
from hitcraft_assets.warehouse import WarehouseResource, ensure_schema

START = date(2026, 2, 1)
DAYS = 70
DROP = 50           # day index where Android loses 60% of its users
MISSING = 30        # day index whose export file was missing


def _funnel_steps(conn, days: int) -> None:
    """A two-step funnel: the total with about 70 entrants a day (judged one day at a time), Android with
    about 12 (pooled windows), iOS growing from 15 to 45 (pooled, then one day at a time once its median
    reaches 30: both of a conversion's walks)."""
    rng = np.random.default_rng(11)
    conn.execute("create table analytics.funnel_steps (funnel varchar, cohort_date date, dimension varchar, "
                 "segment varchar, step integer, users_1d bigint, conversion_1d_from_prev double)")
    rows = []
    for i in range(days):
        day = START + timedelta(days=i)
        for dimension, segment, entrants in (("all", "all", 70), ("platform", "Android", 12),
                                             ("platform", "iOS", 15 + 30 * i / days)):
            n = max(1, int(rng.poisson(entrants)))
            k = int(rng.binomial(n, 0.6))
            rows += [("checkout", day, dimension, segment, 1, n, None),
                     ("checkout", day, dimension, segment, 2, k, k / n)]
    conn.executemany("insert into analytics.funnel_steps values (?, ?, ?, ?, ?, ?, ?)", rows)


def build_warehouse(path, days: int = DAYS, funnel: bool = False) -> None:
    rng = np.random.default_rng(7)
    conn = duckdb.connect(str(path))
    ensure_schema(conn)
    conn.execute("create table analytics.daily_metrics (metric_date date, metric varchar, dimension varchar, "
                 "segment varchar, value double)")
    rows, log = [], []
    for i in range(days):
        day = START + timedelta(days=i)
        weekly = 0.8 if day.weekday() >= 5 else 1.0
        ios = rng.poisson(600 * weekly)
        android = rng.poisson(400 * weekly * (0.4 if i >= DROP else 1.0))
        if i == MISSING:
            ios = android = 0
        rows += [(day, "dau", "all", "all", ios + android), (day, "dau", "platform", "iOS", ios),
                 (day, "dau", "platform", "Android", android)]
        log.append((day, i != MISSING))
    conn.executemany("insert into analytics.daily_metrics values (?, ?, ?, ?, ?)", rows)
    if funnel:
        _funnel_steps(conn, days)
    conn.executemany("insert into raw.load_log (event_date, loaded_at, source, source_found, lines, rows_loaded, "
                     "rejected, duplicates_removed, distinct_users, bytes_read) values (?, now(), 'test', ?, 0, 0, 0, 0, 0, 0)", log)
    conn.close()


def test_a_level_drop_is_flagged_once_with_its_root_cause(tmp_path):
    db = tmp_path / "w.duckdb"
    build_warehouse(db)
    last = START + timedelta(days=DAYS - 1)
    with dg.instance_for_test() as instance:
        result = dg.materialize([anomalies, trends], resources={"duckdb": WarehouseResource(database=str(db))},
                                instance=instance, selection=[anomalies, trends],
                                tags={"dagster/asset_partition_range_start": (START + timedelta(days=20)).isoformat(),
                                      "dagster/asset_partition_range_end": last.isoformat()})
    assert result.success
    conn = duckdb.connect(str(db), read_only=True)
    flagged = conn.execute("select metric_date, dimension, segment, direction, root_cause from analytics.anomalies "
                           "where status = 'new' order by metric_date, dimension, segment").fetchall()
    drop_day = START + timedelta(days=DROP)
    total = [r for r in flagged if r[1] == "all"]
    # the total and Android are flagged on the day of the drop, and not again on the 19 days after it
    assert [r[0] for r in total] == [drop_day] and total[0][3] == "down"
    assert [(r[0], r[2]) for r in flagged if r[2] == "Android"] == [(drop_day, "Android")]
    cause = json.loads(total[0][4])
    assert cause[0]["segment"] == "Android" and cause[0]["contribution"] > 0.8
    assert "platform = Android" in cause[0]["summary"]
    # the days after stay visible as the same episode, until the new level is the baseline (7 days)
    continuing = conn.execute("select metric_date, episode_start, q_value from analytics.anomalies "
                              "where status = 'continuing' and dimension = 'all'").fetchall()
    assert continuing and all(r[1] == drop_day for r in continuing)
    assert max(r[0] for r in continuing) <= drop_day + timedelta(days=7)
    # the missing export day is a data outage, never an anomaly
    assert START + timedelta(days=MISSING) not in {r[0] for r in flagged}
    (tested, n_flagged), = conn.execute("select series_tested, series_flagged from analytics.detection_log "
                                        "where kind = 'anomalies' and as_of_date = ?", [drop_day]).fetchall()
    assert tested == 3 and n_flagged == 2
    change = conn.execute("select last_change_date, last_change_relative from analytics.trends "
                          "where as_of_date = ? and dimension = 'platform' and segment = 'Android' and metric = 'dau'",
                          [last]).fetchall()
    assert abs((change[0][0] - drop_day).days) <= 1 and change[0][1] < -0.5
    # the total's level shift is explained by Android too (root cause of a change, not only of an anomaly)
    (total_change,) = conn.execute("select root_cause from analytics.trends where as_of_date = ? and metric = 'dau' "
                                   "and dimension = 'all'", [last]).fetchall()[0]
    assert json.loads(total_change)[0]["segment"] == "Android"
    meta = {m.partition: m.metadata for m in result.asset_materializations_for_node("anomalies")}
    assert meta[drop_day.isoformat()]["series_flagged"].value == 2


def test_rerun_replaces_the_days_rows(tmp_path):
    db = tmp_path / "w.duckdb"
    build_warehouse(db)
    day = (START + timedelta(days=DROP)).isoformat()
    res = {"duckdb": WarehouseResource(database=str(db))}
    with dg.instance_for_test() as instance:
        for _ in range(2):
            assert dg.materialize([anomalies], partition_key=day, resources=res, instance=instance).success
    conn = duckdb.connect(str(db), read_only=True)
    assert conn.execute("select count(*) from analytics.anomalies where status = 'new'").fetchall()[0][0] == 2
    assert conn.execute("select count(*) from analytics.detection_log").fetchall()[0][0] == 1


def test_a_cohort_still_converting_is_not_a_collapse_and_a_real_break_is_found(tmp_path):
    """Entry cohorts convert over days 1-6: as of the last day, the youngest cohorts' full conversion is only
    partly there (37%, 50%, ... of their final 80%). Detection reads the first-day conversion, final the day
    after entry, so they are no anomaly; a cohort whose first-day conversion really fell is one, dated the
    day it became known."""
    from hitcraft_assets.warehouse import named_statements

    db = tmp_path / "w.duckdb"
    build_warehouse(db)
    rng = np.random.default_rng(3)
    last = START + timedelta(days=DAYS - 1)
    broken = last - timedelta(days=3)
    conn = duckdb.connect(str(db))
    conn.execute(named_statements("analysis/funnels.sql")["schema"])
    rows = []
    for i in range(DAYS):
        cohort = START + timedelta(days=i)
        age = (last - cohort).days
        n = int(rng.poisson(400))
        first_day = int(rng.binomial(n, 0.05 if cohort == broken else 0.4))
        final = first_day + int(rng.binomial(n - first_day, 0.67))
        seen = final if age >= 7 else first_day + (final - first_day) * age // 7   # what has arrived so far
        completeness = min(1.0, (age + 1) / 7)
        rows += [("P", cohort, "all", "all", 1, "Start", n, 1.0, 1.0, None, None, n, 1.0, completeness),
                 ("P", cohort, "all", "all", 2, "Upload", seen, seen / n, seen / n, None, None, first_day,
                  first_day / n, completeness)]
    conn.executemany("insert into analytics.funnel_steps values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    conn.close()
    with dg.instance_for_test() as instance:
        result = dg.materialize([anomalies], resources={"duckdb": WarehouseResource(database=str(db))},
                                instance=instance, partition_key=last.isoformat())
        assert result.success
        result = dg.materialize([anomalies], resources={"duckdb": WarehouseResource(database=str(db))},
                                instance=instance,
                                tags={"dagster/asset_partition_range_start": (last - timedelta(days=6)).isoformat(),
                                      "dagster/asset_partition_range_end": last.isoformat()})
        assert result.success
    with duckdb.connect(str(db), read_only=True) as conn:
        flagged = conn.execute("select metric_date, direction, observed from analytics.anomalies "
                               "where metric like 'funnel:%' and status = 'new'").fetchall()
    assert [(d, direction) for d, direction, _ in flagged] == [(broken + timedelta(days=1), "down")]
    assert flagged[0][2] < 0.1


def _copy_without_trend_digests(db, copy) -> None:
    """A copy of warehouse `db` (named w) whose trends days have no digest: its next run recomputes them all."""
    with duckdb.connect(str(db)) as conn:
        conn.execute(f"attach '{copy}' as f")
        conn.execute("copy from database w to f")
        conn.execute("detach f")
    with duckdb.connect(str(copy)) as conn:
        conn.execute("update analytics.detection_log set input_digest = null")


def test_trends_of_a_day_whose_inputs_did_not_change_are_left_as_they_are(tmp_path):
    """Issue 15: the daily lookback recomputes 8 days, most of them unchanged. A day whose series (over the 120
    days up to it) and detector code are those of its last run keeps its rows; a change to one day's value
    makes that day and the days after it run again, and the result is what a full recompute gives."""
    db = tmp_path / "w.duckdb"
    build_warehouse(db)
    first, last = START + timedelta(days=60), START + timedelta(days=DAYS - 1)
    changed = START + timedelta(days=65)
    res = {"duckdb": WarehouseResource(database=str(db))}
    tags = {"dagster/asset_partition_range_start": first.isoformat(),
            "dagster/asset_partition_range_end": last.isoformat()}

    def run(instance) -> dict[str, bool]:
        result = dg.materialize([trends], resources=res, instance=instance, tags=tags)
        assert result.success
        return {m.partition: m.metadata["unchanged"].value for m in result.asset_materializations_for_node("trends")}

    def built() -> dict:
        with duckdb.connect(str(db), read_only=True) as conn:
            return dict(conn.execute("select as_of_date, built_at from analytics.detection_log "
                                     "where kind = 'trends'").fetchall())

    def rows(path) -> list:
        with duckdb.connect(str(path), read_only=True) as conn:
            return conn.execute("select * from analytics.trends order by all").fetchall()

    with dg.instance_for_test() as instance:
        assert set(run(instance).values()) == {False}                 # first run: every day computed
        before, first_rows = built(), rows(db)
        assert set(run(instance).values()) == {True}                  # nothing changed: every day left alone
        assert built() == before and rows(db) == first_rows
        # a recompute's last-digit noise (DuckDB's parallel means differ in the 13th digit) is no change
        with duckdb.connect(str(db)) as conn:
            conn.execute("update analytics.daily_metrics set value = value * (1 + 1e-14) where metric_date = ?",
                         [changed])
        assert set(run(instance).values()) == {True} and built() == before

        with duckdb.connect(str(db)) as conn:
            conn.execute("update analytics.daily_metrics set value = value + 80 where metric_date = ? "
                         "and segment = 'iOS'", [changed])
        again = run(instance)
        assert {d for d, same in again.items() if not same} == {
            (changed + timedelta(days=k)).isoformat() for k in range((last - changed).days + 1)}
        after = built()
        assert all((after[d] == before[d]) == (d < changed) for d in before)

        # the same as recomputing every day from scratch
        full = tmp_path / "full.duckdb"
        _copy_without_trend_digests(db, full)
        result = dg.materialize([trends], resources={"duckdb": WarehouseResource(database=str(full))},
                                instance=instance, tags=tags)
        assert result.success and not any(m.metadata["unchanged"].value
                                          for m in result.asset_materializations_for_node("trends"))
    assert rows(full) == rows(db) and rows(db) != first_rows


def test_the_next_mornings_lookback_leaves_the_days_it_shares_with_the_last_one_alone(tmp_path):
    """Issue 15: each morning's range starts a day later, so its series are loaded from a day later. A day's
    trends do not depend on where the load starts (they read the 120 days up to the day), and neither may its
    digest: the next morning leaves the days both ranges hold alone, and their rows are what a recompute from
    the new range gives. (The digest once hashed each series' first loaded day, which moves with the range,
    so every day of every morning ran again.)"""
    db, full = tmp_path / "w.duckdb", tmp_path / "full.duckdb"
    build_warehouse(db, days=140)                # the 120-day load starts inside the data, not before it
    mornings = [(START + timedelta(days=130), START + timedelta(days=138)),
                (START + timedelta(days=131), START + timedelta(days=139))]

    def run(path, first: date, last: date, instance) -> dict[str, bool]:
        result = dg.materialize([trends], resources={"duckdb": WarehouseResource(database=str(path))},
                                instance=instance, tags={"dagster/asset_partition_range_start": first.isoformat(),
                                                         "dagster/asset_partition_range_end": last.isoformat()})
        assert result.success
        return {m.partition: m.metadata["unchanged"].value for m in result.asset_materializations_for_node("trends")}

    def rows(path) -> list:
        with duckdb.connect(str(path), read_only=True) as conn:
            return conn.execute("select * from analytics.trends order by all").fetchall()

    with dg.instance_for_test() as instance:
        assert set(run(db, *mornings[0], instance).values()) == {False}
        second = run(db, *mornings[1], instance)
        assert {d for d, same in second.items() if not same} == {mornings[1][1].isoformat()}
        _copy_without_trend_digests(db, full)
        assert set(run(full, *mornings[1], instance).values()) == {False}
    assert rows(full) == rows(db) and len(rows(db)) >= 3 * 9


def test_anomaly_walks_resume_from_the_last_run_and_give_the_rows_of_a_walk_from_the_start(tmp_path):
    """Issue 15: a day's scan walks every series from its scan start (120-147 days back). The next run goes on
    from where the last one stopped for every series whose first days are unchanged; one whose earlier value
    changed is walked from the start. Either way the rows are those of a run without stored walks. The
    funnel's conversions resume too: both of their walks (pooled windows on few entrants, one day at a time
    on many)."""
    db, fresh = tmp_path / "w.duckdb", tmp_path / "fresh.duckdb"
    build_warehouse(db, funnel=True)
    build_warehouse(fresh, funnel=True)

    def run(path, first: int, last: int) -> list[int]:
        tags = {"dagster/asset_partition_range_start": (START + timedelta(days=first)).isoformat(),
                "dagster/asset_partition_range_end": (START + timedelta(days=last)).isoformat()}
        result = dg.materialize([anomalies], resources={"duckdb": WarehouseResource(database=str(path))},
                                instance=instance, tags=tags)
        assert result.success
        return [m.metadata["series_walks_resumed"].value for m in result.asset_materializations_for_node("anomalies")]

    def rows(path) -> list:
        with duckdb.connect(str(path), read_only=True) as conn:
            return conn.execute("select * exclude (root_cause), root_cause::varchar from analytics.anomalies "
                                "order by all").fetchall()

    def forget_walks(path) -> None:
        with duckdb.connect(str(path)) as conn:
            conn.execute("delete from analytics.anomaly_walks")

    with dg.instance_for_test() as instance:
        # the lookback of day 52, then of day 53: the second run resumes all six series (dau and the
        # funnel's conversion, each for the total, iOS and Android)
        assert set(run(db, DROP - 6, DROP + 1)) == {0}
        assert set(run(db, DROP - 5, DROP + 2)) == {6}
        run(fresh, DROP - 6, DROP + 1)
        forget_walks(fresh)
        assert set(run(fresh, DROP - 5, DROP + 2)) == {0}
        assert rows(db) == rows(fresh)
        assert any(r[3] == "Android" and r[12] == "new" for r in rows(db))    # the planted drop is there

        # an earlier iOS value changes: iOS and the total are walked from the start, Android and the funnel
        # go on
        for path in (db, fresh):
            with duckdb.connect(str(path)) as conn:
                conn.execute("update analytics.daily_metrics set value = value + 90 where metric_date = ? "
                             "and metric = 'dau' and segment in ('iOS', 'all')", [START + timedelta(days=DROP - 2)])
        forget_walks(fresh)
        assert set(run(db, DROP - 5, DROP + 2)) == {4}
        assert set(run(fresh, DROP - 5, DROP + 2)) == {0}
        assert rows(db) == rows(fresh)
