"""HitCraft Analytics Engine: a Dagster code location over a DuckDB warehouse."""

import warnings

# The engine relies on two beta Dagster parameters on purpose (single-run backfills of daily assets, and
# analysis days mapped to UTC days that may not exist yet);
# say so once in the README instead of on every import.
warnings.filterwarnings("ignore", message=r"Parameter `backfill_policy`", module=r"dagster.*")
warnings.filterwarnings("ignore", message=r"Parameter `allow_nonexistent_upstream_partitions`")

from hitcraft_assets.definitions import defs  # noqa: E402

__all__ = ["defs"]
