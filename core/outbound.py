"""Outbound HTTP for URL-based channels: one pooled session with timeouts, an SSRF guard, no cross-host redirects.

The guard checks addresses twice: ``check_url`` resolves the host before a request is made, and every new connection
checks the address it actually connected to, so a name that resolves elsewhere the second time (DNS rebinding) or a
redirect cannot reach a forbidden address either. Redirects are followed only on the same host.

A send ends within one deadline: its connect timeout plus its read timeout (``send_seconds``), for all of it together
(connecting, the request, the status line and headers, every redirect hop, the bounded answer body). requests' read
timeout alone bounds each socket read, so a receiver that drips its headers a byte a second would hold a send as long
as it liked. Each blocking socket operation gets the per-operation timeout cut to what is left of the deadline, and
none is started past it; a send that meets its deadline fails as a read timeout does (``requests.ReadTimeout``, or
``requests.ConnectTimeout`` before a connection is made). consumer/handler.py ``latest_start`` reserves this budget,
plus a margin (2 s) for name resolution, which no socket timeout interrupts, and bookkeeping, before the Lambda
timeout: the two must move together.
"""

from __future__ import annotations

import http.client
import io
import ipaddress
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, ReadTimeoutError
from urllib3.util.connection import allowed_gai_family

from core.errors import BlockedTargetError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], list[str]]

MAX_REDIRECTS = 3

# urllib3 logs the URL it requested, path and all, at WARNING (an answer whose headers it cannot parse) and DEBUG (every
# request): a Slack webhook's path and a Telegram bot token are secrets. It logs nothing at ERROR; its own errors reach
# the channels as exceptions, which never carry the URL (``core.channels.base.post``).
logging.getLogger("urllib3").setLevel(logging.ERROR)

# Cloud metadata services: refused even where private targets are allowed, since nothing legitimate lives there.
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(address) for address in ("169.254.169.254", "169.254.170.2", "fd00:ec2::254")
)


def _resolve(host: str, port: int) -> list[str]:
    """Return every address ``host`` resolves to."""
    return [str(info[4][0]) for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)]


def _embedded(address: IPAddress) -> ipaddress.IPv4Address | None:
    """Return the IPv4 address an IPv6 one stands for: IPv4-mapped, 6to4 (2002::/16) or Teredo's client."""
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    return address.ipv4_mapped or address.sixtofour or (address.teredo[1] if address.teredo else None)


def _is_private(address: IPAddress) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        # Judged as the IPv4 address alone: Python before 3.11.10 and 3.12.4 counts all of ::ffff:0:0/96 private.
        return _is_private(address.ipv4_mapped)
    embedded = _embedded(address)
    if embedded is not None and _is_private(embedded):
        return True
    if isinstance(address, ipaddress.IPv6Address) and address.is_site_local:
        return True  # fec0::/10, deprecated, still private to a site; Python counts it neither private nor reserved
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
    if ip in METADATA_ADDRESSES or _embedded(ip) in METADATA_ADDRESSES:
        raise BlockedTargetError("target resolves to a cloud metadata address")
    if not allow_private and _is_private(ip):
        raise BlockedTargetError("target resolves to a loopback, private, link-local or reserved address")


class NameResolutionError(requests.ConnectionError):
    """The target's name could not be resolved for now (the resolver failed, or timed out): a connection failure,
    retried as one; a name that does not exist is a ``BlockedTargetError``."""


# What getaddrinfo answers when resolving failed for now, not for the name: DNS timing out or answering SERVFAIL
# (EAI_AGAIN), an unrecoverable resolver error (EAI_FAIL), memory or a system error. Any other answer is about the name.
_RESOLVER_FAILURES = frozenset(
    code for code in (getattr(socket, name, None) for name in ("EAI_AGAIN", "EAI_FAIL", "EAI_MEMORY", "EAI_SYSTEM"))
)


