"""Which faults Dagster's retry policy may retry: only transient ones.

Assets that talk to a network carry NETWORK_RETRY; inside them, `only_transient_retries` turns every other
fault (bad data, a warehouse path that cannot be created, a bug) into a dg.Failure without retries, so a
run fails at once with the real cause instead of reloading every day three more times.
"""

from __future__ import annotations

from contextlib import contextmanager
from collections.abc import Iterator

import dagster as dg

from hitcraft_assets.ingestion.mixpanel import MixpanelRetryExhausted

# Network assets retry with exponential backoff and jitter; the client already retried each request.
NETWORK_RETRY = dg.RetryPolicy(max_retries=3, delay=30, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS)


class Transient(Exception):
    """A fault that may pass on its own (a server that is down): Dagster's retry policy may retry it."""


def transient(exc: BaseException) -> bool:
    """A Mixpanel request that kept failing for network reasons (429s, 5xx, resets, cut streams), or any
    `Transient` fault (an SMTP server that refused connections)."""
    return isinstance(exc, (MixpanelRetryExhausted, Transient))


@contextmanager
def only_transient_retries(what: str, **metadata) -> Iterator[None]:
    """Let transient faults and explicit dg.Failures through; any other exception becomes a dg.Failure
    that Dagster does not retry, with its type and message (never chained: a `requests` exception carries
    the request's headers)."""
    try:
        yield
    except (dg.Failure, dg.RetryRequested):
        raise
    except Exception as exc:
        if transient(exc):
            raise
        raise dg.Failure(description=f"{what} failed: {type(exc).__name__}: {exc}",
                         metadata={**metadata, "error": type(exc).__name__}, allow_retries=False) from None
