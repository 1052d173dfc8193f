"""A real PostgreSQL server for the sweep tests: Debian's `postgresql` (which `make test` installs),
a fresh cluster in a temp folder, on 127.0.0.1 and a free port, stopped at the end of the session."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest


def _pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    path = found[-1] if found else shutil.which(name)
    if not path:  # CI must not skip this silently: make test installs the server
        pytest.fail(f"PostgreSQL's {name} not found: install Debian's postgresql (make test does, as root)")
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def postgres_url():
    root = os.geteuid() == 0  # initdb refuses to run as root: run the server as Debian's postgres user
    as_user = ["runuser", "-u", "postgres", "--"] if root else []
    folder = Path(tempfile.mkdtemp(prefix="mnistlab-pg-"))
    data, sock = folder / "data", folder / "sock"
    sock.mkdir()
    if root:
        shutil.chown(folder, "postgres")
        shutil.chown(sock, "postgres")
    port = _free_port()
    run = lambda *cmd: subprocess.run([*as_user, *cmd], check=True, capture_output=True, text=True, cwd="/")  # noqa: E731
    run(_pg_bin("initdb"), "-D", str(data), "-U", "mnistlab", "--auth=trust", "--no-sync")
    run(_pg_bin("pg_ctl"), "-D", str(data), "-w", "-l", str(folder / "server.log"), "-o",
        f"-c listen_addresses=127.0.0.1 -p {port} -k {sock} -c fsync=off", "start")
    try:
        yield f"postgresql://mnistlab@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_user, _pg_bin("pg_ctl"), "-D", str(data), "-m", "immediate", "stop"], capture_output=True, cwd="/")
        shutil.rmtree(folder, ignore_errors=True)
