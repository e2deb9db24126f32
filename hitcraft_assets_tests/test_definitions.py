"""The code location loads, and the asset graph matches a reviewed snapshot: a change to keys, deps, groups,
partitions, checks, jobs or schedules shows up here in review. Also the daily schedule's run requests."""

from datetime import date, datetime, timezone

import dagster as dg
import pytest

import hitcraft_assets
from hitcraft_assets.definitions import defs
from hitcraft_assets.schedules import RANGE_END, RANGE_START, daily_range

# Reviewed snapshot of the asset graph. raw_window: the (start, end) offsets of the UTC raw days a local
# analysis day reads (funnels: + the 7-day conversion window).
SNAPSHOT = {'serving_snapshot': {'checks': [],
                      'deps': ['anomalies', 'daily_metrics', 'email_reports', 'funnels', 'insights', 'raw_events',
                               'retention', 'segments', 'trends'],
                      'group': 'delivery',
                      'kinds': ['duckdb'],
                      'owners': ['team:product-analytics'],
                      'partitioned': None,
                      'pool': 'duckdb',
                      'raw_window': None,
                      'retry': False,
                      'single_run_backfill': False},
 'email_reports': {'checks': [],
                   'deps': ['insights'],
                   'group': 'delivery',
                   'kinds': ['duckdb', 'email'],
                   'owners': ['team:product-analytics'],
                   'partitioned': 'Daily, starting 2026-01-01 UTC.',
                   'pool': 'duckdb',
                   'raw_window': None,
                   'retry': True,
                   'single_run_backfill': True},
 'daily_metrics': {'checks': [],
                   'deps': ['raw_events', 'sessions'],
                   'group': 'analysis',
                   'kinds': ['duckdb', 'sql'],
                   'owners': ['team:product-analytics'],
                   'partitioned': 'Daily, starting 2026-01-01 UTC.',
                   'pool': 'duckdb',
                   'raw_window': (-1, 1),
                   'retry': False,
                   'single_run_backfill': True},
 'anomalies': {'checks': [], 'deps': ['daily_metrics', 'funnels'], 'group': 'detection', 'kinds': ['duckdb', 'python'],
               'owners': ['team:product-analytics'], 'partitioned': 'Daily, starting 2026-01-01 UTC.', 'pool': 'duckdb',
               'raw_window': None, 'retry': False, 'single_run_backfill': True},
 'funnels': {'checks': [],
             'deps': ['identity_map', 'raw_events'],
             'group': 'analysis',
             'kinds': ['duckdb', 'sql'],
             'owners': ['team:product-analytics'],
             'partitioned': 'Daily, starting 2026-01-01 UTC.',
             'pool': 'duckdb',
             'raw_window': (-1, 8),
             'retry': False,
             'single_run_backfill': True},
 'identity_map': {'checks': [],
                  'deps': ['raw_events'],
                  'group': 'analysis',
                  'kinds': ['duckdb', 'sql'],
                  'owners': ['team:product-analytics'],
                  'partitioned': None,
                  'pool': 'duckdb',
                  'raw_window': None,
                  'retry': False,
                  'single_run_backfill': False},
 'insights': {'checks': [], 'deps': ['anomalies', 'daily_metrics', 'funnels', 'segments', 'trends'], 'group': 'insights',
              'kinds': ['duckdb', 'openai', 'python'], 'owners': ['team:product-analytics'],
              'partitioned': 'Daily, starting 2026-01-01 UTC.', 'pool': 'duckdb', 'raw_window': None, 'retry': True,
              'single_run_backfill': True},
 'raw_downloads': {'checks': [],
                   'deps': [],
                   'group': 'ingestion',
                   'kinds': ['python'],
                   'owners': ['team:data-platform'],
                   'partitioned': 'Daily, starting 2026-01-01 UTC.',
                   'pool': 'mixpanel',
                   'raw_window': None,
                   'retry': True,
                   'single_run_backfill': True},
 'raw_events': {'checks': ['no_duplicates', 'placeholder_distinct_ids', 'rejected_share', 'volume_vs_trailing_median'],
                'deps': ['raw_downloads'],
                'group': 'ingestion',
                'kinds': ['duckdb', 'python'],
                'owners': ['team:data-platform'],
                'partitioned': 'Daily, starting 2026-01-01 UTC.',
                'pool': 'duckdb',
                'raw_window': None,
                'retry': True,
                'single_run_backfill': True},
 'retention': {'checks': [],
               'deps': ['identity_map', 'raw_events'],
               'group': 'analysis',
               'kinds': ['duckdb', 'sql'],
               'owners': ['team:product-analytics'],
               'partitioned': None,
               'pool': 'duckdb',
               'raw_window': None,
               'retry': False,
               'single_run_backfill': False},
 'segments': {'checks': [],
              'deps': ['daily_metrics', 'funnels', 'retention', 'sessions'],
              'group': 'analysis',
              'kinds': ['duckdb', 'sql'],
              'owners': ['team:product-analytics'],
              'partitioned': 'Daily, starting 2026-01-01 UTC.',
              'pool': 'duckdb',
              'raw_window': None,
              'retry': False,
              'single_run_backfill': True},
 'sessions': {'checks': [],
              'deps': ['identity_map', 'raw_events'],
              'group': 'analysis',
              'kinds': ['duckdb', 'sql'],
              'owners': ['team:product-analytics'],
              'partitioned': 'Daily, starting 2026-01-01 UTC.',
              'pool': 'duckdb',
              'raw_window': (-1, 1),
              'retry': False,
              'single_run_backfill': True},
 'trends': {'checks': [], 'deps': ['daily_metrics', 'funnels'], 'group': 'detection', 'kinds': ['duckdb', 'python'],
            'owners': ['team:product-analytics'], 'partitioned': 'Daily, starting 2026-01-01 UTC.', 'pool': 'duckdb',
            'raw_window': None, 'retry': False, 'single_run_backfill': True},
 'user_profiles': {'checks': [],
                   'deps': [],
                   'group': 'ingestion',
                   'kinds': ['duckdb', 'python'],
                   'owners': ['team:data-platform'],
                   'partitioned': None,
                   'pool': 'duckdb',
                   'raw_window': None,
                   'retry': True,
                   'single_run_backfill': False}}


