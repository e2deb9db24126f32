"""The runs `hitcraft` executes in its own process, and what becomes of them when that process dies or
is stopped.

`hitcraft run` and `hitcraft evaluate` execute their run in process (`execute_in_process` /
`dg.materialize`): no run launcher, no daemon, nobody but the process itself ever marks the run
finished. A process killed with SIGKILL leaves its run STARTED and its slot of the `duckdb` pool claimed
for ever, and since the pool has one slot, every later run waits behind it. So:

- `owner_tags()`: the tags a run gets to name the process that runs it: host, pid, and the process's
  start time (so that a reused pid is not taken for the live owner);
- `reap_dead_runs(instance)`: runs of this host whose owner process is gone are reported FAILURE through
  Dagster's API and their concurrency slots freed; runs not launched by hitcraft that hold a slot are
  only reported, with how to clean them;
- `describe_pool_holders(instance, pool)`: who holds and who waits for a pool's slots;
- `execute_interruptibly(instance, launch, ...)`: executes the run in a worker thread while the main
  thread handles SIGINT/SIGTERM (the run is marked CANCELED, its slots freed, exit code 128 + signal)
  and a watcher says what a run blocked on the pool waits for.

Plain functions on a DagsterInstance; nothing here imports the rest of the package.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import dagster as dg

HOST_TAG = "hitcraft/host"
PID_TAG = "hitcraft/pid"
PID_START_TAG = "hitcraft/pid_start"
LAUNCH_TAG = "hitcraft/launch"
COMMAND_TAG = "hitcraft/command"

S = dg.DagsterRunStatus
_LAST = datetime.max.replace(tzinfo=UTC)
# statuses of a run whose process may still be working on it (an in-process run is never QUEUED)
UNFINISHED = [S.NOT_STARTED, S.STARTING, S.STARTED, S.CANCELING]
FINISHED = [S.SUCCESS, S.FAILURE, S.CANCELED]


# ---------------------------------------------------------------------------------------------- owners

def process_start_token(pid: int) -> str | None:
    """Identifies one process among all that ever had `pid`: on Linux the boot id and the start time in
    clock ticks since boot (/proc/<pid>/stat field 22), else psutil's create time if psutil is installed,
    else None. None too if the process does not exist."""
    stat = _linux_stat(pid)
    if stat is not None:
        return None if stat is _GONE else f"linux:{_boot_id()}:{stat[1]}"
    try:
        import psutil
    except ImportError:
        return None
    try:
        return f"psutil:{psutil.Process(pid).create_time():.3f}"
    except psutil.Error:
        return None


def process_alive(pid: int, token: str | None) -> bool:
    """Whether the process `pid` that had start token `token` still runs (a zombie does not)."""
    stat = _linux_stat(pid)
    if stat is _GONE:
        return False
    if stat is not None:
        state, ticks = stat
        if state in ("Z", "X", "x"):
            return False
        if token and token.startswith("linux:"):
            return token == f"linux:{_boot_id()}:{ticks}"
        return True
    if token and token.startswith("psutil:"):
        return process_start_token(pid) == token
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_GONE = object()


def _linux_stat(pid: int):
    """(state, start ticks) from /proc/<pid>/stat; _GONE if /proc says there is no such process; None if
    there is no /proc to ask."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read().decode(errors="replace")
    except FileNotFoundError:
        return _GONE if os.path.isdir("/proc/self") else None
    except OSError:
        return None
    fields = data[data.rindex(")") + 2:].split()   # fields[0] is field 3 (state), so field 22 is [19]
    return fields[0], fields[19]


def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return ""


def owner_tags(launch_id: str | None = None) -> dict[str, str]:
    """The tags that name this process as the owner of the run it launches (and the launch itself)."""
    pid = os.getpid()
    return {HOST_TAG: socket.gethostname(), PID_TAG: str(pid), PID_START_TAG: process_start_token(pid) or "",
            LAUNCH_TAG: launch_id or uuid.uuid4().hex}


