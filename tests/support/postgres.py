"""A real PostgreSQL for the tests: a throwaway server from the machine's binaries, or the one ``DATABASE_URL`` names.

Either way the tests get a database of their own, created for the session (``notify_test_<random>``) and dropped at
its end, with the migrations applied once: a ``DATABASE_URL`` pointing at a development database is never touched
beyond creating and dropping that one (its role needs CREATEDB). The server is started with the local stack's own
logic (``infra/local/postgres.py``: as the ``postgres`` user when root, loopback only, fsync off) and stopped at the
end of the session.

Fixtures (import them into a ``conftest.py``): ``postgres_url`` (session: the migrated database's URL), ``db`` (a
psycopg2 connection to that database, emptied before the test, closed after), ``database`` (the service's
``Database`` on it, emptied likewise), ``make_database`` (a function creating another, empty database: for the
migration tests).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from core.audience.connection import Database
from infra.local.config import HOST, LocalConfig
from infra.local.postgres import embedded
from infra.migrate import migrate

# Where tests/conftest.py keeps the shell's DATABASE_URL: it removes every function setting from the environment.
TEST_DATABASE_URL = "NOTIFY_TEST_DATABASE_URL"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def with_database(url: str, name: str) -> str:
    """Return ``url`` naming the database ``name`` instead."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


def _admin(url: str) -> Any:
    import psycopg2

    connection = psycopg2.connect(url)
    connection.autocommit = True
    return connection


def create_database(server_url: str) -> str:
    """Create an empty database on the server of ``server_url``; return its URL."""
    name = f"notify_test_{secrets.token_hex(4)}"
    admin = _admin(server_url)
    try:
        with admin.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{name}"')
    finally:
        admin.close()
    return with_database(server_url, name)


def drop_database(server_url: str, url: str) -> None:
    """Drop the database of ``url``, ending the sessions still on it."""
    name = urlsplit(url).path.lstrip("/")
    admin = _admin(server_url)
    try:
        with admin.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.close()


@contextlib.contextmanager
def throwaway_server(external: str | None = None) -> Iterator[str]:
    """Yield the URL of a PostgreSQL server: ``external`` when given, else one of the machine's binaries on a free
    port, stopped and its data removed at the end (the benchmarks use it too)."""
    if external:
        yield external
        return
    state = Path(tempfile.mkdtemp(prefix="notify-pg-"))
    state.chmod(0o755)  # the server may run as another user (postgres), who must enter it
    config = LocalConfig.from_env({"LOCAL_STATE_DIR": str(state), "LOCAL_POSTGRES_PORT": str(_free_port())})
    server = embedded(config)
    try:
        yield server.start()
    finally:
        server.stop()
        shutil.rmtree(state, ignore_errors=True)


@contextlib.contextmanager
def migrated_database(server_url: str) -> Iterator[str]:
    """Yield the URL of a new database on the server, migrated; dropped at the end."""
    url = create_database(server_url)
    try:
        migrate(url)
        yield url
    finally:
        drop_database(server_url, url)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """The URL of a PostgreSQL server for this session: ``DATABASE_URL``'s, or a throwaway one stopped at the end."""
    with throwaway_server(os.environ.get(TEST_DATABASE_URL)) as url:
        yield url


@pytest.fixture(scope="session")
def postgres_url(postgres_server: str) -> Iterator[str]:
    """The URL of this session's own database, migrated; dropped at the end of the session."""
    with migrated_database(postgres_server) as url:
        yield url


def truncate_all(connection: Any) -> None:
    """Empty every table the migrations made (``schema_migrations`` kept), in one statement."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT string_agg(format('%I', tablename), ', ') FROM pg_tables"
            " WHERE schemaname = 'public' AND tablename <> 'schema_migrations'"
        )
        tables = cursor.fetchone()[0]
        if tables:
            cursor.execute(f"TRUNCATE {tables} CASCADE")
    connection.commit()


@pytest.fixture
def db(postgres_url: str) -> Iterator[Any]:
    """A psycopg2 connection to the session's database, every table emptied first; closed after the test."""
    import psycopg2

    connection = psycopg2.connect(postgres_url)
    truncate_all(connection)
    try:
        yield connection
    finally:
        connection.close()


@pytest.fixture
def database(db: Any, postgres_url: str) -> Iterator[Database]:
    """The service's ``Database`` on the session's emptied database; closed after the test."""
    database = Database(postgres_url)
    try:
        yield database
    finally:
        database.close()


@pytest.fixture
def make_database(postgres_server: str) -> Iterator[Callable[[], str]]:
    """A function creating an empty database on the session's server; the ones it made are dropped after the test."""
    made: list[str] = []

    def make() -> str:
        made.append(create_database(postgres_server))
        return made[-1]

    yield make
    for url in made:
        drop_database(postgres_server, url)