def _raw_window(graph, key):
    if key == dg.AssetKey("raw_events") or dg.AssetKey("raw_events") not in graph.get(key).parent_keys:
        return None
    if not graph.get(key).partitions_def:
        return None
    mapping = graph.get_partition_mapping(key, dg.AssetKey("raw_events"))
    return (mapping.start_offset, mapping.end_offset)


def graph_snapshot() -> dict:
    graph = defs.resolve_asset_graph()
    out = {}
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        assets_def = defs.resolve_assets_def(key)
        out[key.to_user_string()] = {
            "deps": sorted(p.to_user_string() for p in node.parent_keys),
            "group": node.group_name,
            "partitioned": str(node.partitions_def) if node.partitions_def else None,
            "kinds": sorted(node.kinds),
            "owners": list(node.owners),
            "pool": next(iter(assets_def.node_def.pools), None) if assets_def.node_def.pools else None,
            "checks": sorted(k.name for k in assets_def.check_keys),
            "retry": assets_def.node_def.retry_policy is not None,
            "single_run_backfill": assets_def.backfill_policy == dg.BackfillPolicy.single_run(),
            "raw_window": _raw_window(graph, key),
        }
    return out


def test_definitions_load_and_are_exported():
    assert hitcraft_assets.defs is defs
    dg.Definitions.validate_loadable(defs)


def test_asset_graph_snapshot():
    assert graph_snapshot() == SNAPSHOT


def test_every_asset_is_described():
    graph = defs.resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        assert len(graph.get(key).description or "") > 80, key


