"""HitCraft Analytics Engine: a Dagster code location over a DuckDB warehouse.

`defs` (the Definitions) is built on first access, not when the package is imported: the config file and
the settings are read by the command that needs them, so `hitcraft --help` or `hitcraft generate-demo`
work even while the config has a mistake, and a mistake is reported once, as one line, by the command
that reads it. Dagster finds `defs` here as usual (`-m hitcraft_assets`, workspace.yaml).
"""

import warnings

# The engine relies on two beta Dagster parameters on purpose (single-run backfills of daily assets, and
# analysis days mapped to UTC days that may not exist yet);
# say so once in the README instead of on every import.
warnings.filterwarnings("ignore", message=r"Parameter `backfill_policy`", module=r"dagster.*")
warnings.filterwarnings("ignore", message=r"Parameter `allow_nonexistent_upstream_partitions`")

__all__ = ["defs"]


def __getattr__(name: str):
    if name == "defs":
        from hitcraft_assets.definitions import defs

        return defs
    raise AttributeError(f"module 'hitcraft_assets' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), "defs"])
