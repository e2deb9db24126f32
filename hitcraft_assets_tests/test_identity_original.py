"""Legacy Mixpanel projects on Original ID Merge export the distinct_id each event was sent with, and join
ids only through $identify, $create_alias and $merge events. Unless the engine replays those merges, one
person who browsed anonymously, signed up and was later merged with a CRM id counts as three users in DAU
and never converts in a funnel. These tests write Mixpanel export files, materialize the real assets with
Dagster into a real DuckDB file, and check the users counted (daily_metrics, funnel_steps), each rule
(conditional $identify, one target per alias, unconditional $merge), detection of the mode, that a
simplified project is unchanged, that applying days one at a time equals a full rebuild, the held-day
rule, the config key and the asset's metadata."""

from __future__ import annotations

from datetime import date, timedelta

import dagster as dg
import duckdb
import pytest
import yaml

from hitcraft_assets.analysis.assets import daily_metrics, funnels, identity_map, sessions
from hitcraft_assets.analysis.identity import Clusters, apply_edges, cluster_rows, rebuild_identity
from hitcraft_assets.config import ConfigError, load_config
from hitcraft_assets.ingestion.assets import raw_events
from hitcraft_assets_tests.journeys import write_export

D1, D2, D3, D4 = (date(2026, 3, d) for d in (2, 3, 4, 5))
ANALYSIS = [identity_map, sessions, daily_metrics, funnels]
FUNNEL = "Signup"


def at(day: date, hhmm: str) -> str:
    return f"{day.isoformat()}T{hhmm}:00+00:00"


def identify(anon: str, identified: str, anon_key: str = "$anon_distinct_id") -> dict:
    return {"distinct_id": identified, anon_key: anon, "$identified_id": identified}


def alias(alias_id: str, distinct_id: str) -> dict:
    return {"distinct_id": distinct_id, "alias": alias_id}


def merge(*ids: str) -> dict:
    return {"distinct_id": ids[0], "$distinct_ids": list(ids)}


def as_(distinct_id: str, **props) -> dict:
    return {"distinct_id": distinct_id, **props}


@pytest.fixture
def project(tmp_path, monkeypatch):
    """Writes the config (a 3-step funnel, no dimensions, `identity` as given) and points HITCRAFT_CONFIG at it."""
    def write(identity: str | None = None):
        doc = {"product": {"name": "Legacy"}, "timezone": "UTC", "dimensions": [],
               "funnels": [{"name": FUNNEL, "steps": ["Page View", "Sign Up", "Purchase"], "window_days": 7}]}
        if identity is not None:
            doc["identity"] = identity
        path = tmp_path / "legacy.yaml"
        path.write_text(yaml.safe_dump(doc))
        monkeypatch.setenv("HITCRAFT_CONFIG", str(path))
    write()
    return write


def run(resources, instance, first: date, last: date, assets) -> dg.ExecuteInProcessResult:
    selection = list(assets)
    result = dg.materialize(selection, resources=resources, instance=instance, selection=selection,
                            tags={"dagster/asset_partition_range_start": first.isoformat(),
                                  "dagster/asset_partition_range_end": last.isoformat()})
    assert result.success
    return result


def load_and_analyse(resources, instance, first: date, last: date) -> dict:
    """Raw days first..last, then identity and the analysis of those days; the identity_map metadata."""
    run(resources, instance, first, last, [raw_events])
    result = run(resources, instance, first, last, ANALYSIS)
    return identity_metadata(result)


def identity_metadata(result) -> dict:
    [materialization] = result.asset_materializations_for_node("identity_map")
    return {k: v.value for k, v in materialization.metadata.items()}


def metric(warehouse, name: str) -> dict[date, float]:
    with duckdb.connect(str(warehouse), read_only=True) as conn:
        return dict(conn.execute("select metric_date, value from analytics.daily_metrics where metric = ? and "
                                 "dimension = 'all' order by 1", [name]).fetchall())


