"""Fixtures every integration folder may use: a real PostgreSQL for the audience (``tests/support/postgres.py``),
one server per session whichever folders run: ``postgres_url`` (migrated), ``db``, ``database``, ``make_database``."""

from __future__ import annotations

from tests.support.postgres import database, db, make_database, postgres_server, postgres_url

__all__ = ["database", "db", "make_database", "postgres_server", "postgres_url"]
