"""A per-key token bucket, in memory, one per process: what keeps one API key from starving the others.

Each key gets a bucket of `burst` tokens that refills at `rate_per_s` tokens a second; a request takes one
token, and a request that finds the bucket empty is told how long until the next token (the 429's
`Retry-After`). Defaults: 20 requests a second with bursts of 40 (PostHog allows 240 a minute on its
analytics endpoints; our reads are cheap aggregates, and a dashboard page fans out to a few calls at once).
`HITCRAFT_API_RATE_PER_S` and `HITCRAFT_API_BURST` change them; they are read when the limiter is built
(`limits_from_env()`), never at import time.

The state is per process: two server processes give a key twice the rate. That is fine for one
`hitcraft serve`; a fleet behind a load balancer would need a shared store (Redis) instead.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from hitcraft_assets.settings import SettingsError

DEFAULT_RATE_PER_S = 20.0
DEFAULT_BURST = 40
MAX_BUCKETS = 10_000   # more distinct keys than this in one process: the idle buckets are dropped


@dataclass(frozen=True)
class Limits:
    rate_per_s: float
    burst: int


def limits_from_env() -> Limits:
    """`HITCRAFT_API_RATE_PER_S` (tokens a second, > 0) and `HITCRAFT_API_BURST` (an integer >= 1);
    raises SettingsError (code SETTINGS_RATE_LIMIT) on a value it cannot use."""
    rate_text = (os.environ.get("HITCRAFT_API_RATE_PER_S") or "").strip()
    burst_text = (os.environ.get("HITCRAFT_API_BURST") or "").strip()
    try:
        rate = float(rate_text) if rate_text else DEFAULT_RATE_PER_S
        if not (rate > 0 and math.isfinite(rate)):
            raise ValueError
    except ValueError:
        raise SettingsError(f"SETTINGS_RATE_LIMIT: HITCRAFT_API_RATE_PER_S must be a number of requests a second "
                            f"above 0, got {rate_text!r}") from None
    try:
        burst = int(burst_text) if burst_text else DEFAULT_BURST
        if burst < 1:
            raise ValueError
    except ValueError:
        raise SettingsError(f"SETTINGS_RATE_LIMIT: HITCRAFT_API_BURST must be a whole number of requests, at least "
                            f"1, got {burst_text!r}") from None
    return Limits(rate, burst)


class RateLimiter:
    """Token buckets by key name; thread-safe (FastAPI runs sync dependencies in a thread pool)."""

    def __init__(self, rate_per_s: float = DEFAULT_RATE_PER_S, burst: int = DEFAULT_BURST, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError("rate_per_s must be > 0 and burst >= 1")
        self.rate_per_s = float(rate_per_s)
        self.burst = int(burst)
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}   # key -> (tokens, time of that count)

    @classmethod
    def from_env(cls) -> RateLimiter:
        limits = limits_from_env()
        return cls(limits.rate_per_s, limits.burst)

    def acquire(self, key: str) -> float:
        """Take one token for `key`: 0.0 if granted, else the seconds until a token is available."""
        with self._lock:
            now = self._clock()
            tokens, at = self._buckets.get(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - at) * self.rate_per_s)
            if tokens >= 1.0:
                self._store(key, tokens - 1.0, now)
                return 0.0
            self._store(key, tokens, now)
            return (1.0 - tokens) / self.rate_per_s

    def _store(self, key: str, tokens: float, now: float) -> None:
        if key not in self._buckets and len(self._buckets) >= MAX_BUCKETS:
            # a full bucket is the same as no bucket: forget those
            full_after = self.burst / self.rate_per_s
            self._buckets = {k: (t, a) for k, (t, a) in self._buckets.items() if now - a < full_after}
        self._buckets[key] = (tokens, now)


def retry_after_header(wait_s: float) -> str:
    """`Retry-After` is whole seconds (RFC 9110); round up so that a client that obeys it gets a token."""
    return str(max(1, math.ceil(wait_s)))