def check_url(url: str, allow_private: bool, resolve: Resolver = _resolve) -> None:
    """Raise ``BlockedTargetError`` unless ``url`` is http(s) and every address its host resolves to is allowed.

    A URL that does not parse (an NFKC-invalid or unclosed host, a port out of range, a name that cannot be encoded)
    is refused like a forbidden address. Its parse error names the host or more, and delivery URLs carry secrets, so
    it is dropped (``from None``) and the refusal never quotes the URL. A name the resolver could not resolve for now
    raises ``NameResolutionError``: the delivery is retried, as when a connection fails.
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
        port = parts.port
    except ValueError:
        raise BlockedTargetError("target URL has an invalid port") from None
    if port == 0:  # no connection is ever made to it: a retry would never succeed
        raise BlockedTargetError("target URL has an invalid port") from None
    port = port or (443 if parts.scheme == "https" else 80)
    try:
        addresses = resolve(host, port)
    except UnicodeError:  # the name has an empty or too long label, or cannot be encoded
        raise BlockedTargetError("target host does not resolve") from None
    except socket.gaierror as exc:
        if exc.errno in _RESOLVER_FAILURES:
            raise NameResolutionError("the target host's name could not be resolved now") from None
        raise BlockedTargetError("target host does not resolve") from None
    except OSError:
        raise NameResolutionError("the target host's name could not be resolved now") from None
    if not addresses:
        raise BlockedTargetError("target host does not resolve")
    for address in addresses:
        check_address(address, allow_private)


# --- the send deadline ----------------------------------------------------------------------------------------------

# Seconds of a timeout part that is not given (requests takes None as "wait for ever"; a send never does).
DEFAULT_TIMEOUT_SECONDS = 10.0
DEADLINE_PASSED = "the send's deadline passed"


def send_seconds(timeout: Any) -> float:
    """The budget of one send under a requests ``timeout`` (seconds, or a (connect, read) pair): connect plus read.

    A number is both timeouts, as requests takes it; a part that is not a number counts as 10 s.
    """
    connect, read = timeout if isinstance(timeout, tuple) else (timeout, timeout)
    return sum(float(part) if isinstance(part, int | float) else DEFAULT_TIMEOUT_SECONDS for part in (connect, read))


class _SendDeadline(threading.local):
    """The monotonic instant by which the send under way in this thread must end; ``None`` between sends."""

    at: float | None = None


_deadline = _SendDeadline()


@contextmanager
def send_deadline(timeout: Any) -> Iterator[float]:
    """Bound what this thread sends through an ``OutboundSession`` in the block by one deadline; yield it.

    The deadline is ``send_seconds(timeout)`` from now. A block inside another keeps the outer deadline, so the
    redirects of a send and the reading of its answer share the send's.
    """
    outer = _deadline.at
    if outer is not None:
        yield outer
        return
    deadline = _deadline.at = time.monotonic() + send_seconds(timeout)
    try:
        yield deadline
    finally:
        _deadline.at = None


def _cut(timeout: float | None, deadline: float) -> float:
    """Return ``timeout`` cut to the seconds left before ``deadline``: 0 or less when none are."""
    left = deadline - time.monotonic()
    return left if timeout is None or timeout > left else timeout


class _DeadlineReader(io.RawIOBase):
    """A socket's reading end whose every read waits at most its timeout, and never past the send's deadline."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        super().__init__()
        self._raw = sock.makefile("rb", buffering=0)
        self._sock = sock
        self._deadline = deadline
        self._timeout = sock.gettimeout()  # the read timeout urllib3 set before the answer

    def readable(self) -> bool:
        """Return True: the reading end reads."""
        return True

    def fileno(self) -> int:
        """Return the socket's file descriptor."""
        return self._raw.fileno()

    def readinto(self, buffer: Any) -> int | None:
        """Read what has come into ``buffer``; raise ``TimeoutError`` (a socket timeout) past the deadline."""
        seconds = _cut(self._timeout, self._deadline)
        if seconds <= 0:
            raise TimeoutError(DEADLINE_PASSED)
        if seconds != self._timeout:  # the socket waits the read timeout already (a system call saved)
            self._sock.settimeout(seconds)
        return self._raw.readinto(buffer)

    def close(self) -> None:
        """Close the reading end (the socket closes once nothing else holds it)."""
        if not self.closed:
            self._raw.close()
        super().close()