@dataclass(frozen=True)
class Owner:
    host: str
    pid: int
    token: str | None

    @property
    def on_this_host(self) -> bool:
        return self.host == socket.gethostname()

    def alive(self) -> bool:
        return process_alive(self.pid, self.token)


def run_owner(run: dg.DagsterRun) -> Owner | None:
    """The process that runs `run`, if hitcraft launched it in process (its owner tags, and no launcher:
    a run re-executed from the UI copies the tags but has a job origin and another process)."""
    tags = run.tags
    if HOST_TAG not in tags or PID_TAG not in tags or run.remote_job_origin is not None:
        return None
    try:
        pid = int(tags[PID_TAG])
    except ValueError:
        return None
    return Owner(tags[HOST_TAG], pid, tags.get(PID_START_TAG) or None)


# ---------------------------------------------------------------------------------------------- pools

@dataclass
class PoolSlot:
    """A step of a run that holds (or has been assigned) a slot of a pool, or waits for one."""
    pool: str
    run_id: str
    step_key: str
    holds: bool
    status: dg.DagsterRunStatus | None = None   # None: the run no longer exists
    owner: Owner | None = None
    command: str | None = None
    started: datetime | None = None
    since: datetime | None = None   # when the step asked for the slot

    def describe(self) -> str:
        """`run 1a2b3c4d… (pid 4242, started 21:03, step funnels)`."""
        parts = []
        if self.owner:
            parts.append(f"pid {self.owner.pid}" + ("" if self.owner.on_this_host else f" on {self.owner.host}"))
        elif self.status is None:
            parts.append("a run that no longer exists")
        elif self.command:
            parts.append(f"hitcraft {self.command} without owner tags")
        else:
            parts.append("not launched by hitcraft")
        if self.started:
            parts.append(f"started {self.started.astimezone():%H:%M}")
        if self.status is not None and self.status != S.STARTED:
            parts.append(self.status.value)
        parts.append(f"step {self.step_key}")
        return f"run {self.run_id[:8]}… ({', '.join(parts)})"


def describe_pool_holders(instance: dg.DagsterInstance, pool: str = "duckdb") -> list[PoolSlot]:
    """Which run ids and steps hold the slots of `pool` (claimed, or assigned and about to be claimed)
    and which wait for one, holders first then waiters in queue order."""
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits or pool not in storage.get_concurrency_keys():
        return []
    info = storage.get_concurrency_info(pool)
    entries: dict[tuple[str, str], PoolSlot] = {}
    for slot in info.claimed_slots:
        entries[(slot.run_id, slot.step_key)] = PoolSlot(pool, slot.run_id, slot.step_key, holds=True)
    for step in sorted(info.pending_steps, key=lambda p: p.enqueued_timestamp):
        key = (step.run_id, step.step_key)
        if key in entries:
            entries[key].since = step.enqueued_timestamp
        else:
            entries[key] = PoolSlot(pool, step.run_id, step.step_key, holds=step.assigned_timestamp is not None,
                                    since=step.enqueued_timestamp)
    run_ids = sorted({e.run_id for e in entries.values()})
    records = {r.dagster_run.run_id: r for r in instance.get_run_records(dg.RunsFilter(run_ids=run_ids))} \
        if run_ids else {}
    for entry in entries.values():
        record = records.get(entry.run_id)
        if record is None:
            continue
        run = record.dagster_run
        entry.status, entry.owner, entry.command = run.status, run_owner(run), run.tags.get(COMMAND_TAG)
        stamp = record.start_time or record.create_timestamp.timestamp()
        entry.started = datetime.fromtimestamp(stamp).astimezone() if stamp else None
    return sorted(entries.values(), key=lambda e: (not e.holds, e.since or _LAST))


def _slots_of_run(instance: dg.DagsterInstance, run_id: str) -> list[PoolSlot]:
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        return []
    return [slot for pool in sorted(storage.get_concurrency_keys())
            for slot in describe_pool_holders(instance, pool) if slot.run_id == run_id]


