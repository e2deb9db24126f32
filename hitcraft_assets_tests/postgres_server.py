"""A real PostgreSQL server on loopback for tests: Debian's `postgresql` binaries (.ci/run installs them),
a fresh cluster in a temporary folder, trust authentication on 127.0.0.1 only, stopped at the end.

PostgreSQL refuses to run as root, so under root the cluster belongs to the `postgres` system user that the
Debian package creates, and its commands run through `runuser`."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path


def _binary(name: str) -> str:
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None)
    if not found:
        raise RuntimeError(f"PostgreSQL's {name} is not installed (apt-get install postgresql; .ci/run does)")
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_owner(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


@contextlib.contextmanager
def postgres_server(database: str = "dagster") -> Iterator[str]:
    """Start a cluster in a new temporary folder (not under pytest's tmp_path, whose parents the `postgres`
    user cannot enter); yields the SQLAlchemy URL of `database` on it (user `hitcraft`, no password)."""
    folder = Path(tempfile.mkdtemp(prefix="hitcraft-pg-"))
    data = folder / "pgdata"
    data.mkdir()
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres")
        shutil.chown(data, "postgres")
    subprocess.run(_as_owner([_binary("initdb"), "-D", str(data), "-U", "hitcraft", "--auth=trust",
                              "--encoding=UTF8", "--no-instructions"]),
                   check=True, capture_output=True)
    port = _free_port()
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {data} -c fsync=off"
    subprocess.run(_as_owner([_binary("pg_ctl"), "-D", str(data), "-o", options, "-l", str(data / "log"),
                              "-w", "start"]), check=True, capture_output=True)
    try:
        subprocess.run([_binary("psql"), "-h", "127.0.0.1", "-p", str(port), "-U", "hitcraft", "-d", "postgres",
                        "-c", f"create database {database}"], check=True, capture_output=True)
        yield f"postgresql+psycopg2://hitcraft@127.0.0.1:{port}/{database}"
    finally:
        subprocess.run(_as_owner([_binary("pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]),
                       capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)