def funnel_users(warehouse, cohort: date) -> list[int]:
    with duckdb.connect(str(warehouse), read_only=True) as conn:
        return [r[0] for r in conn.execute(
            "select users from analytics.funnel_steps where funnel = ? and cohort_date = ? and dimension = 'all' "
            "order by step", [FUNNEL, cohort]).fetchall()]


def clusters(warehouse) -> list[tuple]:
    with duckdb.connect(str(warehouse), read_only=True) as conn:
        return conn.execute("select * from core.identity_clusters order by distinct_id").fetchall()


def user_keys(warehouse) -> dict[str, set[str]]:
    with duckdb.connect(str(warehouse), read_only=True) as conn:
        rows = conn.execute("select distinct distinct_id, user_key from core.identified_events").fetchall()
    out: dict[str, set[str]] = {}
    for distinct_id, key in rows:
        out.setdefault(key, set()).add(distinct_id)
    return out


# --- each event type, materialized -------------------------------------------------------------------

EVENT_TYPES = {
    "identify": {"anon-1": [("Page View", at(D1, "09:00")),
                            ("$identify", at(D1, "09:05"), identify("anon-1", "user-1")),
                            ("Sign Up", at(D1, "09:06"), as_("user-1")),
                            ("Purchase", at(D1, "09:30"), as_("user-1"))]},
    "identify-anon_id": {"anon-1": [("Page View", at(D1, "09:00")),
                                    ("$identify", at(D1, "09:05"), identify("anon-1", "user-1", "$anon_id")),
                                    ("Sign Up", at(D1, "09:06"), as_("user-1")),
                                    ("Purchase", at(D1, "09:30"), as_("user-1"))]},
    "create_alias": {"user-1": [("Page View", at(D1, "09:00")),
                                ("$create_alias", at(D1, "09:05"), alias("anon-1", "user-1")),
                                ("Sign Up", at(D1, "09:06"), as_("anon-1")),
                                ("Purchase", at(D1, "09:30"), as_("anon-1"))]},
    # a $merge of three ids (one repeated): two edges, every member identified, key the smallest
    "merge": {"web-3": [("Page View", at(D1, "09:00")),
                        ("Sign Up", at(D1, "09:06"), as_("crm-9")),
                        ("Purchase", at(D1, "09:30"), as_("app-2")),
                        ("$merge", at(D1, "10:00"), merge("crm-9", "web-3", "app-2", "crm-9"))]},
}
EXPECTED_CLUSTERS = {
    "identify": {"user-1": {"anon-1", "user-1"}},
    "identify-anon_id": {"user-1": {"anon-1", "user-1"}},
    "create_alias": {"user-1": {"anon-1", "user-1"}},
    "merge": {"app-2": {"app-2", "crm-9", "web-3"}},
}
DETECTED = {
    "identify": "original (detected: 1 $identify events)",
    "identify-anon_id": "original (detected: 1 $identify events)",
    "create_alias": "original (detected: 1 $create_alias events)",
    "merge": "original (detected: 1 $merge events)",
}


@pytest.mark.parametrize("kind", list(EVENT_TYPES))
def test_each_event_type_joins_the_ids_into_one_user(tmp_path, instance, project, files_resources, export_dir,
                                                     warehouse, kind):
    write_export(export_dir, EVENT_TYPES[kind])
    meta = load_and_analyse(files_resources, instance, D1, D1)
    assert meta["identity"] == DETECTED[kind]
    assert meta["clusters"] == 1 and meta["ids_merged"] == len(next(iter(EXPECTED_CLUSTERS[kind].values()))) - 1
    assert meta["edges"] == (2 if kind == "merge" else 1)
    keys = {k: v for k, v in user_keys(warehouse).items() if len(v) > 1}
    assert keys == EXPECTED_CLUSTERS[kind]
    assert metric(warehouse, "dau") == {D1: 1.0}
    assert funnel_users(warehouse, D1) == [1, 1, 1]

    # the same export counted the simplified way: every id is its own user, nobody converts
    project("simplified")
    meta = load_and_analyse(files_resources, instance, D1, D1)
    assert meta["identity"].startswith("simplified (configured; 1 $")
    expected_ids = 3 if kind == "merge" else 2
    assert metric(warehouse, "dau") == {D1: float(expected_ids)}
    assert funnel_users(warehouse, D1) == [1, 0, 0]


