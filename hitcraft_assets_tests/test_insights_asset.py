"""The insights asset as Dagster materializes it after detection, on a real warehouse: findings with their
evidence and stable ids across days; with an OpenAI-compatible server configured, the run's last day gets
LLM text for its top insights (numbers grounded, no identifiers, key never logged), earlier days keep the
rules; without a key, rules only."""

import json
from datetime import timedelta

import dagster as dg
import duckdb

from hitcraft_assets.detection.assets import anomalies, trends
from hitcraft_assets.insights.assets import insights
from hitcraft_assets.insights.llm import LLMResource
from hitcraft_assets.warehouse import WarehouseResource
from hitcraft_assets_tests.fake_openai import FakeOpenAI
from hitcraft_assets_tests.test_detection_assets import DROP, START, build_warehouse

KEY = "sk-test-insights-0123456789"


def materialize(db, llm: LLMResource, first: int, last: int):
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [anomalies, trends, insights], instance=instance,
            resources={"duckdb": WarehouseResource(database=str(db)), "llm": llm},
            tags={"dagster/asset_partition_range_start": (START + timedelta(days=first)).isoformat(),
                  "dagster/asset_partition_range_end": (START + timedelta(days=last)).isoformat()})
        logs = [str(e) for e in instance.all_logs(result.run_id)]
    return result, logs


def rows(db):
    with duckdb.connect(str(db), read_only=True) as conn:
        return conn.execute("select as_of_date, insight_id, kind, status, priority_rank, generated_by, evidence, "
                            "recommendation from insights.insights order by as_of_date, priority_rank").fetchall()


def test_rules_only_without_a_key_and_stable_ids(tmp_path):
    db = tmp_path / "w.duckdb"
    build_warehouse(db)
    result, _ = materialize(db, LLMResource(), DROP - 2, DROP + 3)
    assert result.success
    got = rows(db)
    drop_day = START + timedelta(days=DROP)
    on_drop = [r for r in got if r[0] == drop_day]
    assert on_drop and all(r[5] == "rules" and r[7] for r in on_drop)
    anomaly = next(r for r in on_drop if r[2] == "anomaly")
    evidence = json.loads(anomaly[6])
    assert "analytics.anomalies" in json.dumps(evidence["source"])
    later = [r for r in got if r[1] == anomaly[1] and r[0] > drop_day]
    assert later, "the same finding keeps its id on later days"
    # the day after, the drop is the same anomaly episode: an ongoing insight, not a new alert
    next_day = [r for r in later if r[0] == drop_day + timedelta(days=1)][0]
    assert next_day[3] == "ongoing" and json.loads(next_day[6])["anomaly"]["anomaly_status"] == "continuing"
    assert [r[4] for r in on_drop] == list(range(1, len(on_drop) + 1))


def test_llm_writes_the_last_days_top_insights(tmp_path, caplog):
    db = tmp_path / "w.duckdb"
    build_warehouse(db)
    with FakeOpenAI(api_key=KEY) as fake:
        llm = LLMResource(api_key=KEY, base_url=fake.base_url, model="test-model", timeout_s=5, max_retries=0)
        result, logs = materialize(db, llm, DROP - 1, DROP)
        assert result.success
        prompts = [r.prompt for r in fake.requests]
    got = rows(db)
    drop_day = START + timedelta(days=DROP)
    last = [r for r in got if r[0] == drop_day and r[3] != "resolved"]
    assert any(r[5] == "llm:test-model" for r in last)
    assert all(r[5] == "rules" for r in got if r[0] < drop_day)           # a backfill's earlier days keep rules
    assert len(prompts) == sum(r[5] == "llm:test-model" for r in last)   # good answers: one request each
    assert prompts and all("user_key" not in p and "distinct_id" not in p for p in prompts)
    assert not any(KEY in line for line in logs) and KEY not in caplog.text
