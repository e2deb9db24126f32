"""Where the app reads from, taken from the environment when the app is built (never at import time).

`hitcraft_assets.settings` and `hitcraft_assets.delivery.unsubscribe` are plain modules without Dagster, so the
defaults come from the same functions the pipeline uses: the snapshot the pipeline publishes is the one the
API reads, and the app database the CLI writes keys into is the one the API checks them in.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from hitcraft_assets import settings
from hitcraft_assets.delivery.unsubscribe import app_db_path


@dataclass(frozen=True)
class AppConfig:
    serving_path: Path            # HITCRAFT_SERVING_PATH: the serving snapshot, opened read-only
    app_db_path: Path             # HITCRAFT_APP_DB: API keys and unsubscribes (SQLite)
    cors_origins: list[str] = field(default_factory=list)   # HITCRAFT_CORS_ORIGINS, comma-separated; empty: off


def cors_origins_from_env() -> list[str]:
    text = os.environ.get("HITCRAFT_CORS_ORIGINS") or ""
    return [o.strip().rstrip("/") for o in text.split(",") if o.strip()]


def load_app_config(serving_path: Path | None = None, app_db: Path | None = None,
                    cors_origins: list[str] | None = None) -> AppConfig:
    """The explicit arguments win; each one left out comes from its environment variable (or its default)."""
    return AppConfig(
        serving_path=Path(serving_path) if serving_path else settings.serving_path(),
        app_db_path=Path(app_db) if app_db else app_db_path(),
        cors_origins=list(cors_origins) if cors_origins is not None else cors_origins_from_env(),
    )
