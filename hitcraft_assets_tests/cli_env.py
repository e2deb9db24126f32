"""How the tests run `hitcraft` as a child process: the command, and an environment of its own (a Dagster home
with the repository's instance config, a data folder and a warehouse under the test's folder, and none of the
caller's HITCRAFT_* or MIXPANEL_* settings)."""

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
HITCRAFT = [sys.executable, "-m", "hitcraft_assets.cli"]


def env_for(tmp_path: Path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HITCRAFT_", "MIXPANEL_"))}
    env.update({
        "DAGSTER_HOME": str(tmp_path / "home"),
        "HITCRAFT_DATA_DIR": str(tmp_path / "data"),
        "HITCRAFT_DUCKDB_PATH": str(tmp_path / "data" / "w.duckdb"),
        "PYTHONWARNINGS": "ignore",
    })
    env.update(extra)
    (tmp_path / "home").mkdir(exist_ok=True)
    (tmp_path / "home" / "dagster.yaml").write_text((REPO / "dagster.yaml").read_text())
    return env