def free_slots(instance: dg.DagsterInstance, run_id: str) -> list[PoolSlot]:
    """Free every slot `run_id` holds or waits for, in every pool; returns what it held."""
    held = _slots_of_run(instance, run_id)
    if held:
        instance.event_log_storage.free_concurrency_slots_for_run(run_id)
    return held


def _slot_text(slots: list[PoolSlot]) -> str:
    held = [s for s in slots if s.holds]
    if not held:
        return ""
    names = ", ".join(f"{s.pool} pool (step {s.step_key})" for s in held)
    return f"; freed its slot{'s' if len(held) > 1 else ''} in the {names}"


# ---------------------------------------------------------------------------------------------- reaping

@dataclass
class ReapedRun:
    """A run `reap_dead_runs` found: `failed` (marked FAILURE, slots freed), `freed` (a finished run whose
    slots were still claimed), or `reported` (not launched by hitcraft on this host: left alone)."""
    run_id: str
    action: str
    status: dg.DagsterRunStatus | None
    owner: Owner | None
    slots: list[PoolSlot] = field(default_factory=list)
    message: str = ""


def reap_dead_runs(instance: dg.DagsterInstance) -> list[ReapedRun]:
    """Every unfinished run that hitcraft launched in process on this host and whose process is gone is
    reported FAILURE (a RUN_FAILURE event saying so) and its concurrency slots are freed; finished runs of
    dead hitcraft processes that still hold slots get them freed. Runs that hold a slot and were not
    launched by hitcraft on this host are reported (`reported`), never touched."""
    found: list[ReapedRun] = []
    done: set[str] = set()
    me = os.getpid()
    host = socket.gethostname()
    for record in instance.get_run_records(dg.RunsFilter(statuses=UNFINISHED, tags={HOST_TAG: host})):
        run = record.dagster_run
        owner = run_owner(run)
        if owner is None or owner.pid == me or owner.alive():
            continue
        command = run.tags.get(COMMAND_TAG, "run")
        reason = (f"the process that ran it (pid {owner.pid} on {owner.host}, `hitcraft {command}`) is gone; "
                  f"marked failed by hitcraft (pid {me})")
        instance.report_run_failed(run, message=f"Run failed: {reason}.", job_failure_data=_failure_data())
        slots = free_slots(instance, run.run_id)
        done.add(run.run_id)
        found.append(ReapedRun(run.run_id, "failed", run.status, owner, slots,
                               f"marked run {run.run_id} FAILURE (it was {run.status.value}): the process that "
                               f"ran it (pid {owner.pid}) is gone{_slot_text(slots)}"))
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        return found
    for pool in sorted(storage.get_concurrency_keys()):
        for slot in describe_pool_holders(instance, pool):
            if slot.run_id in done or not slot.holds:
                continue
            done.add(slot.run_id)
            owner = slot.owner
            if owner is not None and owner.on_this_host:
                if owner.pid == me or owner.alive() or slot.status in UNFINISHED:
                    continue   # alive, or (unfinished and dead) handled above
                slots = free_slots(instance, slot.run_id)
                found.append(ReapedRun(slot.run_id, "freed", slot.status, owner, slots,
                                       f"run {slot.run_id} ({slot.status.value}, its process pid {owner.pid} "
                                       f"is gone) still held slots{_slot_text(slots)}"))
                continue
            found.append(ReapedRun(slot.run_id, "reported", slot.status, owner, [slot], _foreign_message(slot)))
    return found


def _failure_data():
    from dagster._core.events import JobFailureData, RunFailureReason

    return JobFailureData(error=None, failure_reason=RunFailureReason.UNEXPECTED_TERMINATION,
                          first_step_failure_event=None)


