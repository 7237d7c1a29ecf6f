"""moto's server in this process, as the local stack runs it, and a client factory of it like ``LocalStack.client``."""

from __future__ import annotations

import logging
import socket
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config

HOST = "127.0.0.1"
ACCOUNT = "123456789012"
REGION = "us-east-1"

Clients = Callable[[str], Any]


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    """Start moto's threaded server on a free loopback port; stop it after the module."""
    from moto.server import ThreadedMotoServer

    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port = probe.getsockname()[1]
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address=HOST, port=port, verbose=False)
    server.start()
    try:
        yield f"http://{HOST}:{port}"
    finally:
        server.stop()


def reset_moto(url: str) -> None:
    """Empty every backend, as a new run of the stack starts."""
    with urllib.request.urlopen(urllib.request.Request(f"{url}/moto-api/reset", method="POST"), timeout=10):
        pass


@pytest.fixture(scope="module")
def module_clients(moto_url: str) -> Clients:
    """A client per service, created once: botocore takes a good part of a second to build one."""
    cache: dict[str, Any] = {}

    def client(service: str) -> Any:
        if service not in cache:
            cache[service] = boto3.session.Session().client(
                service,
                endpoint_url=moto_url,
                region_name=REGION,
                aws_access_key_id="local",
                aws_secret_access_key="local",
                config=Config(retries={"mode": "standard", "max_attempts": 2}),
            )
        return cache[service]

    return client


@pytest.fixture
def clients(moto_url: str, module_clients: Clients) -> Iterator[Clients]:
    """The client factory, against an emptied moto (emptied again after the test)."""
    reset_moto(moto_url)
    yield module_clients
    reset_moto(moto_url)
