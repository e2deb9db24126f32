"""Identity: which ids are one user. Keeps core.identity_map and the core.identified_events view (a
`user_key` per event) up to date for either of Mixpanel's ID merge systems.

- **Simplified ID Merge** (today's projects): a `$device_id` belongs to the first `$user_id` seen with it;
  the exported distinct_id is already canonical (sql/analysis/identity_map.sql, `rebuild` defines it).
- **Original ID Merge** (legacy projects): the exported distinct_id is the one sent, and three events join
  ids: `$identify` (`$anon_distinct_id` or `$anon_id`, `$identified_id`), `$create_alias` (`alias`,
  `distinct_id`) and `$merge` (`$distinct_ids`). Their edges (core.identity_edges) are applied in time order
  by `apply_edges`, a union-find with Mixpanel's conditions, into core.identity_clusters.

The mode is the config's `identity`, or, when unset, detected: original when any such event (with its ids)
was loaded. Clusters are updated incrementally when every new edge is later than the last one applied,
and rebuilt from all stored edges otherwise (an earlier day reloaded, changed or held).

Only the days loaded since the last run are read (issue 15): each UTC day's device rows
(core.identity_device_days: a device's first $user_id that day) and edges (core.identity_edges) are kept,
with what the day was read from (core.identity_days: raw.load_log's loaded_at and fingerprint, and its
ID-management events); a day loaded, reloaded, held or released since is read again, and in Simplified mode
only the map rows of the devices it touches are recomputed, from their rows of every day. The result is the
whole map's definition (`rebuild` in the SQL; a test compares the two morning after morning).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache

import duckdb

from hitcraft_assets.config import IDENTITY_MODES as MODES
from hitcraft_assets.lazy import lazy
from hitcraft_assets.warehouse import ensure_schema, named_statements, run_sql, transaction

pa = lazy("pyarrow")

SQL_FILE = "analysis/identity_map.sql"
SPECIAL_EVENTS = ("$identify", "$create_alias", "$merge")

# an edge as applied: (time, insert_id, kind, seq, a, b), sorted by that tuple
Edge = tuple[datetime, str, str, int, str, str]


@dataclass
class Clusters:
    """Union-find over distinct ids with what Mixpanel's rules need: which ids are identified, which alias
    points where, and when each id first joined another. `root` maps an id to its parent (roots to
    themselves); `members` holds each root's ids."""

    root: dict[str, str] = field(default_factory=dict)
    members: dict[str, list[str]] = field(default_factory=dict)
    identified: set[str] = field(default_factory=set)
    identified_in: dict[str, int] = field(default_factory=dict)   # root -> identified ids in its cluster
    alias_of: dict[str, str] = field(default_factory=dict)
    merged_at: dict[str, datetime] = field(default_factory=dict)

    def find(self, x: str) -> str:
        if x not in self.root:
            self.root[x], self.members[x], self.identified_in[x] = x, [x], 0
            return x
        r = x
        while self.root[r] != r:
            r = self.root[r]
        while self.root[x] != r:                     # path compression
            self.root[x], x = r, self.root[x]
        return r

    def identify(self, x: str) -> None:
        if x not in self.identified:
            self.identified.add(x)
            self.identified_in[self.find(x)] += 1

    def union(self, a: str, b: str, at: datetime) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return
        if len(self.members[ra]) < len(self.members[rb]):
            ra, rb = rb, ra
        for r in (ra, rb):
            if len(self.members[r]) == 1:
                self.merged_at.setdefault(self.members[r][0], at)
        self.root[rb] = ra
        self.members[ra].extend(self.members.pop(rb))
        self.identified_in[ra] += self.identified_in.pop(rb)


