"""Integration secrets in SSM Parameter Store as SecureString parameters; items and messages hold only their names.

A parameter is written once and never overwritten: a topic item, or a delivery already queued, may name it, and a
write that loses a race or fails must not change what they read. New credentials get a name no parameter holds yet,
the topic's conditional write switches to it, and the old parameter is deleted after that.

Nor is a name ever used again once its parameter is deleted: a delivery queued under a deleted topic (a retry, a
dead-letter redrive) still names it, and must find its credentials missing, never those of a later topic of the same
channel, topic and integration names. So every new name ends in random bytes.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from core.errors import AWS_ERRORS, ConflictError, NotFoundError, aws_error, error_code

# SSM's limit on a Standard parameter's value; credentials are stored as ASCII JSON (non-ASCII escaped).
MAX_SECRET_CHARS = 4096
# Random bytes ending every new parameter name (hex): enough that no name is ever drawn twice. Names written by earlier
# versions are the integration's path itself or that path with 4 random bytes: a new name is never one of them.
NAME_SUFFIX_BYTES = 16


def secret_text(secret: dict[str, str]) -> str:
    """Return the text a secret object is stored as."""
    return json.dumps(secret)


class SecretStore:
    """Stores and reads JSON objects of secrets under a parameter-name prefix.

    Parameters
    ----------
    client:
        A boto3 SSM client.
    prefix:
        Parameter path every name of this store begins with, for example ``/notify/prod``.
    writer:
        The client that adds parameters and undoes them (``client`` when not given): one whose calls end in a known
        time, so that a request adding credentials can stop while it can still delete what it added.
    """

    def __init__(self, client: Any, prefix: str, writer: Any = None) -> None:
        self._client = client
        self._writer = writer or client
        self._prefix = prefix.rstrip("/")

    def integration_refs(self, channel: str, topic: str, integration: str) -> tuple[str, str]:
        """Return two names an integration's new credentials may be stored under, tried in turn by ``add``.

        Both are the integration's path under ``integrations/`` (the prefix the functions' SSM permissions name) with a
        random suffix one level down, so neither was ever used: not by this topic, nor by a deleted one of the same
        names whose queued deliveries still read theirs. The second is for the first being taken, which is never
        expected.
        """
        path = f"{self._prefix}/integrations/{channel}/{topic}/{integration}"
        return f"{path}/{secrets.token_hex(NAME_SUFFIX_BYTES)}", f"{path}/{secrets.token_hex(NAME_SUFFIX_BYTES)}"

    def add(self, names: Sequence[str], secret: dict[str, str]) -> str:
        """Store a secret object as a SecureString under the first of ``names`` no parameter holds yet; return it.

        Raise ``ConflictError`` when every name is taken. Nothing is ever overwritten.
        """
        text = secret_text(secret)
        for name in names:
            try:
                self._writer.put_parameter(Name=name, Value=text, Type="SecureString", Overwrite=False, Tier="Standard")
            except AWS_ERRORS as exc:
                if error_code(exc) == "ParameterAlreadyExists" and self._holds(name, text):
                    # botocore's retry of a write SSM made though its answer was lost: the names are new and random,
                    # so the parameter is this write's. Taken for another's, it was left holding live credentials
                    # that no topic names.
                    return name
                if error_code(exc) == "ParameterAlreadyExists":
                    continue
                raise aws_error(exc, "storing credentials") from exc
            return name
        raise ConflictError("credentials could not be stored under a new name; retry")

    def _holds(self, name: str, text: str) -> bool:
        """Whether the parameter ``name`` holds ``text``; False when it cannot be read (the name is then left)."""
        try:
            response = self._writer.get_parameters(Names=[name], WithDecryption=True)
        except AWS_ERRORS:
            return False
        return any(parameter.get("Value") == text for parameter in response.get("Parameters", []))

    def get(self, name: str) -> dict[str, str]:
        """Return a secret object; raise ``NotFoundError`` when the parameter does not exist."""
        try:
            response = self._client.get_parameter(Name=name, WithDecryption=True)
        except AWS_ERRORS as exc:
            if error_code(exc) == "ParameterNotFound":
                raise NotFoundError(f"credentials {name} do not exist") from exc
            raise aws_error(exc, "reading credentials") from exc
        value: dict[str, str] = json.loads(response["Parameter"]["Value"])
        return value

    def read(self, names: Sequence[str]) -> dict[str, dict[str, str]]:
        """Return the secret objects of those ``names`` that exist, by name: ten per ``GetParameters`` call."""
        found: dict[str, dict[str, str]] = {}
        for start in range(0, len(names), 10):
            try:
                response = self._client.get_parameters(Names=list(names[start : start + 10]), WithDecryption=True)
            except AWS_ERRORS as exc:
                raise aws_error(exc, "reading credentials") from exc
            for parameter in response.get("Parameters", []):
                found[parameter["Name"]] = json.loads(parameter["Value"])
        return found

    def delete(self, names: Iterable[str], *, quick: bool = False) -> None:
        """Delete parameters; names that do not exist are ignored. ``quick``: with the writer's client (undoing what a
        request added, within its time); else with the store's own."""
        pending = list(names)
        client = self._writer if quick else self._client
        for start in range(0, len(pending), 10):
            try:
                client.delete_parameters(Names=pending[start : start + 10])
            except AWS_ERRORS as exc:
                raise aws_error(exc, "deleting credentials") from exc


class SecureParameters:
    """SecureString parameters read decrypted and kept ``max_age`` seconds: the Stripe secret key, the webhook signing
    secret. powertools' ``SSMProvider`` does the same, but it loads boto3 (its package, s3transfer, multiprocessing)
    into the functions that read one: a tenth of ``import boto3`` more on each of their cold starts.

    Parameters
    ----------
    client:
        A botocore SSM client.
    clock:
        Seconds on a monotonic clock.
    """

    def __init__(self, client: Any, clock: Callable[[], float] = time.monotonic) -> None:
        self._client = client
        self._clock = clock
        self._values: dict[tuple[str, bool], tuple[float, str]] = {}

    def get(self, name: str, *, decrypt: bool = True, max_age: float) -> str:
        """Return a parameter's value, read again once it is ``max_age`` seconds old; raise the botocore error
        (``core.errors.AWS_ERRORS``) when SSM cannot answer, nothing kept then."""
        now = self._clock()
        kept = self._values.get((name, decrypt))
        if kept is not None and now - kept[0] < max_age:
            return kept[1]
        response = self._client.get_parameter(Name=name, WithDecryption=decrypt)
        value = str(response["Parameter"]["Value"])
        self._values[name, decrypt] = (now, value)
        return value