def test_jobs_and_schedules():
    assert {j.name for j in defs.resolve_all_job_defs()} >= {"daily_ingest_job", "daily_analysis_job", "profiles_job",
                                                              "all_assets_job", "email_reports_job"}
    assert {s.name for s in defs.sensors} == {"analysis_after_ingest_sensor", "daily_reports_after_insights_sensor",
                                              "operator_alert_on_run_failure"}
    schedules = {s.name: s for s in defs.schedules}
    assert set(schedules) == {"daily_ingest_schedule", "daily_profiles_schedule", "weekly_reports_schedule",
                              "monthly_reports_schedule"}
    assert schedules["weekly_reports_schedule"].cron_schedule == "0 7 * * 1"
    assert schedules["monthly_reports_schedule"].cron_schedule == "0 7 1 * *"
    assert schedules["daily_ingest_schedule"].execution_timezone == "UTC"
    assert schedules["daily_ingest_schedule"].cron_schedule == "30 2 * * *"


@pytest.mark.parametrize(
    ("tick", "expected"),
    [
        # 02:30 UTC on 2026-03-10: yesterday (03-09) and the 5 days before it
        (datetime(2026, 3, 10, 2, 30, tzinfo=timezone.utc), ("2026-03-04", "2026-03-09")),
        # near the first partition the lookback is clipped
        (datetime(2026, 1, 3, 2, 30, tzinfo=timezone.utc), ("2026-01-01", "2026-01-02")),
    ],
)
def test_daily_schedule_requests_yesterday_and_lookback(tick, expected):
    schedule = defs.get_schedule_def("daily_ingest_schedule")
    with dg.instance_for_test() as instance:
        ctx = dg.build_schedule_context(instance=instance, scheduled_execution_time=tick)
        data = schedule.evaluate_tick(ctx)
    [request] = data.run_requests
    assert (request.tags[RANGE_START], request.tags[RANGE_END]) == expected
    assert request.run_key == f"daily-{expected[1]}"


def test_daily_schedule_skips_before_first_complete_day():
    schedule = defs.get_schedule_def("daily_ingest_schedule")
    with dg.instance_for_test() as instance:
        ctx = dg.build_schedule_context(instance=instance,
                                        scheduled_execution_time=datetime(2026, 1, 1, 2, 30, tzinfo=timezone.utc))
        data = schedule.evaluate_tick(ctx)
    assert not data.run_requests and data.skip_message


def test_daily_range_uses_the_utc_day_in_any_timezone():
    from zoneinfo import ZoneInfo

    # 02:30 in Tokyo is 17:30 UTC of the previous day: the last complete UTC day is two days before
    tick = datetime(2026, 3, 10, 2, 30, tzinfo=ZoneInfo("Asia/Tokyo"))
    assert daily_range(tick, date(2026, 1, 1)) == (date(2026, 3, 3), date(2026, 3, 8))


# requests, vl_convert and jinja2 are lighter (0.05-0.08 s each) but only the download, a chart or an email
# needs them
HEAVY = ("scipy.stats", "openai", "polars", "ruptures", "requests", "vl_convert", "jinja2")


def test_loading_the_definitions_imports_no_heavy_library_until_it_is_used():
    """Every step's process loads the code location: scipy.stats, openai and polars load only when a step uses
    them (hitcraft_assets.lazy), and then the lazy stand-ins behave as the modules; ruptures (a dev dependency
    now: the change-point search runs its own PELT loop) is not loaded either."""
    import subprocess
    import sys

    code = ("import sys, hitcraft_assets.definitions\n"
            f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
            "from hitcraft_assets.detection.changepoints import detect_change_points\n"
            "print(detect_change_points([0.0] * 20 + [9.0] * 20))\n"
            "from hitcraft_assets.analysis import stats\n"
            "print(type(stats.sps.norm).__name__, 'scipy.stats' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[0] == ""             # none of them at load
    assert out[1] == "[20]"         # the change-point search works on first use
    assert out[2] == "norm_gen True"


def test_a_lazy_module_loads_once_under_concurrent_first_use():
    import threading

    from hitcraft_assets.lazy import lazy

    mod = lazy("json")
    assert "not loaded yet" in repr(mod)
    results, barrier = [], threading.Barrier(8)

    def use():
        barrier.wait()
        results.append(mod.dumps([1]))

    threads = [threading.Thread(target=use) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == ["[1]"] * 8 and repr(mod).endswith("(loaded)>") and mod.load() is __import__("json")
    with pytest.raises(ModuleNotFoundError):
        lazy("hitcraft_assets_no_such_module").anything
