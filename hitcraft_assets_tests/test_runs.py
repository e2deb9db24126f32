"""Runs that die or are stopped, and readers that hold the warehouse, with real processes against a real
Dagster instance (DAGSTER_HOME) and a real DuckDB file:

- a `hitcraft run` killed with SIGKILL while it holds the `duckdb` pool: the next `hitcraft run` marks the
  dead run FAILURE, frees its slot, says so and succeeds;
- SIGINT and SIGTERM stop a `hitcraft run` within seconds, whether it waits for the pool (it says what it
  waits for, without spinning a CPU) or is inside a step, and leave no run STARTED and no slot claimed;
- a process holding the warehouse file delays a step, which then succeeds; with a short wait the step
  fails with WAREHOUSE_LOCKED naming the holder's PID; any other error opening the file is not retried;
- reaping, on an instance: a run whose owner pid is gone, or alive but with another start time (a reused
  pid), is failed and its slot freed; a live owner's run and a run without hitcraft's tags are left alone.

A reader holding the warehouse read-only is also how the tests pin a run inside a step holding the pool.
"""

import re
import signal
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from hitcraft_assets.ingestion.assets import raw_events
from hitcraft_assets.warehouse import WarehouseLockedError, WarehouseResource
from hitcraft_assets_tests.conftest import event_line, ms, write_day
from hitcraft_assets_tests.cli_env import HITCRAFT, env_for

END = "2026-03-20"
HOLD = [sys.executable, "-c", ("import duckdb, sys, time; c = duckdb.connect(sys.argv[1], read_only=sys.argv[2] == 'ro'); "
                               "print('ready', flush=True); time.sleep(float(sys.argv[3]))")]


# `hitcraft run` as in a terminal's foreground: SIGINT reset to its default before exec (a SIGINT inherited as
# ignored, as a background job gets it, stays ignored), same pid
FOREGROUND = [sys.executable, "-c", ("import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
                                     "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])"), *HITCRAFT[1:]]


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demo") / "export"
    env = env_for(tmp_path_factory.mktemp("gen"))
    gen = subprocess.run([*HITCRAFT, "generate-demo", "--days", "3", "--users", "50", "--end-date", END,
                          "--out", str(out)], env=env, capture_output=True, text=True, timeout=120)
    assert gen.returncode == 0, gen.stderr[-2000:]
    return out


def hold_warehouse(path: str, seconds: float, read_only: bool = True) -> subprocess.Popen:
    """A process that opens the warehouse (a notebook, the DuckDB CLI) and keeps it open."""
    proc = subprocess.Popen([*HOLD, path, "ro" if read_only else "rw", str(seconds)], stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline().strip() == "ready"
    return proc


def start_run(tmp_path: Path, env: dict, name: str, *args: str) -> tuple[subprocess.Popen, Path]:
    log = tmp_path / f"{name}.log"
    proc = subprocess.Popen([*FOREGROUND, "run", *args], cwd=tmp_path, env=env, stdout=log.open("w"),
                            stderr=subprocess.STDOUT)
    return proc, log


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def run_of(instance: dg.DagsterInstance, pid: int) -> dg.DagsterRun | None:
    runs = instance.get_runs(filters=dg.RunsFilter(tags={"hitcraft/pid": str(pid)}), limit=1)
    return runs[0] if runs else None


def pool(instance: dg.DagsterInstance):
    return instance.event_log_storage.get_concurrency_info("duckdb")


def holding_run(instance: dg.DagsterInstance, proc: subprocess.Popen) -> dg.DagsterRun | None:
    """The run of `proc` once it is STARTED with the duckdb pool's slot claimed."""
    run = run_of(instance, proc.pid)
    if run is None or run.status != dg.DagsterRunStatus.STARTED:
        return None
    return run if "duckdb" in instance.event_log_storage.get_concurrency_keys() and \
        run.run_id in {s.run_id for s in pool(instance).claimed_slots} else None


def cpu_seconds(pid: int) -> float:
    import os

    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")   # utime + stime


def stop(proc: subprocess.Popen, signum: int, timeout: float = 10.0) -> tuple[int, float]:
    t0 = time.monotonic()
    proc.send_signal(signum)
    code = proc.wait(timeout=timeout)
    return code, time.monotonic() - t0


def assert_nothing_left(instance: dg.DagsterInstance):
    unfinished = instance.get_runs(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED,
                                                                   dg.DagsterRunStatus.STARTING,
                                                                   dg.DagsterRunStatus.CANCELING]))
    assert unfinished == []
    info = pool(instance)
    assert info.claimed_slots == [] and info.pending_steps == []