# --- a chain of merges across days ---------------------------------------------------------------------

CHAIN = {
    "anon-A": [("Page View", at(D1, "09:00")),
               ("$identify", at(D1, "09:05"), identify("anon-A", "user-42")),
               ("Sign Up", at(D1, "09:06"), as_("user-42")),
               ("$create_alias", at(D2, "11:00"), alias("u42@example.com", "user-42")),
               ("Login", at(D2, "11:01"), as_("u42@example.com")),
               # the CRM id sorts before user-42, so the cluster's key changes on day 3
               ("$merge", at(D3, "15:00"), merge("user-42", "crm-7")),
               ("Purchase", at(D3, "15:01"), as_("crm-7"))],
    "other": [("Page View", at(D1, "12:00")), ("Login", at(D3, "12:00"))],
}


def test_a_chain_of_merges_across_days_is_one_user_retroactively(project, instance, files_resources, export_dir,
                                                                  warehouse):
    write_export(export_dir, CHAIN)
    meta = load_and_analyse(files_resources, instance, D1, D3)
    assert meta["identity"] == "original (detected: 1 $identify, 1 $create_alias, 1 $merge events)"
    assert meta["identity_update"] == "rebuild (first build in original mode)"
    assert (meta["clusters"], meta["ids_merged"], meta["edges"]) == (1, 3, 3)
    assert user_keys(warehouse)["crm-7"] == {"anon-A", "user-42", "u42@example.com", "crm-7"}
    # five distinct ids, two people: one user each day, in WAU, and through the funnel of day 1
    assert metric(warehouse, "dau") == {D1: 2.0, D2: 1.0, D3: 2.0}
    assert metric(warehouse, "wau") == {D1: 2.0, D2: 2.0, D3: 2.0}
    assert metric(warehouse, "new_users") == {D1: 2.0, D2: 0.0, D3: 0.0}
    assert funnel_users(warehouse, D1) == [2, 1, 1]


def test_days_arriving_one_by_one_apply_new_edges_and_reattribute_day_one(project, instance, files_resources,
                                                                           export_dir, warehouse):
    write_export(export_dir, CHAIN)
    updates, keys = [], []
    for day in (D1, D2, D3):
        run(files_resources, instance, day, day, [raw_events])
        result = run(files_resources, instance, max(D1, day - timedelta(days=9)), day, ANALYSIS)
        updates.append(identity_metadata(result)["identity_update"])
        keys.append({r[0]: r[1] for r in clusters(warehouse)}["anon-A"])
    assert updates == ["rebuild (first build in original mode)", "incremental (1 new edges applied)",
                       "incremental (1 new edges applied)"]
    assert keys == ["user-42", "user-42", "crm-7"]
    # day 1, recomputed by the daily lookback, counts the merged person under the key of day 3
    with duckdb.connect(str(warehouse), read_only=True) as conn:
        assert conn.execute("select user_key from core.user_days where activity_date = ? order by 1",
                            [D1]).fetchall() == [("crm-7",), ("other",)]
    assert metric(warehouse, "dau") == {D1: 2.0, D2: 1.0, D3: 2.0}
    assert metric(warehouse, "wau")[D3] == 2.0
    assert funnel_users(warehouse, D1) == [2, 1, 1]


# --- a device shared by two users ----------------------------------------------------------------------

