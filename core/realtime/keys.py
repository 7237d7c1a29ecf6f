"""The signing keys of connection tokens: one SecureString parameter, rotated without refusing live tokens.

The parameter holds ``{"current": "<key id>", "keys": {"<key id>": {"secret": "<base64url>", "created_at": <unix>,
"retired_at": <unix> | null}}}``. The current key signs; every kept key verifies. ``rotate`` adds a key, makes it
current and retires the one before: from then on it verifies only tokens issued before its retirement (plus the time a
signer keeps using keys it read), so a rotation after a leak stops what the leaked key can sign at once, and what it
signed before within the stage's longest token. A retired key is kept until every token it signed has expired
(``keep_seconds``: by default the longest token any stage may allow, plus a margin, so that no stage's setting has to
be matched here), then dropped by a later rotation.

A verifier that meets a key id it does not hold reads the parameter again at once (at most every few seconds), so a
token signed with a key added a moment ago is not refused while the verifier's cache is older.

``python -m core.realtime.keys rotate --parameter /notify/<stage>/realtime/signing-keys`` creates or rotates the keys
with the AWS credentials of the environment; ``show`` lists the key ids and their times, never a secret.
"""

from __future__ import annotations

import argparse
import base64
import json
import math
import secrets
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from core.errors import AWS_ERRORS, SigningKeysError, error_code
from core.realtime.settings import LONGEST_KEYS_CACHE_SECONDS, LONGEST_TOKEN_SECONDS
from core.realtime.tokens import CLOCK_SKEW_SECONDS

KEY_BYTES = 32
# A verifier reads the parameter again for an unknown key id at most this often: forged ids cost no more reads.
REFRESH_FLOOR_SECONDS = 5.0
# A retired key verifies nothing issued after its retirement, so keeping it longer than its tokens live costs nothing;
# kept this long, it outlives the tokens of any stage, whatever its REALTIME_TOKEN_MAX_SECONDS.
DEFAULT_KEEP_SECONDS = LONGEST_TOKEN_SECONDS + LONGEST_KEYS_CACHE_SECONDS + 2 * CLOCK_SKEW_SECONDS


@dataclass(frozen=True)
class SigningKey:
    """One kept key: its secret, when it was made, and when it stopped signing (``None`` while current)."""

    secret: bytes
    created_at: int
    retired_at: int | None = None


@dataclass(frozen=True)
class VerificationKey:
    """What a verifier needs of a kept key: its secret, and the latest ``iat`` a token it signed may carry (``None``
    while it is current)."""

    secret: bytes
    signs_until: int | None = None