class _DeadlineSocket:
    """What an answer is read from: ``makefile`` gives the socket's reading end under the send's deadline."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self._sock = sock
        self._deadline = deadline

    def makefile(self, mode: str) -> io.BufferedReader:
        """Return the buffered reading end (``http.client`` asks for ``"rb"`` only)."""
        return io.BufferedReader(_DeadlineReader(self._sock, self._deadline))


class _DeadlineResponse(http.client.HTTPResponse):
    """An answer whose status line, headers and body are read under the deadline of the send under way, if any."""

    def __init__(self, sock: socket.socket, *args: Any, **kwargs: Any) -> None:
        deadline = _deadline.at
        source: Any = sock if deadline is None else _DeadlineSocket(sock, deadline)
        super().__init__(source, *args, **kwargs)

    def begin(self) -> None:
        """Read the status line and headers; headers http.client refuses (over 100 of them, a line over 64 KiB) after
        a status line it read leave that status standing, with no headers and no body, the connection closed: a
        receiver that took a notification and answered 200 so was taken for a failed connection, and sent it again
        until it was dead."""
        try:
            super().begin()
        except http.client.HTTPException:
            if not isinstance(self.status, int) or self.headers is not None or self.version not in (10, 11):
                raise  # no status line (or no HTTP/1.x one) was read: the answer is none
            self.headers = self.msg = http.client.HTTPMessage()
            self.chunked, self.length, self.will_close = False, 0, True


def _guarded_pools(allow_private: bool) -> dict[str, type[HTTPConnectionPool]]:
    """Return http and https connection pools whose connections check the peer address before a byte is sent, and
    whose every blocking operation ends by the deadline of the send under way."""

    def guarded(base: type[HTTPConnection]) -> type[HTTPConnection]:
        class GuardedConnection(base):  # type: ignore[valid-type,misc]
            response_class = _DeadlineResponse
            timeout: float | None  # set by the pool before each request: the connect, then the read timeout

            def _new_conn(self) -> socket.socket:
                deadline = _deadline.at
                sock = super()._new_conn() if deadline is None else self._connect_by(deadline)
                try:
                    check_address(str(sock.getpeername()[0]), allow_private)
                    seconds = self.timeout if deadline is None else self._time_left(deadline)
                    if seconds != self.timeout:  # the TLS handshake that follows waits on the socket's timeout
                        sock.settimeout(seconds)
                except (BlockedTargetError, ConnectTimeoutError):
                    sock.close()
                    raise
                return sock

            def _connect_by(self, deadline: float) -> socket.socket:
                """Connect to the host's addresses in turn, each given what is left of the deadline: urllib3 gives
                each the whole connect timeout, so a name of ten addresses that drop SYNs held a send ten times its
                time (and the function past its own)."""
                host = str(self._dns_host)  # type: ignore[has-type]
                try:
                    found = socket.getaddrinfo(host.strip("[]"), self.port, allowed_gai_family(), socket.SOCK_STREAM)
                    addresses = list(dict.fromkeys(str(info[4][0]) for info in found))
                except (OSError, UnicodeError):
                    addresses = [host]  # urllib3 fails it the way it fails a name it cannot resolve
                failure: ConnectTimeoutError | None = None
                for address in addresses:
                    self.timeout = self._time_left(deadline)
                    self._dns_host = address
                    try:
                        connected: socket.socket = super()._new_conn()
                        return connected
                    except ConnectTimeoutError as exc:  # a timeout, or a refused connection (NewConnectionError)
                        failure = exc
                    finally:
                        self._dns_host = host
                if failure is None:
                    raise ConnectTimeoutError(self, "the host has no address")
                raise failure

            def _time_left(self, deadline: float) -> float:
                seconds = _cut(self.timeout, deadline)
                if seconds <= 0:
                    raise ConnectTimeoutError(self, DEADLINE_PASSED)
                return seconds

            def send(self, data: Any) -> None:
                deadline = _deadline.at
                if deadline is None or self.sock is None:  # no deadline, or connecting first (``_new_conn`` cuts)
                    super().send(data)
                    return
                seconds = _cut(self.timeout, deadline)
                if seconds <= 0:
                    raise ReadTimeoutError(None, None, DEADLINE_PASSED)  # type: ignore[arg-type]
                if seconds != self.timeout:  # the socket waits at most this timeout already
                    self.sock.settimeout(seconds)
                try:
                    super().send(data)
                except TimeoutError:
                    if time.monotonic() < deadline:
                        raise  # the send timeout of its own, as without a deadline
                    raise ReadTimeoutError(None, None, DEADLINE_PASSED) from None  # type: ignore[arg-type]

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


# An answer's body is read up to this size, until the send's deadline: answers that matter are short (a Telegram
# result, a reason to quote), and a receiver's endless or dripping body must not hold a send, or the memory, past its
# budget. The status line and headers decide the outcome; what is left of a body goes with its connection.
MAX_ANSWER_BYTES = 64 * 1024


def read_answer(response: requests.Response, deadline: float, clock: Callable[[], float] = time.monotonic) -> None:
    """Read at most ``MAX_ANSWER_BYTES`` of a streamed answer's body, until ``deadline`` (monotonic), into ``content``.

    ``read1`` returns what has come so far, and no read waits past the deadline, so a body that drips still meets it.
    A body read whole leaves its connection to the pool; one cut short, or that failed, closes it (what is left of it
    must never be read as the next answer).
    """
    from urllib3.exceptions import HTTPError

    if response.raw is None or getattr(response, "_content_consumed", False):
        return  # read already
    body = bytearray()
    complete = False
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

    A request, with its redirects, ends within its connect plus read timeout (``send_deadline``); ``post`` of
    ``core.channels.base`` holds the answer's body to the same deadline.

    Parameters
    ----------
    connect_timeout, read_timeout:
        Seconds to wait for a connection and between bytes of the answer, applied when a call gives none; their sum
        bounds a whole send (consumer/handler.py ``latest_start`` reserves it).
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
        """Send a request after checking its URL, with the session's timeouts unless the call gives its own, within
        their sum (or the deadline of a send already under way in this thread)."""
        try:
            text = url.decode() if isinstance(url, bytes) else url
        except UnicodeDecodeError:
            raise BlockedTargetError("target URL is not valid") from None
        timeout = kwargs.setdefault("timeout", self.timeout)
        with send_deadline(timeout):
            self.check(text)
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
        with send_deadline(self.timeout) as deadline:
            read_answer(resp, deadline)
        return location
