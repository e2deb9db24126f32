"""A sliding-window rate limiter shared by every process on this machine.

Mixpanel's limits are per project, not per process: the Raw Export API allows 60 queries an hour,
3 a second and 100 at once; the Query API (Engage included) allows 60 an hour and 5 at once. Dagster
may run several runs, each in its own process, against the same project. So the limiter keeps its
state in a small JSON file (one per key, e.g. per host and project) and guards every read-modify-write
with ``fcntl.flock`` on a sibling ``.lock`` file. The state is:

- ``stamps``: start times (``time.time()``) of the requests made within the longest window;
- ``slots``: requests in flight, each with the pid and host that holds it, so that a slot left behind by
  a process that died is reclaimed.

``RateLimiter.acquire()`` blocks (sleeping, never failing) until every window allows one more
request, then records it. ``RateLimiter.slot()`` does the same and also holds a concurrency slot for
the duration of the ``with`` block. Both record the request in the same locked transaction as the
check, so two processes can never both take the last place in a window.
"""

import contextlib
import fcntl
import json
import os
import re
import socket
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol


@dataclass(frozen=True)
class Window:
    """At most ``max_requests`` requests may start within any ``seconds``-long interval."""

    max_requests: int
    seconds: float

    def __post_init__(self) -> None:
        if self.max_requests < 1 or not self.seconds > 0:
            raise ValueError(f"a rate window needs max_requests >= 1 and seconds > 0, got {self}")

    def __str__(self) -> str:
        return f"{self.max_requests}/{self.seconds:g}s"


class _Log(Protocol):
    def info(self, msg: str, *args: Any, **kwargs: Any) -> Any: ...


_SAFE_KEY = re.compile(r"[^A-Za-z0-9._-]+")


class RateLimiter:
    """Cross-process limiter for one key (e.g. ``export-data.mixpanel.com-12345``).

    ``windows`` are all enforced together; ``concurrency`` (None = unlimited) caps the requests in
    flight inside ``slot()``. ``clock`` must be comparable across processes (wall time), ``sleep`` is
    injectable for tests. ``slot_ttl_s`` bounds how long a slot is trusted when its owner cannot be
    checked (another host sharing the directory, or a pid reused after a crash).
    """

    def __init__(
        self,
        state_dir: str | os.PathLike[str],
        key: str,
        windows: Sequence[Window],
        concurrency: int | None = None,
        *,
        poll_s: float = 0.05,
        slot_ttl_s: float = 6 * 3600.0,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if concurrency is not None and concurrency < 1:
            raise ValueError(f"concurrency must be >= 1 or None, got {concurrency}")
        self.state_dir = Path(state_dir)
        self.key = _SAFE_KEY.sub("_", key).strip("._") or "default"
        self.windows = tuple(windows)
        self.concurrency = concurrency
        self.poll_s = poll_s
        self.slot_ttl_s = slot_ttl_s
        self._clock = clock
        self._sleep = sleep
        self._horizon = max((w.seconds for w in self.windows), default=0.0)
        self._host = socket.gethostname()

    @property
    def state_path(self) -> Path:
        return self.state_dir / f"{self.key}.json"

    @property
    def lock_path(self) -> Path:
        return self.state_dir / f"{self.key}.lock"

    def acquire(self, log: _Log | None = None) -> float:
        """Block until every window allows one more request, record it, and return the seconds waited."""
        waited, _ = self._take(want_slot=False, log=log)
        return waited

    @contextlib.contextmanager
    def slot(self, log: _Log | None = None) -> Iterator[float]:
        """Hold a concurrency slot (and count one request in every window) for the ``with`` block.

        Yields the seconds spent waiting for it.
        """
        waited, slot_id = self._take(want_slot=True, log=log)
        try:
            yield waited
        finally:
            self._release(slot_id)

    def snapshot(self) -> dict[str, Any]:
        """The current state (pruned), for diagnostics and tests."""
        with self._locked():
            state = self._load()
            self._prune(state, self._clock())
            return state

    # -- internals ---------------------------------------------------------------------------

    def _take(self, *, want_slot: bool, log: _Log | None) -> tuple[float, str | None]:
        started = self._clock()
        told = False
        while True:
            with self._locked():
                state = self._load()
                now = self._clock()
                self._prune(state, now)
                wait, reason = self._wait_needed(state, now, want_slot)
                if wait <= 0:
                    state["stamps"].append(now)
                    slot_id = None
                    if want_slot:
                        slot_id = uuid.uuid4().hex
                        state["slots"][slot_id] = {"pid": os.getpid(), "host": self._host, "t": now}
                    self._store(state)
                    return now - started, slot_id
            if log is not None and not told:
                log.info(f"rate limiter {self.key}: waiting {wait:.2f} s ({reason})")
                told = True
            self._sleep(wait)

    def _wait_needed(self, state: dict[str, Any], now: float, want_slot: bool) -> tuple[float, str]:
        wait, reason = 0.0, ""
        stamps = sorted(state["stamps"])
        for window in self.windows:
            recent = [t for t in stamps if t > now - window.seconds]
            if len(recent) >= window.max_requests:
                # the window frees a place when its oldest counted request leaves it
                until = recent[-window.max_requests] + window.seconds - now
                if until > wait:
                    wait, reason = until, f"window {window} full"
        if want_slot and self.concurrency is not None and len(state["slots"]) >= self.concurrency:
            if self.poll_s > wait:
                wait, reason = self.poll_s, f"{self.concurrency} requests in flight"
        # a hair more than needed, so the retry sees the window open instead of spinning
        return (wait + 0.001 if wait > 0 else 0.0), reason

    def _prune(self, state: dict[str, Any], now: float) -> None:
        state["stamps"] = [t for t in state["stamps"] if t > now - self._horizon]
        state["slots"] = {
            slot_id: s for slot_id, s in state["slots"].items() if self._slot_alive(s, now)
        }

    def _slot_alive(self, slot: dict[str, Any], now: float) -> bool:
        if now - float(slot.get("t", 0)) > self.slot_ttl_s:
            return False
        if slot.get("host") != self._host:
            return True
        try:
            os.kill(int(slot["pid"]), 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def _release(self, slot_id: str | None) -> None:
        if slot_id is None:
            return
        with self._locked():
            state = self._load()
            state["slots"].pop(slot_id, None)
            self._store(state)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with open(self.lock_path, "a+b") as lock_file:
            fcntl.flock(lock_file.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock_file.fileno(), fcntl.LOCK_UN)

    def _load(self) -> dict[str, Any]:
        try:
            raw = json.loads(self.state_path.read_text())
            stamps = [float(t) for t in raw.get("stamps", [])]
            slots = {str(k): dict(v) for k, v in raw.get("slots", {}).items()}
        except FileNotFoundError:
            stamps, slots = [], {}
        except (ValueError, TypeError, AttributeError):
            # unreadable state (e.g. a crash mid-write on a filesystem without atomic rename):
            # start afresh rather than block forever
            stamps, slots = [], {}
        return {"stamps": stamps, "slots": slots}

    def _store(self, state: dict[str, Any]) -> None:
        tmp = self.state_path.with_name(f"{self.state_path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(state))
        os.replace(tmp, self.state_path)
