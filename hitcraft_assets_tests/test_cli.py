"""The command lines a user types, run as real processes against a real Dagster instance (DAGSTER_HOME):
Dagster's own `dagster asset materialize --partition-range`, and `hitcraft run` on the demo product."""

import subprocess
import sys
from datetime import date

import duckdb

from hitcraft_assets_tests.cli_env import HITCRAFT, env_for
from hitcraft_assets_tests.conftest import event_line, ms, write_day


def test_dagster_cli_backfills_a_partition_range_in_one_run(tmp_path):
    export = tmp_path / "export"
    days = [date(2026, 2, d) for d in range(1, 5)]
    for day in days:
        write_day(export, day, [event_line("Login", f"u{k}", ms(day, 3, k), f"{day}{k}") for k in range(7)])
    env = env_for(tmp_path, HITCRAFT_EXPORT_DIR=str(export), HITCRAFT_START_DATE="2026-01-01")
    proc = subprocess.run(
        [sys.executable, "-m", "dagster", "asset", "materialize", "-m", "hitcraft_assets", "--select", "raw_events",
         "--partition-range", "2026-02-01...2026-02-04"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "RUN_SUCCESS" in proc.stderr + proc.stdout
    with duckdb.connect(env["HITCRAFT_DUCKDB_PATH"], read_only=True) as conn:
        assert conn.execute("select event_date, count(*) from raw.events group by 1 order by 1").fetchall() == [
            (d, 7) for d in days]


def test_hitcraft_generate_demo_then_run_prints_the_ground_truth_numbers(tmp_path):
    import json

    export = tmp_path / "demo"
    env = env_for(tmp_path, HITCRAFT_EXPORT_DIR=str(export))
    gen = subprocess.run([*HITCRAFT, "generate-demo", "--days", "20", "--users", "400", "--end-date", "2026-03-20",
                          "--out", str(export)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert gen.returncode == 0, gen.stderr[-3000:]
    truth = json.loads((export / "ground_truth.json").read_text())
    run = subprocess.run([*HITCRAFT, "run"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    out = run.stdout
    assert "hitcraft run: 2026-03-01 .. 2026-03-20 (20 days)" in out
    block = out.split(" succeeded in ")[1].split("\n\n")[0]        # the summary, before the closing lists
    summary = {line.split()[0]: next(t for t in line.split() if t[0].isdigit())
               for line in block.splitlines() if line.startswith("  ")}
    assert summary["days"] == "20"
    assert int(summary["events"].replace(",", "")) == sum(truth["events"].values())
    assert int(summary["rejected"].replace(",", "")) == len(truth["dirt"]["malformed"])
    assert int(summary["duplicates"].replace(",", "")) == sum(truth["dirt"]["duplicates"].values())
    assert out.count("] raw_events ") == 20 and "(no file: empty day)" in out
    # the run is recorded in the Dagster instance, one materialization per day
    import dagster as dg

    instance = dg.DagsterInstance.from_config(env["DAGSTER_HOME"])
    assert len(instance.get_materialized_partitions(dg.AssetKey("raw_events"))) == 20
    instance.dispose()
    # the run ends by delivering what its range completes: the daily digests of its last day and the weekly
    # one of the last whole week (no SMTP settings: .eml files in the outbox)
    assert "email reports:" in out
    outbox = tmp_path / "data" / "outbox"
    names = sorted(p.name for p in outbox.glob("*.eml"))
    assert [n.split(".")[0] for n in names].count("daily-product") == 2, names
    # the weekly digest of 9-15 March was prepared too (sent, or skipped when it has nothing to show)
    assert "weekly-marketing (week of 9 March 2026) → lea.growth@hitcraft.example" in out
    # send-reports: the ledger stops a second send; --dry-run renders to the preview folder
    again = subprocess.run([*HITCRAFT, "send-reports", "--profile", "daily-product"], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("already_delivered") == 2 and len(list(outbox.glob("*.eml"))) == len(names)
    dry = subprocess.run([*HITCRAFT, "send-reports", "--profile", "daily-product", "--period", "2026-03-18",
                          "--dry-run"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert dry.returncode == 0, dry.stderr[-3000:]
    assert dry.stdout.count(": preview, ") == 2 and len(list((outbox / "preview").glob("*.eml"))) == 2
    early = subprocess.run([*HITCRAFT, "send-reports", "--profile", "monthly-executive", "--period", "2026-03-15"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert early.returncode == 2 and "REPORT_PERIOD_NOT_READY: March 2026 ends on 2026-03-31" in early.stderr


def test_the_hitcraft_console_script_is_installed():
    from importlib.metadata import entry_points

    [script] = [e for e in entry_points(group="console_scripts") if e.name == "hitcraft"]
    assert script.value == "hitcraft_assets.cli:main"
