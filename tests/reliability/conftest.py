"""Fixtures for the reliability tests: a small, fast run config (analytical cost model, quality
from the shipped table) and a throwaway PostgreSQL server, started by the test where the
binaries and the driver exist on the machine."""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

#: A joint random search over a few hundred designs: each trial takes milliseconds to tens of
#: milliseconds, so a process start (about 1-3 s) dominates.
SMALL_RUN = """\
version = 1
kind = "run"
name = "reliable"

[workload]
models = ["rm-small", "rm-med", "rm-large"]
candidates = 4096
keep = 64
qps = 150
queries = 2000
warmup = 200

[quality]
metric = "ndcg_recpipe@64"
source = "table"

[space]
max_stages = 2
targets = ["cpu/cascadelake", "gpu/nvidia/t4"]
engines = [1, 4, 14]
shrink_log2 = [1, 4]
batch_split_log2 = [0, 0]
hw = {{ "cpu/cascadelake" = {{ cores = 1 }} }}

[objectives]
names = ["quality", "p95_latency_s"]

[constraints]
sla_ms = 100

[search]
trials = {trials}
sampler = "random"
seed = 0
strategy = "joint"
"""


@pytest.fixture
def slow_run(request) -> None:
    """Skip unless slow tests were asked for (``-m slow``): this project's default run does not
    deselect the ``slow`` marker by itself."""
    marks = request.config.option.markexpr or ""
    if "slow" not in marks or "not slow" in marks:
        pytest.skip("long variant: run with -m slow")


@pytest.fixture
def run_config(tmp_path: Path):
    """``run_config(trials)``: a small run config file in ``tmp_path``."""

    def make(trials: int) -> Path:
        path = tmp_path / "run.toml"
        path.write_text(SMALL_RUN.format(trials=trials))
        return path

    return make


def codesign_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "codesign", *args]


def _pg_binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def postgres_server():
    """A PostgreSQL server of its own (initdb into a temporary folder, unix socket only, trust
    auth), stopped at the end; ``(url_of(database_name))``. Skipped without the server
    binaries or the psycopg2 driver (``pip install codesign[postgres]``). PostgreSQL refuses to
    run as root: as root, the server runs as the unprivileged user ``nobody``."""
    pytest.importorskip("psycopg2", reason="no PostgreSQL driver: pip install codesign[postgres]")
    initdb, pg_ctl = _pg_binary("initdb"), _pg_binary("pg_ctl")
    if not initdb or not pg_ctl:
        pytest.skip("no PostgreSQL server binaries (initdb, pg_ctl) on this machine")
    prefix: list[str] = []
    folder = Path(tempfile.mkdtemp(prefix="codesign-pg-"))
    if os.geteuid() == 0:
        runuser = shutil.which("runuser")
        try:
            nobody = pwd.getpwnam("nobody")
        except KeyError:
            nobody = None
        if not runuser or nobody is None:
            shutil.rmtree(folder)
            pytest.skip("running as root without runuser and user 'nobody': postgres refuses root")
        prefix = [runuser, "-u", "nobody", "--"]
        os.chown(folder, nobody.pw_uid, nobody.pw_gid)
    folder.chmod(0o755)
    data, port = folder / "data", _free_port()

    def run(*cmd: str) -> None:
        done = subprocess.run(
            [*prefix, *cmd], capture_output=True, text=True, timeout=120, cwd=folder
        )
        if done.returncode:
            raise RuntimeError(f"{cmd[0]} failed: {done.stdout[-2000:]} {done.stderr[-2000:]}")

    try:
        run(initdb, "-D", str(data), "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8")
        run(
            pg_ctl,
            "-D",
            str(data),
            "-l",
            str(folder / "server.log"),
            "-w",
            "-o",
            f"-p {port} -k {folder} -c listen_addresses='' -c fsync=off -c max_connections=50",
            "start",
        )
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        shutil.rmtree(folder, ignore_errors=True)
        pytest.skip(f"could not start a PostgreSQL server: {exc}")

    import psycopg2

    def url_of(database: str) -> str:
        connection = psycopg2.connect(
            dbname="postgres", user="postgres", host=str(folder), port=port
        )
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{database}"')
        connection.close()
        return f"postgresql://postgres@/{database}?host={folder}&port={port}"

    try:
        yield url_of
    finally:
        with contextlib.suppress(Exception):
            run(pg_ctl, "-D", str(data), "-m", "immediate", "stop")
        shutil.rmtree(folder, ignore_errors=True)
