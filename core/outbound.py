"""Outbound HTTP for URL-based channels: one pooled session with timeouts, an SSRF guard, no cross-host redirects.

The guard checks addresses twice: ``check_url`` resolves the host before a request is made, and every new connection
checks the address it actually connected to, so a name that resolves elsewhere the second time (DNS rebinding) or a
redirect cannot reach a forbidden address either. Redirects are followed only on the same host.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from core.errors import BlockedTargetError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], list[str]]

MAX_REDIRECTS = 3

# Cloud metadata services: refused even where private targets are allowed, since nothing legitimate lives there.
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(address) for address in ("169.254.169.254", "169.254.170.2", "fd00:ec2::254")
)


def _resolve(host: str, port: int) -> list[str]:
    """Return every address ``host`` resolves to."""
    return [str(info[4][0]) for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)]


def _is_private(address: IPAddress) -> bool:
    mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
    if mapped is not None:
        return _is_private(mapped)
    return (
        address.is_loopback
        or address.is_private
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
        or not address.is_global
    )


def check_address(address: str, allow_private: bool) -> None:
    """Raise ``BlockedTargetError`` unless ``address`` (an IP) is one a delivery may connect to."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError as exc:
        raise BlockedTargetError("target address is not an IP address") from exc
    mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
    if ip in METADATA_ADDRESSES or mapped in METADATA_ADDRESSES:
        raise BlockedTargetError("target resolves to a cloud metadata address")
    if not allow_private and _is_private(ip):
        raise BlockedTargetError("target resolves to a loopback, private, link-local or reserved address")


def check_url(url: str, allow_private: bool, resolve: Resolver = _resolve) -> None:
    """Raise ``BlockedTargetError`` unless ``url`` is http(s) and every address its host resolves to is allowed.

    A URL that does not parse (an NFKC-invalid or unclosed host, a port out of range, a name that cannot be encoded)
    is refused like a forbidden address. Its parse error names the host or more, and delivery URLs carry secrets, so
    it is dropped (``from None``) and the refusal never quotes the URL.
    """
    try:
        parts = urlsplit(url)
        host, user, password = parts.hostname, parts.username, parts.password
    except ValueError:  # UnicodeError is a ValueError too
        raise BlockedTargetError("target URL is not valid") from None
    if parts.scheme not in ("http", "https") or not host:
        raise BlockedTargetError("target must be an http(s) URL with a host")
    if user is not None or password is not None:
        raise BlockedTargetError("target URL must not carry user information")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise BlockedTargetError("target URL has an invalid port") from None
    try:
        addresses = resolve(host, port)
    except (OSError, UnicodeError):  # UnicodeError: the name has an empty or too long label, or cannot be encoded
        raise BlockedTargetError("target host does not resolve") from None
    if not addresses:
        raise BlockedTargetError("target host does not resolve")
    for address in addresses:
        check_address(address, allow_private)


def _guarded_pools(allow_private: bool) -> dict[str, type[HTTPConnectionPool]]:
    """Return http and https connection pools whose connections check the peer address before a byte is sent."""

    def guarded(base: type[HTTPConnection]) -> type[HTTPConnection]:
        class GuardedConnection(base):  # type: ignore[valid-type,misc]
            def _new_conn(self) -> socket.socket:
                sock: socket.socket = super()._new_conn()
                try:
                    check_address(str(sock.getpeername()[0]), allow_private)
                except BlockedTargetError:
                    sock.close()
                    raise
                return sock

        return GuardedConnection

    http_pool = type("GuardedHTTPConnectionPool", (HTTPConnectionPool,), {"ConnectionCls": guarded(HTTPConnection)})
    https_pool = type("GuardedHTTPSConnectionPool", (HTTPSConnectionPool,), {"ConnectionCls": guarded(HTTPSConnection)})
    return {"http": http_pool, "https": https_pool}


class GuardedAdapter(HTTPAdapter):
    """A pooled adapter whose connections refuse forbidden peer addresses; it never retries by itself."""

    def __init__(self, allow_private: bool, pool_maxsize: int) -> None:
        self._pools = _guarded_pools(allow_private)
        super().__init__(pool_connections=10, pool_maxsize=pool_maxsize, max_retries=0)

    def init_poolmanager(self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any) -> None:
        """Create the pool manager with the guarded connection pools."""
        super().init_poolmanager(connections, maxsize, block, **pool_kwargs)
        self.poolmanager.pool_classes_by_scheme = self._pools


# An answer's body is read up to this size, for at most the read timeout: answers that matter are short (a Telegram
# result, a reason to quote), and a receiver's endless or dripping body must not hold a send, or the memory, past its
# budget. The status line and headers decide the outcome; what is left of a body goes with its connection.
MAX_ANSWER_BYTES = 64 * 1024


