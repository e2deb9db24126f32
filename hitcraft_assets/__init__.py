"""HitCraft Analytics Engine: a Dagster code location over a DuckDB warehouse."""

from hitcraft_assets.definitions import defs

__all__ = ["defs"]