def apply_edges(clusters: Clusters, edges: Iterable[Edge]) -> Clusters:
    """Apply edges in the order given (callers sort them by time, then insert_id), with Mixpanel's rules:

    - identify(anon, identified): merges only if the anon id's cluster holds no identified id yet (a device
      shared by two users stays with the first one);
    - alias(alias, distinct_id): an alias maps to one distinct_id only; a later alias of it is ignored;
    - merge(a, b): always.
    Every `$identified_id`, `$create_alias` distinct_id and `$merge` member counts as identified."""
    for time, _insert_id, kind, _seq, a, b in edges:
        if kind == "identify":
            if clusters.find(a) != clusters.find(b) and clusters.identified_in[clusters.find(a)] == 0:
                clusters.union(a, b, time)
            clusters.identify(b)
        elif kind == "alias":
            if clusters.alias_of.setdefault(a, b) == b:
                clusters.union(a, b, time)
            clusters.identify(b)
        elif kind == "merge":
            clusters.union(a, b, time)
            clusters.identify(a)
            clusters.identify(b)
        else:
            raise ValueError(f"unknown identity edge kind {kind!r}")
    return clusters


def cluster_key(members: Iterable[str], identified: set[str]) -> str:
    """The cluster's user_key: its smallest identified id, else its smallest id (Mixpanel picks one at
    random; this rule makes the key the same on every build)."""
    members = list(members)
    named = [m for m in members if m in identified]
    return min(named or members)


def cluster_rows(clusters: Clusters) -> list[tuple]:
    """One row per id: (distinct_id, user_key, identified, alias_of, merged_at, cluster_size), by id."""
    rows = []
    for r, ids in clusters.members.items():
        key = cluster_key(ids, clusters.identified)
        rows.extend((i, key, i in clusters.identified, clusters.alias_of.get(i), clusters.merged_at.get(i), len(ids))
                    for i in ids)
    return sorted(rows)


def clusters_from_rows(rows: Iterable[tuple]) -> Clusters:
    """Rebuild the union-find from stored (distinct_id, user_key, identified, alias_of, merged_at) rows."""
    clusters = Clusters()
    for distinct_id, user_key, identified, alias_of, merged_at in rows:
        clusters.find(user_key)
        if distinct_id != user_key:
            clusters.root[distinct_id] = user_key
            clusters.members[user_key].append(distinct_id)
        if identified:
            clusters.identified.add(distinct_id)
            clusters.identified_in[user_key] += 1
        if alias_of is not None:
            clusters.alias_of[distinct_id] = alias_of
        if merged_at is not None:
            clusters.merged_at[distinct_id] = merged_at
    return clusters


def choose_mode(configured: str | None, counts: dict[str, int]) -> tuple[str, str]:
    """The identity mode and a sentence saying why: the configured one, else original when any
    $identify / $create_alias / $merge event (with its ids) was loaded, else simplified."""
    found = ", ".join(f"{counts[e]:,} {e}" for e in SPECIAL_EVENTS if counts.get(e))
    if configured is not None:
        if configured not in MODES:
            raise ValueError(f"identity must be one of {', '.join(MODES)}, got {configured!r}")
        ignored = f"; {found} events ignored" if configured == "simplified" and found else ""
        return configured, f"{configured} (configured{ignored})"
    if found:
        return "original", f"original (detected: {found} events)"
    return "simplified", "simplified (detected: no $identify, $create_alias or $merge events)"


def ensure_identity(conn: duckdb.DuckDBPyConnection) -> None:
    """Make sure the identity tables and the view exist (empty ones if never rebuilt)."""
    ensure_schema(conn)
    statements = named_statements(SQL_FILE)
    conn.execute(statements["schema"])
    conn.execute(statements["loaded_days_macro"])
    conn.execute(statements["identified_events"])