def read_seconds(timeout: Any) -> float:
    """The read timeout of a requests ``timeout`` (seconds, or a (connect, read) pair); 10 s when none is given."""
    read = timeout[1] if isinstance(timeout, tuple) else timeout
    return float(read) if isinstance(read, int | float) else 10.0


def read_answer(response: requests.Response, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
    """Read at most ``MAX_ANSWER_BYTES`` of a streamed answer's body, for at most ``seconds``, into ``content``.

    ``read1`` returns what has come so far, so a body that drips still meets the deadline. A body read whole leaves
    its connection to the pool; one cut short, or that failed, closes it (what is left of it must never be read as
    the next answer).
    """
    from urllib3.exceptions import HTTPError

    if response.raw is None or getattr(response, "_content_consumed", False):
        return  # read already
    body = bytearray()
    complete = False
    deadline = clock() + seconds
    try:
        while len(body) < MAX_ANSWER_BYTES and clock() < deadline:
            chunk = response.raw.read1(MAX_ANSWER_BYTES - len(body), decode_content=True)
            if not chunk:
                complete = True
                break
            body += chunk
    except (HTTPError, OSError):
        pass  # the status line came: the body's end does not change the outcome
    if not complete:
        response.raw.close()
    # requests keeps a read body here; ``content``, ``json()`` and ``text`` then read it, never the socket again.
    response._content = bytes(body)
    response._content_consumed = True  # type: ignore[attr-defined]
    response.close()


# Redirects a client follows with a GET (303 always; 301 and 302 for a POST, by long practice).
_REWRITING_REDIRECTS = frozenset({301, 302, 303})


class OutboundSession(requests.Session):
    """The one session of outbound delivery requests: pooled, with timeouts, guarded, same-host redirects only.

    Parameters
    ----------
    connect_timeout, read_timeout:
        Seconds to wait for a connection and between bytes of the answer; applied when a call gives none.
    allow_private:
        Allow loopback and private targets (only the local stack sets it); metadata addresses stay refused.
    pool_maxsize:
        Connections kept per host: the delivery concurrency.
    resolve:
        Name resolution used by ``check_url``, injectable for tests.
    """

    def __init__(
        self,
        connect_timeout: float,
        read_timeout: float,
        allow_private: bool = False,
        pool_maxsize: int = 10,
        resolve: Resolver = _resolve,
    ) -> None:
        super().__init__()
        self.timeout = (connect_timeout, read_timeout)
        self.allow_private = allow_private
        self.max_redirects = MAX_REDIRECTS
        # Proxies and .netrc from the environment would change where a request goes, and what it carries.
        self.trust_env = False
        self._resolve = resolve
        adapter = GuardedAdapter(allow_private, pool_maxsize)
        self.mount("http://", adapter)
        self.mount("https://", adapter)

    def check(self, url: str) -> None:
        """Raise ``BlockedTargetError`` unless the session may send to ``url``."""
        check_url(url, self.allow_private, self._resolve)

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        """Send a request after checking its URL, with the session's timeouts unless the call gives its own."""
        try:
            text = url.decode() if isinstance(url, bytes) else url
        except UnicodeDecodeError:
            raise BlockedTargetError("target URL is not valid") from None
        self.check(text)
        kwargs.setdefault("timeout", self.timeout)
        return super().request(method, url, *args, **kwargs)

    def get_redirect_target(self, resp: requests.Response) -> str | None:
        """Return where a redirect leads; refuse (``BlockedTargetError``) another host or a bad URL."""
        location = super().get_redirect_target(resp)
        if location is None:
            return None
        if resp.status_code in _REWRITING_REDIRECTS and resp.request.method not in ("GET", "HEAD"):
            # requests follows these as a GET without the body (as browsers do): the receiver would get an empty
            # request and its 2xx would count as delivered. Only 307 and 308 keep the method and the body.
            resp.close()
            raise BlockedTargetError(
                f"target redirected (HTTP {resp.status_code}), which would drop the body; use the URL it moved to"
            )
        try:
            target = urljoin(resp.url, location)
            other_host = urlsplit(target).hostname != urlsplit(resp.url).hostname
        except ValueError:  # the Location does not parse; its text is the receiver's and may echo a secret
            resp.close()
            raise BlockedTargetError("target redirected to an invalid URL") from None
        if other_host:
            resp.close()
            raise BlockedTargetError("target redirected to another host")
        self.check(target)
        # requests reads a redirect's body whole before it follows: this one is read as any answer is, bounded.
        read_answer(resp, read_seconds(self.timeout))
        return location
