"""Unit tests of core/audience/connection.py and the database getter: settings, secrets, no connection at import."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from core import clients
from core.audience.connection import Database, read_database_secret
from core.audience.settings import DatabaseSettings
from core.errors import UpstreamError
from core.settings import SettingsError

_BASE = {"STAGE": "test", "AWS_REGION": "us-east-1"}


class _Ssm:
    def __init__(self, value: str) -> None:
        self.value = value

    def get_parameter(self, Name: str, WithDecryption: bool) -> dict[str, Any]:
        assert WithDecryption
        return {"Parameter": {"Name": Name, "Value": self.value}}


def test_database_settings_neither_source_fails_naming_both() -> None:
    with pytest.raises(SettingsError, match="DATABASE_URL or DATABASE_SECRET_PARAMETER"):
        DatabaseSettings.from_env(_BASE)


def test_database_settings_url_is_a_secret_in_repr() -> None:
    settings = DatabaseSettings.from_env({**_BASE, "DATABASE_URL": "postgresql://u:pw@h/db"})

    assert "pw" not in repr(settings)


def test_get_database_same_settings_same_database() -> None:
    settings = DatabaseSettings.from_env({**_BASE, "DATABASE_URL": "postgresql://u@h/db"})

    first = clients.get_database(settings)

    assert clients.get_database(settings) is first
    assert isinstance(first, Database)


def test_read_database_secret_plain_url_returned_as_is() -> None:
    assert read_database_secret(_Ssm(" postgresql://u:p@h/db\n"), "/p") == "postgresql://u:p@h/db"


def test_read_database_secret_rds_json_becomes_a_dsn() -> None:
    secret = {"username": "app", "password": "p w", "host": "db.internal", "port": 5432, "dbname": "notify"}

    dsn = read_database_secret(_Ssm(json.dumps(secret)), "/aws/reference/secretsmanager/notify-db")

    assert dict(part.split("=", 1) for part in dsn.replace("'p w'", "'p_w'").split()) == {
        "host": "db.internal",
        "port": "5432",
        "dbname": "notify",
        "user": "app",
        "password": "'p_w'",
    }


def test_read_database_secret_json_without_fields_is_upstream_error_without_value() -> None:
    with pytest.raises(UpstreamError) as raised:
        read_database_secret(_Ssm('{"password": "hunter2"}'), "/p")

    assert "hunter2" not in str(raised.value)


def test_audience_import_loads_no_psycopg2() -> None:
    code = (
        "import sys, core.clients, core.audience.repository, core.audience.timezones;print('psycopg2' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)

    assert done.stdout.strip() == "False"
