"""Unit tests run with the network switched off: a socket opened here is a defect, and the test belongs in
``tests/integration``. Unix sockets stay allowed (asyncio's self-pipe and the like need them, and they reach no
service)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pytest_socket import disable_socket, enable_socket


@pytest.fixture(autouse=True)
def _no_network() -> Iterator[None]:
    """Block every TCP/UDP socket and name lookup for the test, and lift the block after it."""
    disable_socket(allow_unix_socket=True)
    yield
    enable_socket()