@dataclass(frozen=True)
class KeySet:
    """The parameter's value: the current key's id and every kept key."""

    current: str
    keys: Mapping[str, SigningKey]

    def to_json(self) -> str:
        """Return the parameter's value."""
        return json.dumps(
            {
                "current": self.current,
                "keys": {
                    key_id: {
                        "secret": base64.urlsafe_b64encode(key.secret).decode(),
                        "created_at": key.created_at,
                        "retired_at": key.retired_at,
                    }
                    for key_id, key in self.keys.items()
                },
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str) -> KeySet:
        """Parse the parameter's value; raise ``SigningKeysError`` (naming no value) when it is not one."""
        try:
            data = json.loads(text)
            keys = {
                str(key_id): SigningKey(
                    base64.urlsafe_b64decode(str(value["secret"])),
                    int(value.get("created_at") or 0),
                    None if value.get("retired_at") is None else int(value["retired_at"]),
                )
                for key_id, value in data["keys"].items()
            }
            current = str(data["current"])
        except (ValueError, KeyError, TypeError, AttributeError):
            raise SigningKeysError("the realtime signing keys parameter is malformed") from None
        if current not in keys or any(len(key.secret) < 16 for key in keys.values()):
            raise SigningKeysError("the realtime signing keys parameter is malformed")
        return cls(current, keys)


def new_key_id(now: float) -> str:
    """Return a key id that sorts by creation time and never repeats: ``k<unix time>-<random>``."""
    return f"k{int(now)}-{secrets.token_hex(3)}"


def rotated(previous: KeySet | None, now: float, keep_seconds: float, secret: bytes | None = None) -> KeySet:
    """Return ``previous`` with a new current key: the old current retired now, keys retired long enough dropped."""
    key_id = new_key_id(now)
    kept: dict[str, SigningKey] = {}
    if previous is not None:
        for old_id, key in previous.keys.items():
            if old_id == previous.current:
                kept[old_id] = SigningKey(key.secret, key.created_at, int(now))
            elif key.retired_at is not None and now - key.retired_at < keep_seconds:
                kept[old_id] = key
    kept[key_id] = SigningKey(secret or secrets.token_bytes(KEY_BYTES), int(now))
    return KeySet(key_id, kept)


class SigningKeyStore:
    """Reads the signing keys from SSM and keeps them ``cache_seconds``; implements ``KeyRingPort``.

    Parameters
    ----------
    client:
        A boto3 SSM client.
    parameter:
        The SecureString parameter's name.
    cache_seconds:
        How long a read value is used before SSM is asked again: a signer may sign with a key this long after a
        rotation retired it, so a verifier honours tokens it issued that long after (every function of a stage has
        the same ``REALTIME_KEYS_CACHE_SECONDS``).
    clock:
        Unix time.
    """

    def __init__(
        self, client: Any, parameter: str, cache_seconds: float = 60.0, clock: Callable[[], float] = time.time
    ) -> None:
        self._client = client
        self._parameter = parameter
        self._cache_seconds = cache_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._keys: KeySet | None = None
        self._read_at = float("-inf")

    def _read(self) -> KeySet:
        try:
            answer = self._client.get_parameter(Name=self._parameter, WithDecryption=True)
        except AWS_ERRORS as exc:
            if error_code(exc) == "ParameterNotFound":
                raise SigningKeysError(
                    "the realtime signing keys are not set up: run python -m core.realtime.keys rotate"
                ) from exc
            raise SigningKeysError(f"reading the realtime signing keys failed ({error_code(exc)})") from exc
        return KeySet.from_json(answer["Parameter"]["Value"])

    def _current(self, force: bool = False) -> KeySet:
        with self._lock:
            now = self._clock()
            if self._keys is None or force or now - self._read_at >= self._cache_seconds:
                self._keys = self._read()
                self._read_at = now
            return self._keys

    def signing_key(self) -> tuple[str, bytes]:
        """Return the current key's id and secret."""
        keys = self._current()
        return keys.current, keys.keys[keys.current].secret

    def verification_key(self, key_id: str) -> VerificationKey | None:
        """Return a kept key's secret and, once retired, the latest issue time it signs; an unknown id reads the
        parameter again, at most every few seconds."""
        keys = self._current()
        if key_id not in keys.keys and self._clock() - self._read_at >= REFRESH_FLOOR_SECONDS:
            keys = self._current(force=True)
        key = keys.keys.get(key_id)
        if key is None:
            return None
        if key.retired_at is None:
            return VerificationKey(key.secret)
        return VerificationKey(key.secret, key.retired_at + math.ceil(self._cache_seconds))


def read_key_set(client: Any, parameter: str) -> KeySet | None:
    """Return the keys in ``parameter``, or ``None`` when it does not exist."""
    try:
        answer = client.get_parameter(Name=parameter, WithDecryption=True)
    except AWS_ERRORS as exc:
        if error_code(exc) == "ParameterNotFound":
            return None
        raise SigningKeysError(f"reading the realtime signing keys failed ({error_code(exc)})") from exc
    return KeySet.from_json(answer["Parameter"]["Value"])


def rotate(client: Any, parameter: str, keep_seconds: float = DEFAULT_KEEP_SECONDS, now: float | None = None) -> str:
    """Add a new current key to ``parameter`` (creating it when missing); return the new key's id."""
    moment = time.time() if now is None else now
    keys = rotated(read_key_set(client, parameter), moment, keep_seconds)
    try:
        client.put_parameter(
            Name=parameter,
            Value=keys.to_json(),
            Type="SecureString",
            Overwrite=True,
            Description="Signing keys of the realtime connection tokens (core/realtime/keys.py)",
        )
    except AWS_ERRORS as exc:
        raise SigningKeysError(f"writing the realtime signing keys failed ({error_code(exc)})") from exc
    return keys.current


def ensure_keys(client: Any, parameter: str) -> bool:
    """Create the keys in ``parameter`` unless it holds them; return whether they were created."""
    if read_key_set(client, parameter) is not None:
        return False
    rotate(client, parameter)
    return True


def main(argv: Sequence[str] | None = None) -> int:
    """Rotate or show the signing keys with the AWS credentials of the environment."""
    import boto3

    parser = argparse.ArgumentParser(prog="python -m core.realtime.keys", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("rotate", "show"))
    parser.add_argument("--parameter", required=True, help="e.g. /notify/prod/realtime/signing-keys")
    parser.add_argument("--region", default=None)
    parser.add_argument(
        "--keep-seconds",
        type=float,
        default=DEFAULT_KEEP_SECONDS,
        help="how long a retired key is kept, verifying the tokens issued before its retirement (default: the longest "
        "token any stage may allow, 24 h, plus a margin)",
    )
    args = parser.parse_args(argv)
    client = boto3.client("ssm", region_name=args.region)
    try:
        if args.command == "rotate":
            key_id = rotate(client, args.parameter, args.keep_seconds)
            sys.stdout.write(
                f"{args.parameter}: {key_id} signs from now on (verifiers at once, signers within 60 s; keys removed"
                " verify nothing within 60 s)\n"
            )
        keys = read_key_set(client, args.parameter)
    except SigningKeysError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 1
    if keys is None:
        sys.stdout.write(f"{args.parameter}: no keys yet (run rotate)\n")
        return 1
    for key_id, key in sorted(keys.keys.items(), key=lambda item: item[1].created_at):
        state = "current" if key_id == keys.current else f"retired at {key.retired_at}"
        sys.stdout.write(f"  {key_id}  created at {key.created_at}  {state}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
