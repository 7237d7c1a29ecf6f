"""Integration credentials read by reference from SSM SecureString parameters, cached between invocations."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

from core.errors import AWS_ERRORS, PermanentDeliveryError, RetryableDeliveryError, error_code

_MISSING_CODES = frozenset({"ParameterNotFound", "ParameterVersionNotFound"})
# Refusals that the same call will meet again: the delivery fails rather than retrying for hours.
_REFUSED_CODES = frozenset({"AccessDeniedException", "ValidationException", "ParameterVersionLabelLimitExceeded"})


class MissingCredentialsError(PermanentDeliveryError):
    """SSM has no parameter of the name: removed (the topic deleted, or the credentials retired and their keeping time
    over), or, right after a topic change wrote it, not yet visible to every read (``Deliverer`` retries a young
    delivery's)."""

    def __init__(self) -> None:
        super().__init__("credentials are missing")


class CredentialSource:
    """Returns the JSON object stored in a SecureString parameter, reused for ``max_age`` seconds.

    The delivery threads of a batch share one source; a value is read again once it is ``max_age`` seconds old, so a
    rotated secret takes effect within that time. A failed read is never cached.

    Parameters
    ----------
    client:
        A botocore SSM client (``core.clients.get_client("ssm")``).
    max_age:
        Seconds a value is reused before SSM is asked again; 0 reads it on every call.
    clock:
        Seconds of the wall clock, injectable for tests. Not the monotonic clock: the age must count the time a frozen
        Lambda environment sat between invocations, or a rarely invoked container could keep a rotated secret for
        longer than ``max_age`` (powertools' cache, which this replaces, counted wall time too).
    """

    def __init__(self, client: Any, max_age: float, clock: Callable[[], float] = time.time) -> None:
        self._client = client
        self._max_age = max_age
        self._clock = clock
        self._values: dict[str, tuple[float, dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def get(self, ref: str) -> dict[str, Any]:
        """Return the credentials named ``ref``; missing or unreadable ones are permanent, SSM outages retryable."""
        now = self._clock()
        with self._lock:
            cached = self._values.get(ref)
        if cached is not None and now - cached[0] < self._max_age:
            return cached[1]
        try:
            response = self._client.get_parameter(Name=ref, WithDecryption=True)
        except AWS_ERRORS as exc:
            code = error_code(exc)
            if code in _MISSING_CODES:
                raise MissingCredentialsError from None
            if code in _REFUSED_CODES:
                raise PermanentDeliveryError(f"credentials cannot be read ({code})") from None
            raise RetryableDeliveryError(f"reading credentials failed ({code})") from None
        try:
            value = json.loads(response["Parameter"]["Value"])
        except (KeyError, TypeError, ValueError):
            value = None
        if not isinstance(value, dict):
            # Neither the value nor the parse error is quoted: the text is a secret.
            raise PermanentDeliveryError("credentials are not a JSON object")
        with self._lock:
            # The age counts from before the read: a value is never used later than max_age after it was asked for.
            self._values[ref] = (now, value)
        return value
