"""`hitcraft check-config`: the config's names against the events a warehouse holds.

A funnel step, a retention event or a dimension property that never occurs in the stored events is almost
always a typo (`Sketch Uploadd`, `utm_sorce`): the engine would silently compute empty funnels and a
single `(none)` segment. These are warnings, not errors: a new event may simply not have been sent yet.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

import duckdb

from hitcraft_assets.config import ProductConfig, property_path

# Properties are looked for in the most recent loaded days only, so that the check stays quick on a large
# warehouse; event names are looked for in every stored day (a narrow column).
RECENT_DAYS = 30


@dataclass(frozen=True)
class ConfigWarning:
    code: str
    key: str
    message: str

    def __str__(self) -> str:
        return f"{self.code}: {self.key}: {self.message}"


def _configured_events(config: ProductConfig) -> list[tuple[str, str]]:
    out = []
    for i, f in enumerate(config.funnels):
        out += [(f"funnels[{i}].steps[{j}]", e) for j, e in enumerate(f.steps)]
        out += [(f"funnels[{i}].exclusions[{j}]", e) for j, e in enumerate(f.exclusions)]
    for key in ("birth_event", "return_event"):
        if config.retention.get(key):
            out.append((f"retention.{key}", config.retention[key]))
    out += [(f"metric_importance.{name}", name) for name in config.metric_importance
            if not name.startswith(("funnel:", "dau", "wau", "mau"))]
    return out


def _configured_properties(config: ProductConfig) -> list[tuple[str, str]]:
    out = [(f"dimensions[{i}].property", d.property) for i, d in enumerate(config.dimensions)]
    for i, f in enumerate(config.funnels):
        out += [(f"funnels[{i}].hold_constant[{j}]", p) for j, p in enumerate(f.hold_constant)]
    out += [(f"session_properties.{c}", p) for c, p in config.session_properties.items() if p]
    return out


def check_against_warehouse(conn: duckdb.DuckDBPyConnection, config: ProductConfig) -> tuple[list[ConfigWarning], dict]:
    """Warnings for configured names absent from raw.events, and what was looked at."""
    tables = {r[0] for r in conn.execute(
        "select schema_name || '.' || table_name from duckdb_tables()").fetchall()}
    if "raw.events" not in tables:
        return [], {"events": 0, "note": "the warehouse has no raw.events yet"}
    seen = {r[0]: r[1] for r in conn.execute("select event, count(*) from raw.events group by 1").fetchall()}
    warnings: list[ConfigWarning] = []
    for key, name in _configured_events(config):
        if name not in seen:
            close = difflib.get_close_matches(name, list(seen), n=1, cutoff=0.75)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            warnings.append(ConfigWarning("CONFIG_UNSEEN_EVENT", key, f"event {name!r} never occurs in raw.events{hint}"))
    props = _configured_properties(config)
    unique = list(dict.fromkeys(p for _, p in props))
    recent = conn.execute("select max(event_date) from raw.events").fetchall()[0][0]
    found: dict[str, int] = {}
    if unique and recent is not None:
        # a property is seen where its literal key or, for a dotted name, its nested path exists (the rule
        # of property_path, as the analysis reads it)
        n = len(unique)
        aggregates = ", ".join(f"count(*) filter (where json_exists(properties, ${i}) or json_exists(properties, ${n + i}))"
                               for i in range(1, n + 1))
        row = conn.execute(
            f"select {aggregates} from raw.events where event_date > ${2 * n + 1}::date - {RECENT_DAYS}",
            [property_path(p) for p in unique] + [property_path(p, nested=True) for p in unique]
            + [recent]).fetchall()[0]   # only placeholders interpolated
        found = dict(zip(unique, row))
    for key, prop in props:
        if recent is not None and not found.get(prop):
            warnings.append(ConfigWarning("CONFIG_UNSEEN_PROPERTY", key,
                                     f"property {prop!r} is on no event of the last {RECENT_DAYS} loaded days"))
    return warnings, {"events": sum(seen.values()), "event_names": len(seen),
                      "last_day": recent.isoformat() if recent else None}