def _foreign_message(slot: PoolSlot) -> str:
    if slot.status is None:
        who = "a run that no longer exists in the instance"
    elif slot.owner is not None:
        who = f"{slot.status.value}, launched by hitcraft on {slot.owner.host} (pid {slot.owner.pid})"
    elif slot.command:
        who = f"{slot.status.value}, launched by hitcraft {slot.command} without owner tags (an older hitcraft)"
    else:
        who = f"{slot.status.value}, not launched by hitcraft"
    return (f"run {slot.run_id} ({who}) holds the {slot.pool} pool's slot (step {slot.step_key}); hitcraft "
            f"leaves it alone. If nothing runs it any more: `dagster run delete {slot.run_id}` (with "
            f"DAGSTER_HOME set) deletes it and frees its slot; or, to keep its history, terminate it in the "
            f"Dagster UI and free its slots (GraphQL freeConcurrencySlotsForRun(runId: \"{slot.run_id}\")).")


# ---------------------------------------------------------------------------------------------- the pool wait

POOL_POLL_MAX_S = 0.5


_fix_lock = threading.Lock()
_fix_users = 0
_fix_original = None


@contextmanager
def pool_wait_without_spin() -> Iterator[bool]:
    """Dagster 1.13's in-process executor busy-waits while a step is blocked on a pool:
    `InstanceConcurrencyContext.interval_to_next_pending_claim_check` returns `min([0, *intervals])`,
    never more than 0, so `ActiveExecution.sleep_til_ready` never sleeps (100% CPU until the slot frees).
    Within this block the interval is the time to the next claim check, at most POOL_POLL_MAX_S (so that
    an interrupted run notices soon). Nothing is changed if the installed Dagster already sleeps.
    Yields whether the fix is in place."""
    global _fix_users, _fix_original
    from dagster._core.execution.plan.instance_concurrency_context import InstanceConcurrencyContext as ICC

    with _fix_lock:
        if _fix_users == 0:
            current = ICC.interval_to_next_pending_claim_check
            probe = SimpleNamespace(_pending_claims={"step"}, _pending_timeouts={"step": time.time() + 60})
            if current(probe) <= 0:   # the bug: a claim check due in 60 s and no sleep
                _fix_original = current
                ICC.interval_to_next_pending_claim_check = _interval_to_next_pending_claim_check
        applied = _fix_original is not None
        _fix_users += 1
    try:
        yield applied
    finally:
        with _fix_lock:
            _fix_users -= 1
            if _fix_users == 0 and _fix_original is not None:
                ICC.interval_to_next_pending_claim_check = _fix_original
                _fix_original = None


def _interval_to_next_pending_claim_check(self) -> float:
    if not self._pending_claims or not self._pending_timeouts:
        return 0.0
    return min(max(min(self._pending_timeouts.values()) - time.time(), 0.0), POOL_POLL_MAX_S)


# ---------------------------------------------------------------------------------------------- execution

@dataclass
class RunOutcome:
    result: Any | None            # what `launch` returned (None if the run was stopped before it returned)
    run_id: str | None
    signum: int | None = None     # the signal that stopped the run
    status: dg.DagsterRunStatus | None = None

    @property
    def interrupted(self) -> bool:
        return self.signum is not None

    @property
    def exit_code(self) -> int:
        return 128 + self.signum if self.signum else 0


class _Console:
    """Lines for the person at the terminal, written to the real stdout/stderr: during a run Dagster
    redirects fds 1 and 2 into its compute-log files (and tails them back), so these are duplicates of the
    descriptors taken before the run starts."""

    def __init__(self):
        self._fds = {}
        for name, stream in (("out", sys.stdout), ("err", sys.stderr)):
            try:
                stream.flush()
                self._fds[name] = os.dup(stream.fileno())
            except (OSError, ValueError, AttributeError):
                self._fds[name] = None
        self._lock = threading.Lock()

    def __call__(self, line: str, err: bool = False) -> None:
        fd = self._fds["err" if err else "out"]
        with self._lock:
            if fd is None:
                print(line, file=sys.stderr if err else sys.stdout, flush=True)
                return
            try:
                os.write(fd, (line + "\n").encode())
            except OSError:
                pass

    def close(self) -> None:
        for fd in self._fds.values():
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass


def find_launched_run(instance: dg.DagsterInstance, launch_id: str) -> dg.DagsterRun | None:
    runs = instance.get_runs(filters=dg.RunsFilter(tags={LAUNCH_TAG: launch_id}), limit=1)
    return runs[0] if runs else None


