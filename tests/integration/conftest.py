"""A real PostgreSQL server for the integration tests, started once per test session.

``postgres_url`` runs ``initdb`` and ``pg_ctl start`` on a throwaway data directory, on a free
port of 127.0.0.1 with its unix socket beside the data (never the system's), trust
authentication, and stops the server at the end. PostgreSQL refuses to run as root, so as root
the server runs as the ``postgres`` OS user (``runuser``), owning the temporary folder.

Without the server binaries the tests are skipped with the reason, unless ``CI`` is set: CI must
run them, so there a missing server is a failure.
"""

from __future__ import annotations

import itertools
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

DB_NAME = "ratchet_test"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"PostgreSQL integration tests cannot run in CI: {reason}")
    pytest.skip(reason)


def _as_server_user(argv: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return argv
    runuser = shutil.which("runuser")
    if runuser:
        return [runuser, "-u", "postgres", "--", *argv]
    return ["su", "postgres", "-s", "/bin/sh", "-c", " ".join(f"'{a}'" for a in argv)]


def _run(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv,
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """SQLAlchemy URL of a fresh, empty database on a private PostgreSQL server."""
    binaries = {name: shutil.which(name) for name in ("initdb", "pg_ctl", "postgres")}
    missing = [name for name, path in binaries.items() if path is None]
    if missing:
        _unavailable(f"PostgreSQL server binaries not on PATH: {', '.join(missing)}")
    if os.geteuid() == 0:
        try:
            import pwd

            pwd.getpwnam("postgres")
        except KeyError:
            _unavailable("running as root and there is no 'postgres' OS user to run the server")
    try:
        import psycopg
    except ImportError:
        _unavailable("psycopg is not installed (pip install 'agent-ratchet[test]')")

    root = Path(tempfile.mkdtemp(prefix="ratchet-pg-"))
    data, sock, log = root / "data", root / "sock", root / "server.log"
    sock.mkdir()
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
        shutil.chown(sock, "postgres", "postgres")
    root.chmod(0o700)
    port = _free_port()
    pg_ctl = str(binaries["pg_ctl"])
    started = False
    try:
        _run(
            _as_server_user(
                [
                    str(binaries["initdb"]),
                    "-D",
                    str(data),
                    "-U",
                    "postgres",
                    "-A",
                    "trust",
                    "-E",
                    "UTF8",
                    "--no-sync",
                ]
            )
        )
        options = (
            f"-k {sock} -p {port} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off"
        )
        _run(
            _as_server_user(
                [pg_ctl, "-D", str(data), "-l", str(log), "-o", options, "-w", "-t", "60", "start"]
            )
        )
        started = True
        import psycopg

        deadline = time.monotonic() + 30
        while True:
            try:
                with psycopg.connect(
                    host="127.0.0.1",
                    port=port,
                    user="postgres",
                    dbname="postgres",
                    autocommit=True,
                    connect_timeout=5,
                ) as conn:
                    conn.execute(f'CREATE DATABASE "{DB_NAME}"')
                break
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/{DB_NAME}"
    except subprocess.CalledProcessError as exc:
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        raise RuntimeError(
            f"PostgreSQL failed to start: {exc.stderr or exc.stdout}\n{tail}"
        ) from exc
    finally:
        if started:
            subprocess.run(
                _as_server_user([pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"]),
                capture_output=True,
                timeout=60,
                check=False,
            )
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def create_pg_database(postgres_url: str) -> Iterator[Callable[..., str]]:
    """A function that makes a new database on the test server and returns its URL.

    ``template`` copies an existing database (PostgreSQL's ``CREATE DATABASE ... TEMPLATE``), so
    a migrated schema can be cloned per test in milliseconds instead of migrated each time.
    """
    import psycopg
    from sqlalchemy.engine import make_url

    base = make_url(postgres_url)
    counter = itertools.count()

    def create(template: str | None = None) -> str:
        name = f"t{os.getpid()}_{next(counter)}"
        with psycopg.connect(
            host=base.host, port=base.port, user=base.username, dbname="postgres", autocommit=True
        ) as conn:
            suffix = f' TEMPLATE "{template}"' if template else ""
            conn.execute(f'CREATE DATABASE "{name}"{suffix}')
        return base.set(database=name).render_as_string(hide_password=False)

    yield create