SHARED = {
    "dev-1": [("Page View", at(D1, "08:00")),
              ("$identify", at(D1, "08:05"), identify("dev-1", "alice")),
              ("Sign Up", at(D1, "08:06"), as_("alice")),
              # bob logs in on the same device: Mixpanel makes no merge, the device stays alice's
              ("$identify", at(D1, "20:00"), identify("dev-1", "bob")),
              ("Sign Up", at(D1, "20:01"), as_("bob")),
              ("Purchase", at(D1, "20:02"), as_("bob")),
              ("Page View", at(D2, "09:00"), as_("dev-1"))],
}


def test_a_device_shared_by_two_users_stays_with_the_first(project, instance, files_resources, export_dir,
                                                           warehouse):
    write_export(export_dir, SHARED)
    meta = load_and_analyse(files_resources, instance, D1, D2)
    assert meta["identity"] == "original (detected: 2 $identify events)"
    assert (meta["clusters"], meta["ids_merged"], meta["edges"]) == (1, 1, 2)
    assert user_keys(warehouse) == {"alice": {"dev-1", "alice"}, "bob": {"bob"}}
    assert metric(warehouse, "dau") == {D1: 2.0, D2: 1.0}
    assert metric(warehouse, "event_users:Sign Up") == {D1: 2.0}
    assert metric(warehouse, "new_users") == {D1: 2.0, D2: 0.0}
    # the device's page views are alice's; bob never viewed a page, so he never entered the funnel
    assert funnel_users(warehouse, D1) == [1, 1, 0]


# --- detection, and a simplified project left unchanged ------------------------------------------------

SIMPLIFIED = {
    "$device:d1": [("Page View", at(D1, "09:00"), {"$device_id": "d1"}),
                   ("Sign Up", at(D1, "09:05"), as_("u1", **{"$device_id": "d1", "$user_id": "u1"})),
                   ("Purchase", at(D2, "10:00"), as_("u1", **{"$user_id": "u1"}))],
    "u2": [("Page View", at(D1, "11:00"), {"$user_id": "u2"}), ("Login", at(D2, "11:00"), {"$user_id": "u2"})],
}


def snapshot(warehouse) -> dict:
    with duckdb.connect(str(warehouse), read_only=True) as conn:
        return {t: conn.execute(f"select * from {t} order by all").fetchall()
                for t in ("analytics.daily_metrics", "analytics.funnel_steps", "core.user_days", "core.identity_map")}


def test_a_simplified_project_is_detected_and_counted_as_before(tmp_path, project, instance, files_resources,
                                                                export_dir, warehouse):
    write_export(export_dir, SIMPLIFIED)
    meta = load_and_analyse(files_resources, instance, D1, D2)
    assert meta["identity"] == "simplified (detected: no $identify, $create_alias or $merge events)"
    assert (meta["devices_mapped"], meta["users_with_devices"], meta["clusters"], meta["edges"]) == (1, 1, 0, 0)
    assert metric(warehouse, "dau") == {D1: 2.0, D2: 2.0}
    assert funnel_users(warehouse, D1) == [2, 1, 1]
    detected = snapshot(warehouse)

    project("simplified")
    meta = load_and_analyse(files_resources, instance, D1, D2)
    assert meta["identity"] == "simplified (configured)"
    assert snapshot(warehouse) == detected


def test_detection_from_the_data_versus_a_configured_mode(project, instance, files_resources, export_dir, warehouse):
    write_export(export_dir, SHARED)
    project("original")
    meta = load_and_analyse(files_resources, instance, D1, D2)
    assert meta["identity"] == "original (configured)"
    assert metric(warehouse, "dau") == {D1: 2.0, D2: 1.0}
    project("simplified")   # the same events counted by distinct_id: dev-1, alice and bob
    meta = load_and_analyse(files_resources, instance, D1, D2)
    assert meta["identity"] == "simplified (configured; 2 $identify events ignored)"
    assert metric(warehouse, "dau") == {D1: 3.0, D2: 1.0}
    assert clusters(warehouse) == []
    project(None)           # unset again: detected as original, clusters rebuilt
    meta = load_and_analyse(files_resources, instance, D1, D2)
    assert (meta["identity"], meta["identity_update"]) == ("original (detected: 2 $identify events)",
                                                           "rebuild (first build in original mode)")
    assert metric(warehouse, "dau") == {D1: 2.0, D2: 1.0}