def rebuild_identity(conn: duckdb.DuckDBPyConnection, mode: str | None = None) -> dict:
    """Bring identity up to date with every stored event, reading only the days loaded since the last run;
    returns what the asset reports. `mode` is the config's `identity` (simplified | original); None detects
    it from the data."""
    ensure_identity(conn)
    statements = named_statements(SQL_FILE)
    with transaction(conn):
        conn.execute(statements["changed_days"])
        (changed,) = conn.execute("select count(*) from hc_identity_changed").fetchone()
        conn.execute(statements["special_events"])
        conn.execute(statements["fresh_device_days"])
        conn.execute(statements["update_device_days"])
        conn.execute(statements["update_days"])
        counts = dict(conn.execute(statements["special_counts"]).fetchall())
        chosen, why = choose_mode(mode, counts)
        previous = conn.execute("select max(mode) from core.identity_state").fetchone()[0]
        conn.execute(statements["current_edges"])
        added = conn.execute(statements["added_edges"]).fetchall()
        removed = conn.execute(statements["removed_edges"]).fetchall()
        last = conn.execute(statements["all_edges"]).fetchall()[-1:]
        conn.execute(statements["replace_changed_days"])
        if chosen == "original":
            update = _update_clusters(conn, statements, previous, added, removed, last)
            conn.execute(statements["original_map"])
        elif previous == "simplified":
            conn.execute(statements["update_map"])
            conn.execute(statements["clear_clusters"])
            (devices,) = conn.execute("select count(*) from hc_identity_devices").fetchone()
            update = (f"incremental (simplified: {changed:,} changed days read again, "
                      f"{devices:,} devices' rows updated)") if changed else "unchanged (no changed days)"
        else:
            conn.execute(statements["whole_map"])
            conn.execute(statements["clear_clusters"])
            update = f"rebuild (simplified: every device's map row, from the device rows of {changed:,} days read)"
        run_sql(conn, statements["set_state"], {"mode": chosen, "source": "configured" if mode else "detected"})
        conn.execute(statements["identified_events"])
        for table in ("hc_identity_special", "hc_identity_edges", "hc_identity_changed", "hc_identity_fresh",
                      "hc_identity_devices"):
            conn.execute(f"drop table if exists temp.{table}")
    devices, users = conn.execute(
        "select count(*), count(distinct user_id) from core.identity_map").fetchall()[0]
    clusters, merged, edges = conn.execute(
        "select (select count(distinct user_key) from core.identity_clusters where cluster_size > 1), "
        "(select count(*) from core.identity_clusters where distinct_id <> user_key), "
        "(select count(*) from core.identity_edges)").fetchall()[0]
    stats = {"identity": why, "identity_update": update, "edges": edges, "clusters": clusters,
             "ids_merged": merged}
    if chosen == "simplified":
        stats |= {"devices_mapped": devices, "users_with_devices": users}
    return stats


def _update_clusters(conn, statements, previous: str | None, added: list[tuple], removed: list[tuple],
                     last: list[tuple]) -> str:
    """Apply the new edges to the stored clusters when they all come after the last applied edge, else
    rebuild from every stored edge; returns which, and why."""
    new = [row[:6] for row in added]
    if previous != "original":
        reason = "rebuild (first build in original mode)"
    elif removed:
        days = ", ".join(str(d) for d, _ in removed)
        reason = f"rebuild (edges changed or left on earlier days: {days})"
    elif not new:
        return "unchanged (no new edges)"
    elif last and min(new) <= tuple(last[0]):
        reason = f"rebuild (new edges on {added[0][6]} come before the last applied one)"
    else:
        clusters = clusters_from_rows(conn.execute(statements["stored_clusters"]).fetchall())
        _write_clusters(conn, statements, apply_edges(clusters, new))
        return f"incremental ({len(new):,} new edges applied)"
    _write_clusters(conn, statements, apply_edges(Clusters(), conn.execute(statements["all_edges"]).fetchall()))
    return reason


@lru_cache(maxsize=1)
def _row_schema() -> pa.Schema:
    return pa.schema([("distinct_id", pa.string()), ("user_key", pa.string()), ("identified", pa.bool_()),
                      ("alias_of", pa.string()), ("merged_at", pa.timestamp("us", tz="UTC")),
                      ("cluster_size", pa.int64())])


def _write_clusters(conn, statements, clusters: Clusters) -> None:
    rows = cluster_rows(clusters)
    schema = _row_schema()
    columns = list(zip(*rows)) if rows else [[] for _ in schema]
    table = pa.Table.from_arrays([pa.array(c, type=f.type) for c, f in zip(columns, schema)], schema=schema)
    conn.register("hc_identity_rows", table)
    try:
        conn.execute(statements["replace_clusters"])
    finally:
        conn.unregister("hc_identity_rows")
