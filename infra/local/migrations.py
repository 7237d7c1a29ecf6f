"""Plain SQL migrations (``infra/migrations/NNNN_name.sql``), applied once each, in name order, under a lock."""

from __future__ import annotations

from pathlib import Path

from infra.local.config import ROOT

MIGRATIONS = ROOT / "infra" / "migrations"
# Any constant works; it keeps two runners (two stacks on one database) from applying a file twice.
_LOCK_KEY = 7_421_133


def pending(applied: set[str], directory: Path = MIGRATIONS) -> list[Path]:
    """Return the migration files not applied yet, in the order they run."""
    return [path for path in sorted(directory.glob("*.sql")) if path.name not in applied]


def migrate(database_url: str, directory: Path = MIGRATIONS) -> list[str]:
    """Apply the pending migrations, each in its own transaction; return the names applied."""
    import psycopg2

    connection = psycopg2.connect(database_url)
    done: list[str] = []
    try:
        with connection, connection.cursor() as cursor:
            cursor.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations "
                "(name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
        connection.autocommit = False
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT name FROM schema_migrations")
                applied = {row[0] for row in cursor.fetchall()}
            connection.commit()
            for path in pending(applied, directory):
                with connection, connection.cursor() as cursor:
                    cursor.execute(path.read_text())
                    cursor.execute("INSERT INTO schema_migrations (name) VALUES (%s)", (path.name,))
                done.append(path.name)
        finally:
            connection.autocommit = True
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
    finally:
        connection.close()
    return done
