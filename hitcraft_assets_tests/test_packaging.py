"""The package must work when installed from a wheel, not only from a checkout.

A checkout (or an editable install) reads the SQL from the repository's top-level sql/ and copies the
repository's dagster.yaml into DAGSTER_HOME. An installed wheel has no repository around it, so it carries
both: the SQL as the package `hitcraft_assets.sql` (pyproject.toml maps it onto sql/) and the instance
config as hitcraft_assets/dagster.yaml, a copy of the repository's dagster.yaml. These tests build the wheel
from the working tree (without build isolation: fast, and no package index needed) and check that it holds
every SQL file where `warehouse.sql_dir()` looks for it, the instance config, and every file of the package
(pyproject.toml lists the packages, so a new subpackage missing from that list fails here). .ci/run also
installs the wheel into a fresh virtual environment and runs a demo day with it.
"""

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGE = "hitcraft_assets"
# what the build reads from the working tree
BUILD_INPUTS = ("pyproject.toml", "README.md", PACKAGE, "sql")
_SKIP = shutil.ignore_patterns("__pycache__", "*.pyc", ".*")


def repo_sql_files() -> list[str]:
    """Every .sql file under sql/, relative to it, e.g. `analysis/funnels.sql`."""
    return sorted(p.relative_to(REPO / "sql").as_posix() for p in (REPO / "sql").rglob("*.sql"))


def package_files() -> list[str]:
    """Every file of the package in the working tree (caches and hidden files aside), as wheel paths."""
    return sorted(p.relative_to(REPO).as_posix() for p in (REPO / PACKAGE).rglob("*")
                  if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
                  and not any(part.startswith(".") for part in p.relative_to(REPO).parts))


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel built from a copy of the working tree (an in-tree build would write build/ into the
    checkout, where stale files end up in later wheels and concurrent builds collide)."""
    root = tmp_path_factory.mktemp("wheel")
    src, out = root / "src", root / "dist"
    for name in BUILD_INPUTS:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, src / name, ignore=_SKIP)
        else:
            src.mkdir(exist_ok=True)
            shutil.copy2(REPO / name, src / name)
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(out),
         str(src)],
        env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}, capture_output=True, text=True, timeout=240, check=False)
    assert proc.returncode == 0, ("building the wheel failed (the [dev] extra installs the build requirements: "
                                  f"pip install -e '.[dev]'):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    wheels = sorted(out.glob("hitcraft_assets-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> dict:
    """The wheel unpacked as a site folder (what pip installs), and what the package, imported from there,
    says: its location, sql_dir(), the schema it creates from its SQL, the DAGSTER_HOME it prepares."""
    root = tmp_path_factory.mktemp("installed")
    site, home = root / "site", root / "dagster_home"
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(site)
    probe = (
        "import json, duckdb, hitcraft_assets\n"
        "from hitcraft_assets.cli import ensure_dagster_home\n"
        "from hitcraft_assets.warehouse import ensure_schema, existing_tables, sql_dir\n"
        "conn = duckdb.connect()\n"
        "ensure_schema(conn)\n"
        "print(json.dumps({'package': hitcraft_assets.__file__, 'sql_dir': str(sql_dir()),\n"
        "                  'dagster_home': str(ensure_dagster_home()), 'tables': sorted(existing_tables(conn))}))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(site), "DAGSTER_HOME": str(home), "PYTHONDONTWRITEBYTECODE": "1"}
    proc = subprocess.run([sys.executable, "-c", probe], cwd=root, env=env, capture_output=True, text=True,
                          timeout=240, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {"site": site, **json.loads(proc.stdout.strip().splitlines()[-1])}


def test_the_packaged_instance_config_is_the_repositorys_dagster_yaml():
    assert (REPO / PACKAGE / "dagster.yaml").read_bytes() == (REPO / "dagster.yaml").read_bytes(), (
        "hitcraft_assets/dagster.yaml must be a copy of dagster.yaml: cp dagster.yaml hitcraft_assets/")


def test_the_wheel_holds_every_sql_file_and_the_instance_config(wheel):
    sql_files = repo_sql_files()
    assert "schema.sql" in sql_files and any("/" in f for f in sql_files), sql_files
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        missing = [f for f in sql_files if f"{PACKAGE}/sql/{f}" not in names]
        assert not missing, f"SQL files missing from the wheel: {missing}"
        for f in sql_files:
            assert zf.read(f"{PACKAGE}/sql/{f}") == (REPO / "sql" / f).read_bytes(), f
        assert f"{PACKAGE}/dagster.yaml" in names
        assert zf.read(f"{PACKAGE}/dagster.yaml") == (REPO / "dagster.yaml").read_bytes()


def test_the_wheel_holds_every_file_of_the_package_and_nothing_else(wheel):
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
    missing = [f for f in package_files() if f not in names]
    assert not missing, (f"files of the package missing from the wheel: {missing} (a new subpackage goes in "
                         "pyproject.toml's [tool.setuptools] packages, a data file in its package-data)")
    stray = sorted(n for n in names if not n.startswith((f"{PACKAGE}/", f"{PACKAGE}-")))
    assert not stray, f"the wheel installs more than the package: {stray}"


def test_the_installed_package_reads_its_own_sql_and_instance_config(installed):
    site = installed["site"]
    assert Path(installed["package"]).is_relative_to(site), installed["package"]
    sql_dir = Path(installed["sql_dir"])
    assert sql_dir == site / PACKAGE / "sql"
    for f in repo_sql_files():
        assert (sql_dir / f).read_bytes() == (REPO / "sql" / f).read_bytes(), f
    assert {"raw.events", "raw.rejected_events", "raw.load_log"} <= set(installed["tables"]), installed["tables"]
    home_config = Path(installed["dagster_home"]) / "dagster.yaml"
    assert home_config.read_bytes() == (REPO / "dagster.yaml").read_bytes()