def execute_interruptibly(instance: dg.DagsterInstance, launch: Callable[[dict[str, str]], Any], *,
                          command: str = "run", pool: str = "duckdb", grace_s: float = 3.0,
                          watch_interval_s: float = 2.0, echo: Callable[..., None] | None = None) -> RunOutcome:
    """Call `launch(tags)` (which must execute one run in process, with these tags added to its own) in a
    worker thread, while the main thread handles signals and a watcher thread watches the pool.

    SIGINT and SIGTERM stop the run: it is marked CANCELED at once (as the UI's forced termination
    does) and the worker is interrupted the way Dagster interrupts a step (DagsterExecutionInterruptedError:
    a step waiting for the pool, or without a retry policy, stops and its transaction rolls back). If the
    worker has not returned after `grace_s` (a step with a RetryPolicy turns the interrupt into a retry;
    a long DuckDB query only sees it when it returns) or at a second signal, the process exits there and
    then: DuckDB discards the uncommitted transaction, as after a kill. Either way the run's slots are
    freed and one line says so; the outcome (or the exit status) is 128 + the signal. A SIGINT that the
    parent set to be ignored (a background job) stays ignored.

    While the run's step waits for the pool, the watcher says what it waits for every time that changes
    (`waiting for the duckdb pool: held by run 1a2b3c4d… (pid 4242, started 21:03, step funnels)`), and
    reaps a holder whose process is gone.

    Why a thread: Dagster's own interrupt handling (execute_in_process captures SIGINT, and SIGTERM mapped
    onto it, into a flag) is only read by a running step, and the in-process executor never reads it
    while a step waits for a pool, so the process ignored both signals. It only installs itself in the
    main thread, so it stays out of the way here."""
    console = _Console()
    say = echo or console
    tags = owner_tags()
    launch_id = tags[LAUNCH_TAG]
    box: dict[str, Any] = {}
    stopped = threading.Event()
    signals: list[int] = []

    def work():
        try:
            try:
                box["result"] = launch(tags)
            except BaseException as exc:   # noqa: BLE001 - re-raised in the main thread
                box["error"] = exc
        except BaseException:   # an interruption that arrived just as the run returned
            pass
        finally:
            stopped.set()

    def on_signal(signum, _frame):
        signals.append(signum)

    watched = [signal.SIGTERM]
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        watched.append(signal.SIGINT)
    previous = {}
    in_main = threading.current_thread() is threading.main_thread()
    worker = threading.Thread(target=work, name=f"hitcraft-{command}", daemon=True)
    watcher = _PoolWatcher(instance, launch_id, pool, watch_interval_s, say, stopped, command)
    try:
        if in_main:
            previous = {sig: signal.signal(sig, on_signal) for sig in watched}
        with pool_wait_without_spin():
            worker.start()
            watcher.start()
            cancel_at = None
            while not stopped.wait(0.1):
                if signals and cancel_at is None:
                    cancel_at = time.monotonic()
                    watcher.stop()
                    _begin_cancel(instance, launch_id, worker, signals[0], command, say)
                if cancel_at is not None and (len(signals) > 1 or time.monotonic() - cancel_at > grace_s):
                    break
        watcher.stop()
        if not signals:
            if "error" in box:
                raise box["error"]
            run = find_launched_run(instance, launch_id)
            return RunOutcome(box.get("result"), run.run_id if run else None, None, run.status if run else None)
        return _finish_cancel(instance, launch_id, worker, signals[0], command, box, say)
    finally:
        watcher.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        console.close()


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def _begin_cancel(instance, launch_id, worker, signum, command, say) -> None:
    run = find_launched_run(instance, launch_id)
    name = _signal_name(signum)
    say(f"hitcraft {command}: {name}: stopping run {run.run_id if run else '(not created yet)'}", err=True)
    if run is not None and not run.is_finished:
        # marked CANCELED first, as the UI's forced termination does: the interrupted execution then only
        # notes that it cleaned up (no RUN_CANCELED with the interruption's traceback on the console)
        try:
            instance.report_run_canceled(run, message=f"hitcraft {command} (pid {os.getpid()}) received {name}: "
                                                      f"the run was stopped before it finished")
        except Exception:   # noqa: BLE001 - stopping matters more than the event
            pass
    if worker.is_alive() and worker.ident is not None:
        from dagster._core.errors import DagsterExecutionInterruptedError

        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(worker.ident),
                                                   ctypes.py_object(DagsterExecutionInterruptedError))