# --- incremental application equals a full rebuild -----------------------------------------------------

MANY = {
    "a1": [("Page View", at(D1, "08:00")), ("$identify", at(D1, "08:01"), identify("a1", "u1")),
           ("$identify", at(D3, "08:01"), identify("a1", "u9")),               # shared device: ignored
           ("$create_alias", at(D2, "09:00"), alias("mail-1", "u1")),
           ("$create_alias", at(D4, "09:00"), alias("mail-1", "u5")),          # a second alias of mail-1: ignored
           ("Login", at(D4, "10:00"), as_("mail-1"))],
    "a2": [("Page View", at(D1, "12:00")), ("$identify", at(D2, "12:01"), identify("a2", "u2", "$anon_id")),
           ("$merge", at(D3, "12:02"), merge("u2", "u1", "zz")),               # two clusters become one
           ("$identify", at(D4, "12:03"), identify("a3", "u2")),
           ("Login", at(D4, "12:04"), as_("a3"))],
    "a4": [("Page View", at(D2, "13:00")), ("$merge", at(D4, "13:01"), merge("a4", "b4")),
           ("$identify", at(D4, "13:02"), identify("b4", "u7"))],              # b4 is identified: no merge
}


def test_days_applied_one_at_a_time_give_the_rows_of_a_full_rebuild(tmp_path, project, instance, export_dir):
    write_export(export_dir, MANY)
    at_once, daily = (tmp_path / f"{name}.duckdb" for name in ("at_once", "daily"))

    def res(db):
        from hitcraft_assets.ingestion.mixpanel import MixpanelResource
        from hitcraft_assets.ingestion.sources import ExportSourceResource
        from hitcraft_assets.warehouse import WarehouseResource
        return {"duckdb": WarehouseResource(database=str(db)),
                "export_source": ExportSourceResource(source="files", export_dir=str(export_dir),
                                                      staging_dir=str(tmp_path / f"staging-{db.stem}"),
                                                      mixpanel=MixpanelResource())}

    run(res(at_once), instance, D1, D4, [raw_events])
    assert identity_metadata(run(res(at_once), instance, D1, D1, [identity_map]))["identity_update"] == \
        "rebuild (first build in original mode)"
    updates = []
    for day in (D1, D2, D3, D4):
        run(res(daily), instance, day, day, [raw_events])
        updates.append(identity_metadata(run(res(daily), instance, day, day, [identity_map]))["identity_update"])
    assert updates == ["rebuild (first build in original mode)", "incremental (2 new edges applied)",
                       "incremental (3 new edges applied)", "incremental (4 new edges applied)"]
    assert clusters(daily) == clusters(at_once)
    keys = {r[0]: r[1] for r in clusters(daily)}
    assert {k for k, v in keys.items() if v == "u1"} == {"a1", "u1", "mail-1", "a2", "u2", "zz", "a3"}
    assert (keys["u9"], keys["u5"], keys["a4"], keys["b4"], keys["u7"]) == ("u9", "u5", "a4", "a4", "u7")

    # day 2 loaded again with one more edge: an earlier day changed, so the clusters are rebuilt
    MANY_AGAIN = dict(MANY, a5=[("$merge", at(D2, "18:00"), merge("u7", "u9"))])
    write_export(export_dir, MANY_AGAIN)
    run(res(daily), instance, D2, D2, [raw_events])
    meta = identity_metadata(run(res(daily), instance, D2, D2, [identity_map]))
    assert meta["identity_update"] == "rebuild (new edges on 2026-03-03 come before the last applied one)"
    fresh = tmp_path / "fresh.duckdb"
    run(res(fresh), instance, D1, D4, [raw_events, identity_map])
    assert clusters(daily) == clusters(fresh) != clusters(at_once)
    assert {r[0]: r[1] for r in clusters(daily)}["u9"] == "u7"


