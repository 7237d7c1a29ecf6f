"""Integration tests of infra/migrate.py against a real PostgreSQL: each file once, however many runners."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import psycopg2
import pytest

from infra.migrate import MIGRATIONS, MigrationError, main, migrate


def _rows(url: str, query: str) -> list[tuple[object, ...]]:
    connection = psycopg2.connect(url)
    try:
        with connection.cursor() as cursor:
            cursor.execute(query)
            return list(cursor.fetchall())
    finally:
        connection.close()


def _write(directory: Path, name: str, sql: str) -> None:
    (directory / name).write_text(sql)


def test_migrate_twice_second_run_applies_nothing(make_database: Callable[[], str]) -> None:
    url = make_database()

    first = migrate(url)
    second = migrate(url)

    assert first == sorted(path.name for path in MIGRATIONS.glob("*.sql"))
    assert "0001_audience.sql" in first
    assert second == []


def test_migrate_concurrent_runners_apply_each_file_once(make_database: Callable[[], str], tmp_path: Path) -> None:
    url = make_database()
    # Each file inserts a row: a file applied twice would leave two (and the sleep keeps the runners overlapping).
    _write(
        tmp_path, "0001_a.sql", "CREATE TABLE runs (name text); SELECT pg_sleep(0.2); INSERT INTO runs VALUES ('a');"
    )
    _write(tmp_path, "0002_b.sql", "INSERT INTO runs VALUES ('b');")
    results: list[list[str]] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(migrate(url, tmp_path))
        except BaseException as exc:  # surfaced below: a thread's exception would be lost
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert sorted(results, key=len) == [[], [], ["0001_a.sql", "0002_b.sql"]]
    assert _rows(url, "SELECT name FROM runs ORDER BY name") == [("a",), ("b",)]


def test_migrate_failed_file_leaves_nothing_of_it_and_stops(make_database: Callable[[], str], tmp_path: Path) -> None:
    url = make_database()
    _write(tmp_path, "0001_ok.sql", "CREATE TABLE kept (id int);")
    _write(tmp_path, "0002_bad.sql", "CREATE TABLE half (id int); SELECT no_such_function();")
    _write(tmp_path, "0003_later.sql", "CREATE TABLE later (id int);")

    with pytest.raises(MigrationError) as raised:
        migrate(url, tmp_path)

    assert raised.value.name == "0002_bad.sql"
    assert _rows(url, "SELECT name FROM schema_migrations") == [("0001_ok.sql",)]
    tables = {row[0] for row in _rows(url, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert tables == {"kept", "schema_migrations"}


def test_migrate_releases_the_lock_after_a_failure(make_database: Callable[[], str], tmp_path: Path) -> None:
    url = make_database()
    _write(tmp_path, "0001_bad.sql", "SELECT no_such_function();")
    with pytest.raises(MigrationError):
        migrate(url, tmp_path)
    (tmp_path / "0001_bad.sql").write_text("SELECT 1;")

    assert migrate(url, tmp_path) == ["0001_bad.sql"]


def test_migrate_cli_database_url_applies_and_reports(
    make_database: Callable[[], str], capsys: pytest.CaptureFixture[str]
) -> None:
    url = make_database()

    assert main(["--database-url", url]) == 0
    assert main(["--database-url", url]) == 0

    out = capsys.readouterr().out.splitlines()
    assert out == [
        "applied: 0001_audience.sql, 0002_send_lease_and_caller.sql, 0003_send_zone_cursors.sql,"
        " 0004_send_recipients.sql, 0005_send_zones_handed_and_done.sql, 0006_schedule_asked_at.sql",
        "no migration pending",
    ]


def test_migrate_cli_failed_file_exits_1_naming_it(
    make_database: Callable[[], str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _write(tmp_path, "0001_bad.sql", "SELECT no_such_function();")

    assert main(["--database-url", make_database(), "--directory", str(tmp_path)]) == 1
    assert "0001_bad.sql" in capsys.readouterr().err


def test_migrate_local_stack_import_is_the_one_runner() -> None:
    from infra.local import migrations

    assert migrations.migrate is migrate


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://notify:Pr0d%Secret!@127.0.0.1:1/notify",  # libpq: "invalid percent-encoded token: <password>"
        "postgresql://notify:Pr0dSecret@127.0.0.1:1/notify",  # nothing listens on port 1
    ],
)
def test_migrate_that_cannot_connect_says_so_without_the_url(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(MigrationError) as raised:
        migrate(url)

    assert raised.value.name == "connect"
    assert "Pr0d" not in str(raised.value)
    assert raised.value.__cause__ is None
    assert raised.value.__suppress_context__
    assert main(["--database-url", url]) == 1
    printed = capsys.readouterr()
    assert "migration failed: connect: cannot connect to the database" in printed.err
    assert "Pr0d" not in printed.out + printed.err
