"""The unit suite's network switch (tests/unit/conftest.py): no socket to anywhere, not even loopback."""

from __future__ import annotations

import socket

import pytest
import requests
from pytest_socket import SocketBlockedError

# pytest-socket warns as it raises; here the block is what is under test.
pytestmark = pytest.mark.filterwarnings("ignore:A test tried to use socket:UserWarning")


def test_unit_socket_inet_is_blocked() -> None:
    with pytest.raises(SocketBlockedError):
        socket.socket(socket.AF_INET, socket.SOCK_STREAM)


def test_unit_name_lookup_is_blocked() -> None:
    with pytest.raises(SocketBlockedError):
        socket.getaddrinfo("localhost", 80)


def test_unit_http_request_to_loopback_is_blocked() -> None:
    with pytest.raises(SocketBlockedError):
        requests.get("http://127.0.0.1:9/", timeout=1)


def test_unit_unix_socket_is_allowed() -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as unix:
        assert unix.family == socket.AF_UNIX