def test_a_held_day_leaves_its_edges_out_until_released(project, instance, files_resources, export_dir, warehouse):
    write_export(export_dir, CHAIN)
    load_and_analyse(files_resources, instance, D1, D3)
    with duckdb.connect(str(warehouse)) as conn:
        conn.execute("update raw.load_log set gate = 'held' where event_date = ?", [D3])
        stats = rebuild_identity(conn)
        assert stats["identity_update"] == "rebuild (edges changed or left on earlier days: 2026-03-04)"
        assert conn.execute("select count(*) from core.identity_edges where event_date = ?", [D3]).fetchone() == (0,)
        assert conn.execute("select distinct user_key from core.identified_events where distinct_id = 'anon-A'"
                            ).fetchall() == [("user-42",)]
        conn.execute("update raw.load_log set gate = 'pass' where event_date = ?", [D3])
        assert rebuild_identity(conn)["identity_update"] == "incremental (1 new edges applied)"
        assert conn.execute("select distinct user_key from core.identified_events where distinct_id = 'anon-A'"
                            ).fetchall() == [("crm-7",)]


# --- the rules, as a pure function ---------------------------------------------------------------------

def edges(*specs) -> list[tuple]:
    from datetime import datetime, timezone
    return [(datetime(2026, 3, 1, tzinfo=timezone.utc) + timedelta(minutes=i), f"i{i}", kind, 0, a, b)
            for i, (kind, a, b) in enumerate(specs)]


@pytest.mark.parametrize("specs, want", [
    ([("identify", "anon", "u1")], {"anon": "u1", "u1": "u1"}),
    # a second user on the same device: no merge
    ([("identify", "anon", "u1"), ("identify", "anon", "u2")], {"anon": "u1", "u1": "u1", "u2": "u2"}),
    # an anon id already merged only with anon ids may still be identified
    ([("merge", "x", "anon"), ("identify", "anon", "u1")], {"anon": "anon", "x": "anon", "u1": "u1"}),
    ([("identify", "a2", "u1"), ("identify", "a1", "u1")], {"a1": "u1", "a2": "u1", "u1": "u1"}),
    # an alias maps to one distinct_id only
    ([("alias", "mail", "u2"), ("alias", "mail", "u1")], {"mail": "u2", "u2": "u2", "u1": "u1"}),
    # merge is unconditional; the key is the smallest identified id, not the smallest id
    ([("identify", "a", "u2"), ("identify", "b", "u1"), ("merge", "u2", "u1")],
     {"a": "u1", "b": "u1", "u1": "u1", "u2": "u1"}),
    ([("alias", "0-alias", "zed")], {"0-alias": "zed", "zed": "zed"}),
])
def test_identity_rules(specs, want):
    got = {row[0]: row[1] for row in cluster_rows(apply_edges(Clusters(), edges(*specs)))}
    assert got == want


# --- the config key -----------------------------------------------------------------------------------

@pytest.mark.parametrize("value, code, words", [
    ("orignal", "CONFIG_IDENTITY", "identity must be one of simplified, original"),
    ("Simplified", "CONFIG_IDENTITY", "got 'Simplified'"),
    (3, "CONFIG_TYPE", "must be text"),
])
def test_an_invalid_identity_mode_is_refused_with_its_code(tmp_path, value, code, words):
    path = tmp_path / "shop.yaml"
    path.write_text(yaml.safe_dump({"identity": value}))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.problems[0].startswith(f"{code}: shop.yaml: identity: "), info.value.problems
    assert words in info.value.problems[0]


@pytest.mark.parametrize("value", ["simplified", "original", None])
def test_a_valid_identity_mode_loads(tmp_path, value):
    path = tmp_path / "shop.yaml"
    path.write_text(yaml.safe_dump({"identity": value} if value else {}))
    assert load_config(path).identity == value
