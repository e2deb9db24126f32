"""HitCraft Analytics Engine: a Dagster code location over a DuckDB warehouse."""

import warnings

# The engine relies on two beta Dagster parameters on purpose (single-run backfills of daily assets);
# say so once in the README instead of on every import.
warnings.filterwarnings("ignore", message=r"Parameter `backfill_policy`", module=r"dagster.*")

from hitcraft_assets.definitions import defs  # noqa: E402

__all__ = ["defs"]
