"""PostgreSQL for the local stack: ``DATABASE_URL`` when set, else an embedded server with its data under ``.local/``.

The embedded server is the machine's PostgreSQL binaries when there are any, else the ``pgserver`` package. initdb
refuses to run as root, so as root the server runs as the ``postgres`` user (or ``nobody``), and only on loopback.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from infra.local.config import HOST, LocalConfig

_USER = "notify"
_PGSERVER = "pgserver==0.1.4"
_DATABASE = "notify"


class PostgresError(Exception):
    """The database could not be started or reached; the message says what to do."""


def find_bindir() -> Path | None:
    """Return the directory of the machine's PostgreSQL server binaries, newest version first, if any."""
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"), key=lambda path: int(Path(path).parent.name), reverse=True
    )
    pg_config = shutil.which("pg_config")
    if pg_config:
        done = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        if done.returncode == 0:
            candidates.insert(0, done.stdout.strip())
    candidates += [str(Path(path).parent) for path in (shutil.which("initdb"),) if path]
    for candidate in candidates:
        if (Path(candidate) / "initdb").is_file() and (Path(candidate) / "pg_ctl").is_file():
            return Path(candidate)
    return None


def _service_user() -> pwd.struct_passwd | None:
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise PostgresError("running as root and there is no 'postgres' or 'nobody' user to run PostgreSQL as")


class EmbeddedPostgres:
    """A PostgreSQL server started from the machine's binaries; stopped by ``stop``."""

    def __init__(self, config: LocalConfig, bindir: Path) -> None:
        self._bindir = bindir
        self._data = config.state_dir / "postgres"
        self._log = config.logs_dir / "postgres.log"
        self._port = config.postgres_port
        self._user = _service_user()
        self.started = False

    @property
    def url(self) -> str:
        """The connection URL of the embedded database."""
        return f"postgresql://{_USER}@{HOST}:{self._port}/{_DATABASE}"

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = [str(self._bindir / args[0]), *args[1:]]
        if self._user is not None:
            command = [
                "setpriv",
                f"--reuid={self._user.pw_uid}",
                f"--regid={self._user.pw_gid}",
                "--init-groups",
                *command,
            ]
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            check=False,
            cwd="/",
            start_new_session=True,
            env={**os.environ, "LC_ALL": "C"},
        )
        if check and done.returncode != 0:
            detail = (done.stderr.strip() or done.stdout.strip()).splitlines()
            raise PostgresError(f"{args[0]} failed: {detail[-1] if detail else done.returncode}")
        return done

    def _own(self, path: Path) -> None:
        if self._user is not None:
            os.chown(path, self._user.pw_uid, self._user.pw_gid)

    def _check_reachable(self) -> None:
        if self._user is None:
            return
        for parent in reversed(self._data.parents):
            if parent.exists() and not os.stat(parent).st_mode & 0o001:
                raise PostgresError(
                    f"PostgreSQL runs as '{self._user.pw_name}', who cannot enter {parent}: "
                    f"chmod o+x {parent}, or set LOCAL_STATE_DIR / DATABASE_URL"
                )

    def stop_leftover(self) -> bool:
        """Stop the server of this data directory left running by a run that was killed; tell whether there was one.

        Only called under the run lock, so a server running on this data directory belongs to no live run.
        """
        if not (self._data / "postmaster.pid").exists():
            return False
        if self._run("pg_ctl", "status", "-D", str(self._data), check=False).returncode != 0:
            return False
        print("  PostgreSQL of an earlier, killed run is still up: stopping it")
        self._run("pg_ctl", "stop", "-D", str(self._data), "-m", "fast", "-w")
        return True

    def start(self) -> str:
        """Initialise the data directory on first use, start the server, create the database; return its URL."""
        self._check_reachable()
        self._log.parent.mkdir(parents=True, exist_ok=True)
        self._log.touch()
        self._own(self._log)
        if not (self._data / "PG_VERSION").is_file():
            self._data.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._own(self._data)
            self._run("initdb", "-D", str(self._data), "-U", _USER, "--auth=trust", "-E", "UTF8", "--no-instructions")
        self.stop_leftover()
        pid_file = self._data / "postmaster.pid"
        options = f"-c listen_addresses={HOST} -p {self._port} -k {self._data} -c fsync=off -c full_page_writes=off"
        done = self._run(
            "pg_ctl", "start", "-D", str(self._data), "-l", str(self._log), "-w", "-t", "30", "-o", options, check=False
        )
        if done.returncode != 0:
            tail = self._log.read_text(errors="replace").strip().splitlines()[-3:]
            hint = " | ".join(tail)
            if "lock file" in hint and "already exists" in hint:
                raise PostgresError(
                    f"a stale lock {pid_file} blocks PostgreSQL: make sure no server uses it, delete it, run again"
                )
            raise PostgresError(f"PostgreSQL did not start ({hint}); see {self._log}")
        self.started = True
        self._create_database()
        return self.url

    def _create_database(self) -> None:
        import psycopg2

        deadline = time.monotonic() + 10
        while True:
            try:
                connection = psycopg2.connect(host=HOST, port=self._port, user=_USER, dbname="postgres")
                break
            except psycopg2.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        try:
            connection.autocommit = True
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (_DATABASE,))
                if cursor.fetchone() is None:
                    cursor.execute(f'CREATE DATABASE "{_DATABASE}"')
        finally:
            connection.close()

    def stop(self) -> None:
        """Stop the server if this run started it."""
        if self.started:
            self._run("pg_ctl", "stop", "-D", str(self._data), "-m", "fast", "-w", check=False)
            self.started = False


class PgserverPostgres:
    """A PostgreSQL server from the ``pgserver`` package, for machines without PostgreSQL binaries."""

    def __init__(self, config: LocalConfig) -> None:
        self._data = config.state_dir / "pgserver"
        self._server: Any = None
        self.started = False

    def stop_leftover(self) -> bool:
        """pgserver finds and reuses its own server; nothing to do."""
        return False

    def start(self) -> str:
        """Start (or reuse) the pgserver instance; return its URL."""
        try:
            import pgserver
        except ImportError:
            print("  no PostgreSQL binaries on this machine: installing pgserver into .venv…")
            done = subprocess.run(
                [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", _PGSERVER],
                capture_output=True,
                text=True,
                check=False,
            )
            if done.returncode != 0:
                raise PostgresError(
                    "no PostgreSQL on this machine and pgserver could not be installed: install PostgreSQL "
                    "(apt-get install postgresql) or set DATABASE_URL"
                ) from None
            import pgserver
        self._data.mkdir(parents=True, exist_ok=True)
        server = pgserver.get_server(str(self._data), cleanup_mode="stop")
        self._server = server
        self.started = True
        url: str = server.get_uri()
        return url

    def stop(self) -> None:
        """Stop the pgserver instance."""
        if self._server is not None:
            self._server.cleanup()
            self._server = None
            self.started = False


def embedded(config: LocalConfig) -> EmbeddedPostgres | PgserverPostgres:
    """Return the embedded server this machine can run."""
    bindir = find_bindir()
    return EmbeddedPostgres(config, bindir) if bindir is not None else PgserverPostgres(config)