def _finish_cancel(instance, launch_id, worker, signum, command, box, say) -> RunOutcome:
    name = _signal_name(signum)
    run = find_launched_run(instance, launch_id)
    if run is not None and not run.is_finished:
        instance.report_run_canceled(run, message=f"hitcraft {command} (pid {os.getpid()}) received {name}: "
                                                  f"the run was stopped before it finished")
    held = free_slots(instance, run.run_id) if run is not None else []
    run = find_launched_run(instance, launch_id)
    status = run.status if run else None
    summary = (f"hitcraft {command}: stopped by {name}: run {run.run_id if run else '(not created)'} "
               f"{status.value if status else ''}{_slot_text(held)}").rstrip()
    if worker.is_alive():
        say(summary + "; the step in flight was abandoned (DuckDB discards its uncommitted transaction)", err=True)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(128 + signum)
    say(summary, err=True)
    return RunOutcome(box.get("result"), run.run_id if run else None, signum, status)


class _PoolWatcher(threading.Thread):
    """While the launched run's step waits for the pool: says who holds it (when that changes, and every
    minute), and reaps holders whose process is gone."""

    REPEAT_S = 60.0

    def __init__(self, instance, launch_id, pool, interval_s, say, stopped: threading.Event, command: str):
        super().__init__(name="hitcraft-pool-watcher", daemon=True)
        self.command = command
        self.instance, self.launch_id, self.pool, self.interval_s, self.say = instance, launch_id, pool, interval_s, say
        self._halt = threading.Event()
        self._run_stopped = stopped
        self._reported: set[str] = set()

    def stop(self) -> None:
        self._halt.set()

    def run(self) -> None:
        run_id = None
        said, said_at, waiting_since = None, 0.0, None
        while not self._halt.wait(self.interval_s) and not self._run_stopped.is_set():
            try:
                if run_id is None:
                    run = find_launched_run(self.instance, self.launch_id)
                    run_id = run.run_id if run else None
                    if run_id is None:
                        continue
                slots = describe_pool_holders(self.instance, self.pool)
                ours = [s for s in slots if s.run_id == run_id]
                if not ours or any(s.holds for s in ours):
                    if waiting_since is not None:
                        self.say(f"got the {self.pool} pool after {time.monotonic() - waiting_since:.0f} s")
                    said, waiting_since = None, None
                    continue
                if waiting_since is None:
                    waiting_since = time.monotonic()
                holders = [s for s in slots if s.holds and s.run_id != run_id]
                if any(h.owner and h.owner.on_this_host and not h.owner.alive() for h in holders):
                    for reaped in reap_dead_runs(self.instance):
                        if reaped.run_id not in self._reported:
                            self._reported.add(reaped.run_id)
                            self.say(f"hitcraft {self.command}: {reaped.message}")
                    continue
                text = ", ".join(h.describe() for h in holders) or "queued behind other steps"
                if text != said or time.monotonic() - said_at > self.REPEAT_S:
                    ahead = [s for s in slots if not s.holds and s.run_id != run_id
                             and (s.since or _LAST) < (ours[0].since or _LAST)]
                    queue = f"; {len(ahead)} step(s) of other runs queued ahead" if ahead else ""
                    self.say(f"waiting for the {self.pool} pool: held by {text}{queue}"
                             f" (waiting {time.monotonic() - waiting_since:.0f} s)")
                    said, said_at = text, time.monotonic()
            except Exception:   # noqa: BLE001 - a watcher never breaks the run
                continue
