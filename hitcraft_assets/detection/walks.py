"""Anomaly walks carried from one run to the next (issue 15: a day costs the same on day 365 as on day 30).

A day's anomaly scan walks every series from its scan start (`detection.assets.anchor`, 120-147 days back)
to the day, because the detector carries state along a series (regimes, episodes, the days a baseline may
use). The next morning's run has the same start for 27 days of 28, and the same values on all but its
newest days; so each series' state after the last day judged is stored (`analytics.anomaly_walks`), and
a run whose series has the same first days (`scan.walk_digest`: values, volumes, first day of data, for a
conversion the days it tests, and the detectors' code) goes on from it: it judges only the days after the
state, with the judgements of the days before taken from the state's tail. A series whose first days changed (a late event, a held day, a
new segment) is walked from the start, as before; the result is the same either way (a test compares
both, row for row). A conversion's state holds both of its walks (the per-day detector on its days with
enough trials, the pooled windows on the others: `scan.RateWalks`).

The state is pickled: it is written and read by this module only, inside the warehouse, and read only
when its digest (which covers the detectors' code, and so the classes pickled) matches.
"""

from __future__ import annotations

import pickle
from datetime import date, timedelta

import numpy as np

from hitcraft_assets.detection import scan
from hitcraft_assets.detection.anomalies import TAIL_POINTS, WalkState
from hitcraft_assets.lazy import lazy
from hitcraft_assets.warehouse import named_statements, transaction

pa = lazy("pyarrow")

SQL_FILE = "detection/anomalies.sql"
# a continuation's episode start is found by walking back at most this many judgements (an episode lasts at
# most shift_confirm_days judged days before it becomes a regime); the days a run writes must lie this far
# inside a resumed state's tail
EPISODE_LOOKBACK = 8


def ensure_walks(conn) -> None:
    conn.execute(named_statements(SQL_FILE)["walks_schema"])


def resumable(conn, series: list[scan.Series], calendar: list[date], first_written: date,
              sizes: dict[tuple[str, str], np.ndarray]) -> dict[scan.SeriesKey, WalkState | scan.RateWalks]:
    """The stored states a scan over `calendar` may resume from, per series: same scan start, a state no
    further than the calendar's end, a tail that holds every day the run writes from `first_written` on, the
    same digest of the days before it, and the kind of walk the series takes (a conversion's two walks, or
    one). `sizes`: the scan's `segment_sizes`."""
    rows = conn.execute(named_statements(SQL_FILE)["stored_walks"], {"start": calendar[0].isoformat()}).fetchall()
    if not rows:
        return {}
    by_key = {s.key: s for s in series}
    first_index = (first_written - calendar[0]).days
    out = {}
    for metric, dimension, segment, next_date, digest, blob in rows:
        s = by_key.get((metric, dimension, segment))
        n = (next_date - calendar[0]).days
        if s is None or n > len(calendar) or n - TAIL_POINTS + EPISODE_LOOKBACK > first_index:
            continue
        if scan.walk_digest(s, n, sizes) == digest:
            state = pickle.loads(blob)
            kind = scan.RateWalks if scan.is_rate(s.metric) else WalkState
            if isinstance(state, kind) and state.next_index == n:
                out[s.key] = state
    return out


def save(conn, series: list[scan.Series], calendar: list[date], states: dict[scan.SeriesKey, WalkState | scan.RateWalks],
         sizes: dict[tuple[str, str], np.ndarray]) -> int:
    """Store where each series' walk over `calendar` stopped (after its last day); returns how many."""
    by_key = {s.key: s for s in series}
    start = calendar[0]
    next_date = calendar[-1] + timedelta(days=1)
    rows = [{"walk_start": start, "metric": k[0], "dimension": k[1], "segment": k[2], "next_date": next_date,
             "digest": scan.walk_digest(by_key[k], state.next_index, sizes),
             "state": pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)}
            for k, state in states.items() if state.next_index == len(calendar)]
    schema = pa.schema([("walk_start", pa.date32()), ("metric", pa.string()), ("dimension", pa.string()),
                        ("segment", pa.string()), ("next_date", pa.date32()), ("digest", pa.string()),
                        ("state", pa.binary())])
    hc_walks = pa.Table.from_pylist(rows, schema=schema)
    statements = named_statements(SQL_FILE)
    conn.register("hc_walks", hc_walks)
    try:
        with transaction(conn):
            conn.execute(statements["replace_walks"])
            conn.execute(statements["insert_walks"])
            conn.execute(statements["drop_old_walks"], {"start": start.isoformat()})
    finally:
        conn.unregister("hc_walks")
    return len(rows)
