"""Plain SQL migrations (``infra/migrations/NNNN_name.sql``), applied once each, in name order, under a lock.

The one runner of the local stack (``infra/local/migrations.py`` re-exports it), the tests and a deploy step::

    python -m infra.migrate --database-url postgresql://user@host:5432/db     # or DATABASE_URL in the environment
    python -m infra.migrate --secret-parameter /notify/prod/database-url      # the stage's SSM SecureString

A runner takes a session-level advisory lock before anything else, then reads what ``schema_migrations`` records:
a second runner waits for the first and finds its files applied, so each file runs once however many start. Each
file runs in its own transaction together with the row recording it: a failed file leaves nothing behind and stops
the run, and the files after it are not tried.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
# Any constant works, as long as every runner uses the same one.
LOCK_KEY = 7_421_133


class MigrationError(Exception):
    """A migration file failed, ``name`` saying which, and nothing of it was applied; or (``connect``) the database
    could not be reached, its URL never in the text."""

    def __init__(self, name: str, reason: str) -> None:
        self.name = name
        super().__init__(f"{name}: {reason}")


def pending(applied: set[str], directory: Path = MIGRATIONS) -> list[Path]:
    """Return the migration files not applied yet, in the order they run."""
    return [path for path in sorted(directory.glob("*.sql")) if path.name not in applied]


def _applied(connection: Any) -> set[str]:
    with connection, connection.cursor() as cursor:
        cursor.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations "
            "(name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        cursor.execute("SELECT name FROM schema_migrations")
        return {row[0] for row in cursor.fetchall()}


def migrate(database_url: str, directory: Path = MIGRATIONS) -> list[str]:
    """Apply the pending migrations, each in its own transaction; return the names applied (empty when none were).

    Raises
    ------
    MigrationError
        A file failed; the ones before it stay applied.
    """
    import psycopg2

    try:
        connection = psycopg2.connect(database_url, application_name="notify-migrate")
    except psycopg2.Error as exc:
        # libpq's text may quote the URL, password included (an "invalid dsn" names the token it could not read).
        raise MigrationError("connect", f"cannot connect to the database ({type(exc).__name__})") from None
    done: list[str] = []
    try:
        connection.autocommit = True
        with connection.cursor() as cursor:
            # Session-level: held across the transactions below, released at unlock or when the session ends.
            cursor.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
        connection.autocommit = False
        try:
            # Read only now, under the lock: a runner that held it before may have applied files meanwhile.
            for path in pending(_applied(connection), directory):
                try:
                    with connection, connection.cursor() as cursor:
                        cursor.execute(path.read_text(encoding="utf-8"))
                        cursor.execute("INSERT INTO schema_migrations (name) VALUES (%s)", (path.name,))
                except psycopg2.Error as exc:
                    reason = (exc.pgerror or str(exc)).strip().splitlines()[0]
                    raise MigrationError(path.name, reason) from exc
                done.append(path.name)
        finally:
            if not connection.closed:
                connection.rollback()
                connection.autocommit = True
                with connection.cursor() as cursor:
                    cursor.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))
    finally:
        connection.close()
    return done


def _database_url(arguments: argparse.Namespace) -> str:
    if arguments.database_url:
        return str(arguments.database_url)
    if arguments.secret_parameter:
        from core.audience.connection import read_database_secret
        from core.clients import get_client

        return read_database_secret(get_client("ssm", arguments.region), arguments.secret_parameter)
    url = os.environ.get("DATABASE_URL")
    if url:
        return url
    raise SystemExit("no database: give --database-url, --secret-parameter, or set DATABASE_URL")


def main(argv: Sequence[str] | None = None) -> int:
    """Apply the pending migrations to the database named on the command line; print what was applied."""
    parser = argparse.ArgumentParser(prog="python -m infra.migrate", description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", help="libpq URL or DSN; default: DATABASE_URL")
    parser.add_argument(
        "--secret-parameter",
        help="SSM SecureString holding the URL (or /aws/reference/secretsmanager/<secret> for a Secrets Manager one)",
    )
    parser.add_argument("--region", default=None, help="AWS region of the parameter; default: the AWS CLI's")
    parser.add_argument("--directory", type=Path, default=MIGRATIONS, help="folder of the .sql files")
    arguments = parser.parse_args(argv)
    try:
        applied = migrate(_database_url(arguments), arguments.directory)
    except MigrationError as exc:
        print(f"migration failed: {exc}", file=sys.stderr)  # noqa: T201
        return 1
    print(f"applied: {', '.join(applied)}" if applied else "no migration pending")  # noqa: T201
    return 0


if __name__ == "__main__":
    sys.exit(main())