def test_a_killed_run_is_marked_failed_and_its_slot_freed_by_the_next_run(tmp_path, demo):
    env = env_for(tmp_path, HITCRAFT_EXPORT_DIR=str(demo))
    warehouse = env["HITCRAFT_DUCKDB_PATH"]
    Path(warehouse).parent.mkdir(parents=True)
    duckdb.connect(warehouse).close()
    reader = hold_warehouse(warehouse, 120)   # pins the run in its first step, holding the pool
    instance = dg.DagsterInstance.from_config(env["DAGSTER_HOME"])
    try:
        first, _ = start_run(tmp_path, env, "first")
        dead = wait_for(lambda: holding_run(instance, first), 60, "the first run to hold the duckdb pool")
        first.kill()
        assert first.wait(timeout=10) == -signal.SIGKILL
        assert instance.get_run_by_id(dead.run_id).status == dg.DagsterRunStatus.STARTED   # what it leaves
    finally:
        reader.kill()
        reader.wait()

    second = subprocess.run([*HITCRAFT, "run"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert second.returncode == 0, second.stdout[-2000:] + second.stderr[-3000:]
    # the first step to take the duckdb pool: raw_events or user_profiles (raw_downloads holds the mixpanel pool)
    assert re.search(re.escape(f"marked run {dead.run_id} FAILURE (it was STARTED): the process that ran it (pid "
                               f"{first.pid}) is gone; freed its slot in the duckdb pool (step ")
                     + r"(raw_events|user_profiles)\)", second.stdout), second.stdout[-2000:]
    assert " succeeded in " in second.stdout
    assert instance.get_run_by_id(dead.run_id).status == dg.DagsterRunStatus.FAILURE
    [failure] = [e for e in instance.all_logs(dead.run_id)
                 if e.dagster_event and e.dagster_event.event_type_value == "PIPELINE_FAILURE"]
    assert f"the process that ran it (pid {first.pid} " in failure.message
    assert_nothing_left(instance)
    instance.dispose()


def test_sigint_and_sigterm_stop_a_run_within_seconds_and_free_its_slot(tmp_path, demo):
    env = env_for(tmp_path, HITCRAFT_EXPORT_DIR=str(demo))
    warehouse = env["HITCRAFT_DUCKDB_PATH"]
    Path(warehouse).parent.mkdir(parents=True)
    duckdb.connect(warehouse).close()
    reader = hold_warehouse(warehouse, 120)
    instance = dg.DagsterInstance.from_config(env["DAGSTER_HOME"])
    try:
        holder, _ = start_run(tmp_path, env, "holder")     # inside its first duckdb step, waiting for the reader
        held = wait_for(lambda: holding_run(instance, holder), 60, "the first run to hold the duckdb pool")
        waiter, waiter_log = start_run(tmp_path, env, "waiter")   # waits for the pool behind it
        wait_for(lambda: "waiting for the duckdb pool" in waiter_log.read_text(), 60, "the waiting message")
        assert (f"waiting for the duckdb pool: held by run {held.run_id[:8]}… (pid {holder.pid}, started "
                in waiter_log.read_text())
        assert re.search(r"step (raw_events|user_profiles)\)", waiter_log.read_text())
        # waiting costs no CPU (Dagster's in-process executor alone spins at 100% here)
        before, t0 = cpu_seconds(waiter.pid), time.monotonic()
        time.sleep(2)
        assert (cpu_seconds(waiter.pid) - before) / (time.monotonic() - t0) < 0.3

        code, took = stop(waiter, signal.SIGINT)
        assert code == 130 and took < 8, (code, took, waiter_log.read_text()[-2000:])
        waited = run_of(instance, waiter.pid)
        assert f"stopped by SIGINT: run {waited.run_id} CANCELED" in waiter_log.read_text()
        assert waited.status == dg.DagsterRunStatus.CANCELED

        code, took = stop(holder, signal.SIGTERM)   # inside a step with a RetryPolicy
        assert code == 143 and took < 10, (code, took)
        assert instance.get_run_by_id(held.run_id).status == dg.DagsterRunStatus.CANCELED
        assert_nothing_left(instance)
    finally:
        for proc in (reader, locals().get("holder"), locals().get("waiter")):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
        instance.dispose()


DAY = date(2026, 3, 2)


def materialize_day(tmp_path: Path, instance, warehouse: WarehouseResource):
    from hitcraft_assets.ingestion.mixpanel import MixpanelResource
    from hitcraft_assets.ingestion.sources import ExportSourceResource

    export = tmp_path / "export"
    write_day(export, DAY, [event_line("Login", f"u{k}", ms(DAY, 9, k), f"i{k}") for k in range(5)])
    resources = {"duckdb": warehouse, "export_source": ExportSourceResource(
        source="files", export_dir=str(export), staging_dir=str(tmp_path / "staging"), mixpanel=MixpanelResource())}
    t0 = time.monotonic()
    result = dg.materialize([raw_events], partition_key=DAY.isoformat(), resources=resources, instance=instance,
                            raise_on_error=False)
    return result, time.monotonic() - t0


def test_a_reader_holding_the_warehouse_delays_a_step_which_then_succeeds(tmp_path, instance):
    path = str(tmp_path / "w.duckdb")
    duckdb.connect(path).close()
    holder = hold_warehouse(path, 2.5, read_only=False)
    result, took = materialize_day(tmp_path, instance, WarehouseResource(database=path))
    holder.wait(timeout=10)
    assert result.success
    assert took >= 2.5, took   # it waited for the holder (tries at 0, 1, 3 s)
    with duckdb.connect(path, read_only=True) as conn:
        assert conn.execute("select count(*) from raw.events").fetchall() == [(5,)]
    waits = [e.message for e in instance.all_logs(result.run_id) if "is locked by" in (e.user_message or "")]
    assert waits and all(f"is locked by PID {holder.pid} (" in m for m in waits)
    assert "time.sleep" in waits[0]   # the holder's command line, from /proc


def test_a_step_gives_up_with_warehouse_locked_naming_the_holder(tmp_path, instance):
    path = str(tmp_path / "w.duckdb")
    duckdb.connect(path).close()
    holder = hold_warehouse(path, 30)
    try:
        result, took = materialize_day(tmp_path, instance, WarehouseResource(database=path, lock_wait_seconds=2))
    finally:
        holder.kill()
        holder.wait()
    assert not result.success
    [failure] = [e for e in result.all_events if e.is_step_failure]
    message = failure.step_failure_data.error.message
    assert "WAREHOUSE_LOCKED" in message and f"PID {holder.pid} " in message
    assert "serving snapshot or a copy" in message
    assert took < 15, took   # no Dagster retry (raw_events' RetryPolicy waits 30 s)


def test_only_lock_conflicts_are_waited_for(tmp_path):
    not_a_file = tmp_path / "a_folder.duckdb"
    not_a_file.mkdir()
    t0 = time.monotonic()
    with pytest.raises(duckdb.Error) as caught, \
            WarehouseResource(database=str(not_a_file), lock_wait_seconds=60).get_connection():
        pass
    assert time.monotonic() - t0 < 2 and not isinstance(caught.value, WarehouseLockedError)

    path = str(tmp_path / "w.duckdb")
    duckdb.connect(path).close()
    holder = hold_warehouse(path, 30)
    try:
        with pytest.raises(WarehouseLockedError) as locked, \
                WarehouseResource(database=path, lock_wait_seconds=1.5).get_connection():
            pass
    finally:
        holder.kill()
        holder.wait()
    assert locked.value.holder.pid == holder.pid and locked.value.waited_s >= 1.5


def test_reaping_touches_only_hitcraft_runs_whose_process_is_gone():
    from hitcraft_assets import runs

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    me = runs.owner_tags()
    owner = {**me, runs.PID_TAG: str(live.pid), runs.PID_START_TAG: runs.process_start_token(live.pid)}
    cases = {
        "dead": {**me, runs.PID_TAG: str(gone.pid), runs.PID_START_TAG: "linux:x:1"},
        "recycled": {**owner, runs.PID_START_TAG: "linux:another-boot:1"},   # its pid, not its start time
        "alive": owner,
        "foreign": {"dagster/from_ui": "true"},
    }
    try:
        with dg.instance_for_test(overrides={"concurrency": {"pools": {"default_limit": 4}}}) as instance:
            ids = {}
            for name, tags in cases.items():
                run = instance.add_run(dg.DagsterRun(job_name="all_assets_job", run_id=f"{name}-run",
                                                     tags=tags, status=dg.DagsterRunStatus.STARTED))
                ids[name] = run.run_id
                instance.event_log_storage.initialize_concurrency_limit_to_default("duckdb")
                assert instance.event_log_storage.claim_concurrency_slot("duckdb", run.run_id, "funnels").is_claimed

            found = {r.run_id: r for r in runs.reap_dead_runs(instance)}
            status = {name: instance.get_run_by_id(i).status for name, i in ids.items()}
            holders = {s.run_id for s in runs.describe_pool_holders(instance) if s.holds}
    finally:
        live.kill()
        live.wait()

    assert {r.action for r in found.values()} == {"failed", "reported"}
    assert found[ids["dead"]].action == found[ids["recycled"]].action == "failed"
    assert f"the process that ran it (pid {gone.pid}) is gone" in found[ids["dead"]].message
    assert status["dead"] == status["recycled"] == dg.DagsterRunStatus.FAILURE
    assert status["alive"] == status["foreign"] == dg.DagsterRunStatus.STARTED
    assert ids["alive"] not in found
    assert found[ids["foreign"]].action == "reported"
    assert f"dagster run delete {ids['foreign']}" in found[ids["foreign"]].message
    assert holders == {ids["alive"], ids["foreign"]}


def test_the_analysis_of_loaded_days_completes_while_a_download_waits_for_mixpanel(tmp_path):
    """Issue 15 §2: a download holds the `mixpanel` pool, not the `duckdb` one. A `hitcraft run` whose export
    request Mixpanel keeps waiting (Hold) does not stop another run from analysing the days already loaded."""
    import threading

    from hitcraft_assets.analysis.assets import daily_metrics, sessions
    from hitcraft_assets_tests.fake_mixpanel import FakeMixpanel, Hold

    days = {d: [event_line(("Sign Up", "Login", "Production Started")[k % 3], f"u{k % 7}",
                           ms(date.fromisoformat(d), 9 + k // 10, k % 60), f"{d}-{k}", **{"$os": "iOS"})
                for k in range(40)] for d in ("2026-03-18", "2026-03-19", "2026-03-20")}
    release = threading.Event()
    with FakeMixpanel(events=days, service_account=("sa.user", "sa-secret-123"), project_id="77") as fake:
        env = env_for(tmp_path, HITCRAFT_SOURCE="mixpanel", HITCRAFT_START_DATE="2026-03-18",
                      MIXPANEL_EXPORT_URL=fake.export_url, MIXPANEL_API_URL=fake.api_url, MIXPANEL_PROJECT_ID="77",
                      MIXPANEL_SERVICE_ACCOUNT_USERNAME="sa.user", MIXPANEL_SERVICE_ACCOUNT_SECRET="sa-secret-123")
        first = subprocess.run([*HITCRAFT, "run", "--from", "2026-03-18", "--to", "2026-03-19"], cwd=tmp_path,
                               env=env, capture_output=True, text=True, timeout=300)
        assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-3000:]
        assert "raw_downloads" in first.stdout

        fake.script("2026-03-20", [Hold(release)])
        instance = dg.DagsterInstance.from_config(env["DAGSTER_HOME"])
        downloading, log = start_run(tmp_path, env, "downloading", "--from", "2026-03-20", "--to", "2026-03-20")
        analysis: dict = {}
        try:
            # the run is inside its download: the request is in flight and the mixpanel pool's slot is its
            wait_for(lambda: any(r.finished is None for r in fake.export_requests("2026-03-20")), 120,
                     "the held export request")
            run = wait_for(lambda: run_of(instance, downloading.pid), 30, "the downloading run")
            slots = instance.event_log_storage.get_concurrency_info("mixpanel").claimed_slots
            assert [s.run_id for s in slots] == [run.run_id]
            assert instance.event_log_storage.get_concurrency_info("duckdb").claimed_slots == []

            def analyse():
                analysis["result"] = dg.materialize(
                    [sessions, daily_metrics], partition_key="2026-03-18", instance=instance, raise_on_error=False,
                    resources={"duckdb": WarehouseResource(database=env["HITCRAFT_DUCKDB_PATH"])})

            worker = threading.Thread(target=analyse)
            worker.start()
            worker.join(timeout=120)
            assert not worker.is_alive(), "the analysis waited for the download"
            assert analysis["result"].success
            assert all(r.finished is None for r in fake.export_requests("2026-03-20")[-1:])   # still downloading
        finally:
            release.set()
        assert downloading.wait(timeout=300) == 0, log.read_text()[-3000:]
    with duckdb.connect(env["HITCRAFT_DUCKDB_PATH"], read_only=True) as conn:
        loaded = dict(conn.execute("select event_date::varchar, count(*) from raw.events group by 1").fetchall())
    assert set(loaded) == set(days) and all(loaded.values())
    assert_nothing_left(instance)
    instance.dispose()
