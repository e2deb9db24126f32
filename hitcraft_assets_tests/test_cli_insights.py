"""`hitcraft insights`: a day's ranked insights printed from a real warehouse file by the real command, read-only,
as text (the same lines as `hitcraft run`'s closing list) or as the REST API's insight objects (--json)."""

from __future__ import annotations

import dataclasses
import json
import subprocess
from datetime import timedelta

import duckdb

from hitcraft_assets.insights import generate_insights, rank_insights, rule_recommendation, with_status, write_insights
from hitcraft_assets.app.models import Insight as ApiInsight
from hitcraft_assets_tests.cli_env import HITCRAFT, env_for
from hitcraft_assets_tests.test_insights import CONFIG, DAY, plant_day, warehouse


def make_warehouse(tmp_path):
    """Two as-of days of real generated insights (the second with one resolved finding) in a DuckDB file."""
    path = tmp_path / "data" / "w.duckdb"
    path.parent.mkdir(parents=True)
    conn = warehouse(path)
    plant_day(conn)
    earlier = DAY - timedelta(days=1)
    for day in (earlier, DAY):
        found = generate_insights(conn, DAY, CONFIG)
        ids = {i.insight_id for i in found} if day == DAY else set()
        previous = ([{"insight_id": "gone", "as_of_date": earlier, "kind": "risk", "title": "An old risk",
                      "evidence": found[0].evidence, "context": {}, "confidence": 0.9}] if day == DAY else [])
        ranked = rank_insights(with_status(found, ids, previous, day=day), CONFIG)
        write_insights(conn, day, [dataclasses.replace(i, as_of_date=day, recommendation=rule_recommendation(i))
                                   for i in ranked])
    rows = conn.execute("select insight_id, priority_rank, kind, status, title from insights.insights "
                        "where as_of_date = ? order by priority_rank", [DAY]).fetchall()
    conn.close()
    return path, rows


def run(tmp_path, *args):
    env = env_for(tmp_path)
    return subprocess.run([*HITCRAFT, "insights", *args], env=env, capture_output=True, text=True, timeout=120)


def test_prints_the_latest_days_ranked_insights_like_the_runs_closing_list(tmp_path):
    _, rows = make_warehouse(tmp_path)
    out = run(tmp_path)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == f"insights as of {DAY}:"
    open_rows = [r for r in rows if r[3] != "resolved"][:10]
    titles = [line for line in lines if line[:4].strip().rstrip(".").isdigit()]
    assert titles == [f"{rank:>3}. [{kind}, {status}] {title}" for _, rank, kind, status, title in open_rows]
    assert all(line.startswith("     -> ") for line in lines[2::2])


def test_json_holds_the_apis_insight_objects_with_filters(tmp_path):
    path, rows = make_warehouse(tmp_path)
    out = run(tmp_path, "--json", "--kind", "risk", "--limit", "50", "--all")
    assert out.returncode == 0, out.stderr
    items = json.loads(out.stdout)
    assert [i["insight_id"] for i in items] == [r[0] for r in rows if r[2] == "risk"]
    assert any(i["status"] == "resolved" for i in items)           # --all keeps the resolved rows
    for item in items:
        ApiInsight.model_validate({k: v for k, v in item.items() if k not in ("evidence", "context")})
        assert item["evidence"]["metric"] == item["metric"] and isinstance(item["context"], dict)
    earlier = json.loads(run(tmp_path, "--json", "--date", str(DAY - timedelta(days=1))).stdout)
    assert earlier and {i["as_of_date"] for i in earlier} == {str(DAY - timedelta(days=1))}
    # read-only: the file is unchanged and can be opened for writing afterwards
    duckdb.connect(str(path)).close()


def test_without_a_warehouse_it_says_what_to_run(tmp_path):
    out = run(tmp_path)
    assert out.returncode == 2
    assert "no warehouse" in out.stderr and "hitcraft run" in out.stderr
