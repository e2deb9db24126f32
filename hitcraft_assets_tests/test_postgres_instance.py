"""Issue 16, the control plane: with DAGSTER_PG_URL set, `hitcraft` gives a new DAGSTER_HOME an instance whose
runs, event logs, schedules and concurrency pools live in Postgres (dagster-postgres), so the webserver, the
daemon and workers of several machines can share it. Run for real against a PostgreSQL server on loopback:
two `hitcraft run` processes record their runs and materializations there, another process reads them back
through Dagster and through psql, and the URL is never written into the instance folder."""

from __future__ import annotations

import subprocess

import dagster as dg
import psycopg2
from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage

from hitcraft_assets_tests.cli_env import HITCRAFT, env_for
from hitcraft_assets_tests.postgres_server import postgres_server

DAY = "2026-01-04"


def test_two_runs_share_an_instance_on_postgres(tmp_path, monkeypatch):
    with postgres_server() as url:
        env = env_for(tmp_path, DAGSTER_PG_URL=url, HITCRAFT_EXPORT_DIR=str(tmp_path / "export"),
                      HITCRAFT_START_DATE="2026-01-01")
        (tmp_path / "home" / "dagster.yaml").unlink()      # let hitcraft create the instance config
        gen = subprocess.run([*HITCRAFT, "generate-demo", "--days", "4", "--users", "60", "--end-date", DAY,
                              "--out", str(tmp_path / "export")], cwd=tmp_path, env=env, capture_output=True,
                             text=True, timeout=300)
        assert gen.returncode == 0, gen.stderr[-3000:]
        for _ in range(2):
            run = subprocess.run([*HITCRAFT, "run", "--from", DAY, "--to", DAY], cwd=tmp_path, env=env,
                                 capture_output=True, text=True, timeout=600)
            assert run.returncode == 0, (run.stdout[-2000:], run.stderr[-3000:])
        config = (tmp_path / "home" / "dagster.yaml").read_text()
        assert "env: DAGSTER_PG_URL" in config and url not in config and "127.0.0.1" not in config

        monkeypatch.setenv("DAGSTER_PG_URL", url)
        with dg.DagsterInstance.from_config(str(tmp_path / "home")) as instance:
            assert isinstance(instance.run_storage, PostgresRunStorage)
            assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
            runs = instance.get_runs()
            assert len(runs) == 2 and all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
            materialized = instance.get_materialized_partitions(dg.AssetKey("raw_events"))
            assert DAY in materialized
            # the `duckdb` pool (one step at a time writes the warehouse) is claimed in Postgres too, at
            # dagster.yaml's default limit, so steps of runs on other machines wait for the same slot
            storage = instance.event_log_storage
            assert storage.supports_global_concurrency_limits and "duckdb" in storage.get_concurrency_keys()
            assert storage.get_concurrency_info("duckdb").slot_count == 1
        with psycopg2.connect(url.replace("+psycopg2", "")) as conn, conn.cursor() as cur:
            cur.execute("select count(*) from runs where status = 'SUCCESS'")
            assert cur.fetchone()[0] == 2
            cur.execute("select count(distinct asset_key) from event_logs "
                        "where dagster_event_type = 'ASSET_MATERIALIZATION'")
            assert cur.fetchone()[0] >= 10


def test_a_bare_postgresql_url_is_refused_with_the_form_to_use_and_without_the_secret(tmp_path):
    env = env_for(tmp_path, DAGSTER_PG_URL="postgresql://hitcraft:s3cret-pw@127.0.0.1:1/dagster")
    run = subprocess.run([*HITCRAFT, "run", "--from", DAY, "--to", DAY], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode != 0
    assert "postgresql+psycopg2://" in run.stderr and "s3cret-pw" not in run.stdout + run.stderr
