"""The audience's PostgreSQL connection: one per warm container, opened on first use, re-opened when broken.

Every unit of work is one transaction (``Database.run``): committed when it returns, rolled back when it raises, so
the connection is never left in an aborted transaction (or idle in one between invocations). A connection that
broke (the server restarted, a proxy closed it while the container was frozen) is dropped and the next call opens a
new one; after ``ping_after_idle_seconds`` without use it is checked before the work runs, so the first call of an
invocation does not fail on a connection that died in between.

psycopg2 is imported here, in the functions that connect, never at module import (the cold start rule).
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from core.audience.errors import database_error
from core.errors import AWS_ERRORS, UpstreamError, aws_error, error_code

T = TypeVar("T")
# The seconds of an invocation a statement leaves it, to roll back and answer (``Database.bound_to``).
STATEMENT_MARGIN_SECONDS = 1.0
Dsn = str | Callable[[], str]


def read_database_secret(client: Any, parameter: str) -> str:
    """Return the connection string held by an SSM SecureString parameter.

    The value is a libpq URL or DSN, or the JSON of an RDS secret (``username``, ``password``, ``host``, ``port``,
    ``dbname``): a Secrets Manager secret is read through SSM as ``/aws/reference/secretsmanager/<secret name>``.

    Raises
    ------
    UpstreamError
        The parameter cannot be read or does not hold a connection string; the message never holds its value.
    """
    try:
        response = client.get_parameter(Name=parameter, WithDecryption=True)
    except AWS_ERRORS as exc:
        raise aws_error(exc, f"reading the database credentials ({error_code(exc)})") from exc
    value = str(response["Parameter"]["Value"]).strip()
    if not value.startswith("{"):
        return value
    try:
        secret = json.loads(value)
        fields = {
            "host": secret["host"],
            "port": secret.get("port", 5432),
            "dbname": secret.get("dbname") or secret.get("database") or "postgres",
            "user": secret["username"],
            "password": secret["password"],
        }
    except (ValueError, KeyError, TypeError):
        raise UpstreamError(f"the database secret {parameter} is not a connection string or an RDS secret") from None
    from psycopg2.extensions import make_dsn

    return str(make_dsn(**{name: str(item) for name, item in fields.items()}))


class _BoundedCursor:
    """A cursor whose every statement is bounded to what is left of the invocation: each is sent after a ``SET LOCAL
    statement_timeout`` of its own, in the same call (a transaction's statements may wait one after another, each on a
    lock: one bound for them all would let the transaction outlive the function)."""

    def __init__(self, cursor: Any, time_left: Callable[[], float]) -> None:
        self._cursor = cursor
        self._time_left = time_left

    def execute(self, sql: str, params: Any = None) -> None:
        left = self._time_left() - STATEMENT_MARGIN_SECONDS
        # SET takes no parameters: a whole number of milliseconds, at least 1 (0 would be no bound). No "%" is added,
        # so the statement's own placeholders are untouched.
        self._cursor.execute(f"SET LOCAL statement_timeout = {max(1, int(left * 1000))}; {sql}", params)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cursor, name)


class Database:
    """A lazily opened psycopg2 connection and the transactions run on it.

    Parameters
    ----------
    dsn:
        A libpq URL or DSN, or a function returning one (called at each connect, so a rotated secret is read again).
    connect_timeout:
        Seconds to wait for the server when connecting.
    ping_after_idle_seconds:
        A connection unused for longer is checked (``SELECT 1``) before it is used again.
    """

    def __init__(self, dsn: Dsn, *, connect_timeout: int = 5, ping_after_idle_seconds: float = 30.0) -> None:
        self._dsn = dsn
        self._connect_timeout = connect_timeout
        self._ping_after = ping_after_idle_seconds
        self._connection: Any = None
        self._last_used = 0.0
        self._time_left: Callable[[], float] | None = None
        # One transaction at a time on the one connection, whichever thread asks.
        self._lock = threading.RLock()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(connected={self._connection is not None})"

    def _open(self) -> Any:
        import psycopg2

        dsn = self._dsn() if callable(self._dsn) else self._dsn
        try:
            connection = psycopg2.connect(
                dsn,
                connect_timeout=self._connect_timeout,
                application_name="notify",
                # A dead peer is noticed in about a minute, not after the kernel's two hours.
                keepalives=1,
                keepalives_idle=30,
                keepalives_interval=10,
                keepalives_count=3,
            )
        except psycopg2.Error as exc:
            # The connection string may carry a password: the error is translated, its text is not kept.
            raise database_error(exc, "connecting to the database") from None
        connection.autocommit = False
        return connection

    def _discard(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            # It is dropped for being broken: closing it is a courtesy that may fail too.
            with contextlib.suppress(Exception):
                connection.close()

    def _alive(self, connection: Any) -> bool:
        if connection.closed:
            return False
        if time.monotonic() - self._last_used < self._ping_after:
            return True
        import psycopg2

        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
            connection.rollback()
        except psycopg2.Error:
            return False
        return True

    def connection(self) -> Any:
        """Return the open connection, opening it (again) when there is none or it broke."""
        with self._lock:
            if self._connection is not None and not self._alive(self._connection):
                self._discard()
            if self._connection is None:
                self._connection = self._open()
            return self._connection

    def bound_to(self, time_left: Callable[[], float] | None) -> None:
        """Bound each statement of the transactions run from now on to ``time_left()`` less ``STATEMENT_MARGIN_SECONDS``
        (the invocation's time: a handler calls this when it starts; ``None``: no bound).

        Lambda ends a function at its timeout without a word to the server: the statement it waited on runs on, and
        its transaction keeps its locks (a user's row, while a registration counts its devices) until the server finds
        the client gone. Bounded, the statement is cancelled in time and the function answers.
        """
        self._time_left = time_left

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        """Yield a cursor in a transaction: committed when the block ends, rolled back when it raises.

        psycopg2's errors are not translated here (``run`` does it); a broken connection is dropped either way.
        """
        with self._lock:
            connection = self.connection()
            try:
                with connection.cursor() as cursor:
                    yield cursor if self._time_left is None else _BoundedCursor(cursor, self._time_left)
                connection.commit()
            except BaseException:
                self._rollback(connection)
                raise
            finally:
                self._last_used = time.monotonic()

    def _rollback(self, connection: Any) -> None:
        try:
            connection.rollback()
        except Exception:
            self._discard()
            return
        if connection.closed:
            self._discard()

    def run(self, work: Callable[[Any], T], action: str) -> T:
        """Run ``work(cursor)`` in one transaction and return what it returns.

        Raises
        ------
        NotificationError
            psycopg2's error translated (``core/audience/errors.py``), raised ``from`` it; ``action`` names what was
            being done (``"reading user"``).
        """
        import psycopg2

        try:
            with self.transaction() as cursor:
                return work(cursor)
        except psycopg2.Error as exc:
            raise database_error(exc, action) from exc

    def close(self) -> None:
        """Close the connection, if open; the next call opens a new one."""
        with self._lock:
            self._discard()
