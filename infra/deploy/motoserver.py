"""moto's server on a free loopback port, for as long as a ``with`` block runs; it is stopped on every way out."""

from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests

HOST = "127.0.0.1"
START_TIMEOUT_SECONDS = 60.0


class MotoServerError(Exception):
    """moto's server did not come up."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def _wait_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise MotoServerError(f"moto server exited with {process.returncode}: {log.read_text()[-2000:]}")
        try:
            if requests.get(f"{url}/moto-api/", timeout=1).ok:
                return
        except requests.RequestException:
            time.sleep(0.2)
    raise MotoServerError(f"moto server not ready after {START_TIMEOUT_SECONDS:.0f} s: {log.read_text()[-2000:]}")


def stop_process(process: subprocess.Popen[Any]) -> None:
    """Stop a process this code started, by its PID: terminate, and kill it if it is still there after 10 s."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


@contextmanager
def moto_server() -> Iterator[str]:
    """Start ``moto.server`` on a free port of 127.0.0.1, yield its URL, stop it (by its own PID) on exit."""
    port = _free_port()
    url = f"http://{HOST}:{port}"
    with tempfile.TemporaryDirectory(prefix="moto-") as scratch:
        log = Path(scratch) / "moto.log"
        with log.open("wb") as output:
            process = subprocess.Popen(  # noqa: S603 (our own interpreter and arguments)
                [sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(port)],
                stdout=output,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
            try:
                _wait_ready(url, process, log)
                yield url
            finally:
                stop_process(process)
