"""The local stack's migrations: the one runner of ``infra/migrate.py``, re-exported where the stack imports it."""

from __future__ import annotations

from infra.migrate import MIGRATIONS, MigrationError, migrate, pending

__all__ = ["MIGRATIONS", "MigrationError", "migrate", "pending"]
