"""Shared fixtures: a fresh store directory per test."""

from __future__ import annotations

import pytest

from logsaver import LogSaver


@pytest.fixture
def saver(tmp_path):
    with LogSaver(tmp_path / "store") as s:
        yield s


@pytest.fixture(scope="session")
def postgres_url(tmp_path_factory):
    """A real PostgreSQL server on loopback for the session (scripts/test-all.sh installs it)."""
    import glob
    import os
    import shutil
    import socket
    import subprocess

    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
    if not bins:
        pytest.fail("PostgreSQL is not installed: run scripts/test-all.sh, which installs it with apt-get")
    bindir = bins[-1]
    import pathlib
    import tempfile

    # Outside pytest's (root-only) temporary tree: the server runs as the postgres user.
    root = pathlib.Path(tempfile.mkdtemp(prefix="logsaver-pg-"))
    data, sockets, log = root / "data", root / "sock", root / "log"
    sockets.mkdir()
    as_postgres: list[str] = []
    if os.geteuid() == 0:  # the server refuses to run as root
        shutil.chown(root, "postgres")
        shutil.chown(sockets, "postgres")
        as_postgres = ["runuser", "-u", "postgres", "--"]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    subprocess.run([*as_postgres, f"{bindir}/initdb", "-D", str(data), "-U", "postgres", "--auth=trust"], check=True, capture_output=True)
    subprocess.run(
        [*as_postgres, f"{bindir}/pg_ctl", "-D", str(data), "-l", str(log), "-w", "-o", f"-p {port} -k {sockets} -h 127.0.0.1", "start"],
        check=True,
        capture_output=True,
    )
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres?sslmode=disable"
    finally:
        subprocess.run([*as_postgres, f"{bindir}/pg_ctl", "-D", str(data), "-m", "fast", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)
