"""The local AWS state kept across restarts: one JSON file under ``.local/aws``, restored at start, saved as it changes.

moto starts empty at every run. The resources (tables, queues, topics) come back from the CloudFormation template at
each start; this module puts their data back into them: every DynamoDB table's items, every SSM parameter (SecureString
values included: topic credentials live there), the messages of every queue (bodies, message attributes, receive
counts, what is left of their delay; in-flight ones come back visible, since the run that received them is gone), the
SNS platform applications and endpoints under their ARNs (topics store endpoint ARNs), and the verified SES identities.

Not moto's recorder (``/moto-api/recorder/``): it logs every request and replays all of them, so a restart would replay
each receive and delete of the pollers (messages consumed twice, deletes with stale receipt handles), the stack creation
on top of the one the start just made, and every random id anew (endpoint ARNs stored in topics would not resolve);
the log also grows with every poll, forever. moto has no other means of persistence.

Queues and tables are read in moto's backends (moto runs in this process): ``ReceiveMessage`` cannot read a queue
without changing it, and moto's ``Scan`` takes about a millisecond an item, too slow to repeat every few seconds.
Everything else is read, and everything written, through the APIs, except what no API can set: a message's id,
receive count and timestamps, and an endpoint's ARN.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from core.errors import AWS_ERRORS, error_code

FORMAT = "notify-local-aws"
VERSION = 1
FILE_NAME = "snapshot.json"
UNREADABLE_SUFFIX = ".unreadable"
# A save takes at most about this share of the time: a large state is saved less often than every few seconds.
_SAVE_SHARE = 0.1
# moto's dicts may change while they are read (a request is served meanwhile): the read is then taken again.
_READ_ATTEMPTS = 5
_BATCH_WRITE_LIMIT = 25
_GET_PARAMETERS_LIMIT = 10
# DynamoDB types whose moto value is already its JSON value.
_PLAIN_TYPES = {"S", "N", "BOOL", "NULL", "SS", "NS"}


class SnapshotError(Exception):
    """The saved state cannot be read or written; the message says why, in words for the terminal."""


class SavedParameter(BaseModel):
    """An SSM parameter: name, type and value (decrypted: the file is private like the rest of ``.local``)."""

    model_config = ConfigDict(frozen=True)

    name: str
    type: str
    value: str
    description: str | None = None
    tier: str | None = None


class SavedMessage(BaseModel):
    """A message of a queue as moto holds it; ``delayed_until`` is in epoch milliseconds (0: not delayed)."""

    model_config = ConfigDict(frozen=True)

    message_id: str
    body: str
    attributes: dict[str, dict[str, Any]] = {}
    system_attributes: dict[str, dict[str, Any]] = {}
    sent_timestamp: int | None = None
    receive_count: int = 0
    first_receive_timestamp: int | None = None
    delayed_until: float = 0.0
    sender_id: str | None = None
    group_id: str | None = None
    deduplication_id: str | None = None
    sequence_number: str | None = None


class SavedApplication(BaseModel):
    """An SNS platform application; its ARN gives its name and platform."""

    model_config = ConfigDict(frozen=True)

    arn: str
    attributes: dict[str, str] = {}


class SavedEndpoint(BaseModel):
    """An SNS platform endpoint, under the ARN it had (topics store it)."""

    model_config = ConfigDict(frozen=True)

    arn: str
    application_arn: str
    attributes: dict[str, str] = {}


class LocalAwsState(BaseModel):
    """What is kept of moto between runs. Items are DynamoDB JSON, binary values in base64 as AWS writes them."""

    model_config = ConfigDict(frozen=True)

    tables: dict[str, list[dict[str, dict[str, Any]]]] = {}
    parameters: list[SavedParameter] = []
    queues: dict[str, list[SavedMessage]] = {}
    applications: list[SavedApplication] = []
    endpoints: list[SavedEndpoint] = []
    identities: list[str] = []


class SnapshotFile(BaseModel):
    """The file: a format name and version, whose moto it was, when it was saved, and the state."""

    format: Literal["notify-local-aws"]
    version: int
    account: str
    region: str
    saved_at: str
    state: LocalAwsState


# --- the file ----------------------------------------------------------------------------------------------------


def encode(state: LocalAwsState | dict[str, Any], account: str, region: str, saved_at: datetime) -> str:
    """Return the file's text for ``state`` (the model, or its JSON dump)."""
    document = {
        "format": FORMAT,
        "version": VERSION,
        "account": account,
        "region": region,
        "saved_at": saved_at.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "state": state.model_dump(mode="json") if isinstance(state, LocalAwsState) else state,
    }
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False)


def decode(text: str, account: str, region: str) -> SnapshotFile:
    """Parse the file's text; raise ``SnapshotError`` saying why it cannot be used."""
    try:
        document = json.loads(text)
    except ValueError:
        raise SnapshotError("is not JSON") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise SnapshotError(f"is not a saved state of the local stack (no format {FORMAT!r})")
    version = document.get("version")
    if version != VERSION:
        raise SnapshotError(f"has version {version!r}, this stack reads version {VERSION}")
    if (document.get("account"), document.get("region")) != (account, region):
        raise SnapshotError(
            f"was saved for account {document.get('account')!r} in {document.get('region')!r},"
            f" not {account!r} in {region!r}"
        )
    try:
        return SnapshotFile.model_validate(document)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise SnapshotError(f"is malformed at {where}: {first['msg']}") from None


def read(path: Path, account: str, region: str) -> SnapshotFile | None:
    """Return the saved file, ``None`` when there is none; raise ``SnapshotError`` when it cannot be used."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise SnapshotError(f"cannot be read ({getattr(exc, 'strerror', None) or exc})") from None
    return decode(text, account, region)


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (a temporary file, then ``os.replace``), readable by its owner only."""
    directory = path.parent
    if not directory.is_dir():
        directory.mkdir(parents=True, exist_ok=True)
        directory.chmod(0o700)
    temporary = directory / f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp"
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            os.fchmod(handle.fileno(), 0o600)
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise


# --- values moto holds, as JSON and back -------------------------------------------------------------------------


def _base64(value: Any) -> Any:
    # moto keeps a top-level binary value as bytes and a nested one as its base64 text already.
    return base64.b64encode(value).decode("ascii") if isinstance(value, bytes | bytearray) else value


def dynamo_json(kind: str, value: Any) -> dict[str, Any]:
    """Return a moto ``DynamoType`` (its type and value) as DynamoDB JSON, binary values in base64."""
    if kind == "M":
        return {kind: {key: dynamo_json(item.type, item.value) for key, item in value.items()}}
    if kind == "L":
        return {kind: [dynamo_json(item.type, item.value) for item in value]}
    if kind == "B":
        return {kind: _base64(value)}
    if kind == "BS":
        return {kind: [_base64(item) for item in value]}
    return {kind: value}


def dynamo_item(item: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Return a saved item as boto3's client takes it: binary values as bytes."""
    return {name: dynamo_wire(value) for name, value in item.items()}


def dynamo_wire(typed: dict[str, Any]) -> dict[str, Any]:
    """Return a DynamoDB JSON value as boto3's client takes it: binary values as bytes."""
    (kind, value), *_ = typed.items()
    if kind == "M":
        return {kind: {key: dynamo_wire(item) for key, item in value.items()}}
    if kind == "L":
        return {kind: [dynamo_wire(item) for item in value]}
    if kind == "B":
        return {kind: base64.b64decode(value)}
    if kind == "BS":
        return {kind: [base64.b64decode(item) for item in value]}
    return {kind: value}


def attributes_json(attributes: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Return SQS message attributes as moto holds them, with binary values in base64."""
    saved: dict[str, dict[str, Any]] = {}
    for name, attribute in attributes.items():
        entry = dict(attribute)
        if "BinaryValue" in entry:
            entry["BinaryValue"] = _base64(entry["BinaryValue"])
        if "BinaryListValues" in entry:
            entry["BinaryListValues"] = [_base64(item) for item in entry["BinaryListValues"]]
        saved[name] = entry
    return saved


def attributes_moto(saved: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Return saved SQS message attributes as moto holds them: binary values as bytes."""
    attributes: dict[str, dict[str, Any]] = {}
    for name, entry in saved.items():
        attribute = dict(entry)
        if isinstance(attribute.get("BinaryValue"), str):
            attribute["BinaryValue"] = base64.b64decode(attribute["BinaryValue"])
        if "BinaryListValues" in attribute:
            attribute["BinaryListValues"] = [base64.b64decode(item) for item in attribute["BinaryListValues"]]
        attributes[name] = attribute
    return attributes


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def _shown(path: Path) -> str:
    with contextlib.suppress(ValueError):
        return str(path.relative_to(Path.cwd()))
    return str(path)


@dataclass
class Restored:
    """What a restore put back: items per table, parameters, messages, endpoints, and what had nowhere to go."""

    items: dict[str, int] = field(default_factory=dict)
    parameters: int = 0
    messages: int = 0
    endpoints: int = 0
    left_out: list[str] = field(default_factory=list)


def summary(restored: Restored, where: str) -> str:
    """Return the line the terminal shows after a restore."""
    tables = [name for name, count in restored.items.items() if count]
    parts = [
        f"{_plural(len(tables), 'table')} ({_plural(sum(restored.items.values()), 'item')})",
        _plural(restored.parameters, "parameter"),
        _plural(restored.messages, "queued message"),
    ]
    if restored.endpoints:
        parts.append(_plural(restored.endpoints, "push endpoint"))
    line = f"restored {', '.join(parts)} from {where}"
    if restored.left_out:
        line += f"; left out, no longer defined: {', '.join(sorted(restored.left_out))}"
    return line


# --- the store ---------------------------------------------------------------------------------------------------


class Snapshots:
    """Saves moto's state to ``directory`` and puts it back into a fresh moto.

    Parameters
    ----------
    directory:
        Where the file lives (``LocalConfig.snapshot_dir``).
    client:
        The stack's boto3 client factory of moto (``LocalStack.client``).
    account, region:
        moto's account and region the stack uses; a file saved for others is not restored.
    report:
        Where a failed periodic save is told, in one line.
    """

    def __init__(
        self,
        directory: Path,
        client: Callable[[str], Any],
        account: str,
        region: str,
        report: Callable[[str], None] | None = None,
    ) -> None:
        self.directory = directory
        self._client = client
        self._account = account
        self._region = region
        self._report = report or (lambda _line: None)
        self._lock = threading.Lock()
        self._digest: str | None = None
        # Until restore() ran, moto holds nothing of the saved state: a save would overwrite it with an empty one.
        self._armed = False
        # Whether restore() found a file it could not use (and moved it aside): the terminal marks the line so.
        self.set_aside = False

    @property
    def path(self) -> Path:
        """The snapshot file."""
        return self.directory / FILE_NAME

    # --- restore ---------------------------------------------------------------------------------------------------

    def restore(self) -> str:
        """Put the saved state into moto (its resources created already); return one line for the terminal.

        A file that cannot be used is moved aside (``snapshot.json.unreadable``) and the stack starts without it.
        Saves are allowed from then on; not after a restore cut short (Ctrl-C while starting), which would save a
        part of the state over the whole.
        """
        line = self._restore()
        self._armed = True
        return line

    def _restore(self) -> str:
        where = _shown(self.directory)
        try:
            saved = read(self.path, self._account, self._region)
        except SnapshotError as exc:
            return self._set_aside(f"{_shown(self.path)} {exc}")
        if saved is None:
            return f"nothing saved yet in {where}"
        try:
            restored = self._apply(saved.state)
        except (*AWS_ERRORS, RuntimeError, ValueError, KeyError, TypeError, AttributeError) as exc:
            reason = error_code(exc) if isinstance(exc, AWS_ERRORS) else f"{type(exc).__name__}: {exc}"
            return self._set_aside(f"restoring {_shown(self.path)} failed midway ({reason})")
        return f"{summary(restored, where)} (saved {saved.saved_at})"

    def _set_aside(self, problem: str) -> str:
        self.set_aside = True
        aside = self.path.with_name(self.path.name + UNREADABLE_SUFFIX)
        try:
            os.replace(self.path, aside)
        except OSError:
            return f"{problem}; starting without it"
        return f"{problem}; kept as {aside.name}, starting without it"

    def _apply(self, state: LocalAwsState) -> Restored:
        """Put every part back; tables and queues that are not defined now are left out."""
        restored = Restored()
        restored.parameters = self._restore_parameters(state.parameters)
        self._restore_identities(state.identities)
        restored.endpoints = self._restore_push(state.applications, state.endpoints)
        self._restore_tables(state.tables, restored)
        self._restore_queues(state.queues, restored)
        return restored

    def _restore_tables(self, tables: dict[str, list[dict[str, dict[str, Any]]]], restored: Restored) -> None:
        dynamodb = self._client("dynamodb")
        existing = {name for page in dynamodb.get_paginator("list_tables").paginate() for name in page["TableNames"]}
        for name, items in tables.items():
            if name not in existing:
                if items:
                    restored.left_out.append(f"table {name}")
                continue
            for chunk in _chunks(items, _BATCH_WRITE_LIMIT):
                request: dict[str, Any] = {name: [{"PutRequest": {"Item": dynamo_item(item)}} for item in chunk]}
                for _ in range(10):
                    request = dynamodb.batch_write_item(RequestItems=request).get("UnprocessedItems") or {}
                    if not request:
                        break
                else:
                    raise RuntimeError(f"DynamoDB left items of {name} unprocessed")
            restored.items[name] = len(items)

    def _restore_parameters(self, parameters: list[SavedParameter]) -> int:
        ssm = self._client("ssm")
        written = 0
        for parameter in parameters:
            extra: dict[str, str] = {}
            if parameter.description:
                extra["Description"] = parameter.description
            if parameter.tier and parameter.tier != "Standard":
                extra["Tier"] = parameter.tier
            try:
                ssm.put_parameter(
                    Name=parameter.name, Value=parameter.value, Type=parameter.type, Overwrite=False, **extra
                )
                written += 1
            except AWS_ERRORS as exc:
                # What this run wrote already wins: the template's outputs (URLs with this run's ports), the admin
                # token's hash.
                if error_code(exc) != "ParameterAlreadyExists":
                    raise
        return written

    def _restore_identities(self, identities: list[str]) -> None:
        ses = self._client("ses")
        for identity in identities:
            if "@" in identity:
                ses.verify_email_identity(EmailAddress=identity)
            else:
                ses.verify_domain_identity(Domain=identity)

    def _restore_push(self, applications: list[SavedApplication], endpoints: list[SavedEndpoint]) -> int:
        from moto.sns.models import sns_backends

        sns = self._client("sns")
        for application in applications:
            platform, name = application.arn.split(":", 5)[5].split("/", 2)[1:]
            sns.create_platform_application(Name=name, Platform=platform, Attributes=application.attributes)
        backend = sns_backends[self._account][self._region]
        for endpoint in endpoints:
            attributes = dict(endpoint.attributes)
            token = attributes.pop("Token")
            custom = attributes.pop("CustomUserData", None)
            created = sns.create_platform_endpoint(
                PlatformApplicationArn=endpoint.application_arn,
                Token=token,
                Attributes=attributes,
                **({"CustomUserData": custom} if custom is not None else {}),
            )["EndpointArn"]
            if created != endpoint.arn:
                # The API gives a new random id; topics hold the old ARN, so the endpoint takes it back.
                moved = backend.platform_endpoints.pop(created)
                moved.id = uuid.UUID(endpoint.arn.rsplit("/", 1)[-1])
                moved.arn = endpoint.arn
                backend.platform_endpoints[endpoint.arn] = moved
        return len(endpoints)

    def _restore_queues(self, queues: dict[str, list[SavedMessage]], restored: Restored) -> None:
        from moto.sqs.models import Message, sqs_backends

        backend = sqs_backends[self._account][self._region]
        for name, messages in queues.items():
            queue = backend.queues.get(name)
            if queue is None:
                if messages:
                    restored.left_out.append(f"queue {name}")
                continue
            for saved in messages:
                message = Message(saved.message_id, saved.body, attributes_moto(saved.system_attributes))
                message.message_attributes = attributes_moto(saved.attributes)
                message.sent_timestamp = saved.sent_timestamp  # type: ignore[assignment]
                message.approximate_receive_count = saved.receive_count
                message.approximate_first_receive_timestamp = saved.first_receive_timestamp
                message.delayed_until = saved.delayed_until
                if saved.sender_id:
                    message.sender_id = saved.sender_id
                message.group_id = saved.group_id
                message.deduplication_id = saved.deduplication_id
                message.sequence_number = saved.sequence_number
                queue.add_message(message)
            restored.messages += len(messages)

    # --- save ------------------------------------------------------------------------------------------------------

    def capture(self) -> LocalAwsState:
        """Read moto's state now."""
        for attempt in range(_READ_ATTEMPTS):
            try:
                tables, queues = self._tables(), self._queues()
                break
            except RuntimeError:  # a dict of moto changed while it was read
                if attempt == _READ_ATTEMPTS - 1:
                    raise
        applications, endpoints = self._push()
        # Built from moto's own values: not validated again, which would be most of a save's time.
        return LocalAwsState.model_construct(
            tables=tables,
            parameters=self._parameters(),
            queues=queues,
            applications=applications,
            endpoints=endpoints,
            identities=self._identities(),
        )

    def _tables(self) -> dict[str, list[dict[str, dict[str, Any]]]]:
        from moto.dynamodb.models import dynamodb_backends

        backend = dynamodb_backends[self._account][self._region]
        tables: dict[str, list[dict[str, dict[str, Any]]]] = {}
        for name, table in list(backend.tables.items()):
            # In moto's order, not sorted as Scan sorts (half of a save's time): unchanged items keep their places.
            held: list[Any] = list(table.items.values())
            items = [item for group in held for item in list(group.values())] if table.range_key_attr else held
            tables[name] = [
                {
                    key: {value.type: value.value}
                    if value.type in _PLAIN_TYPES
                    else dynamo_json(value.type, value.value)
                    for key, value in list(item.attrs.items())
                }
                for item in items
            ]
        return tables

    def _queues(self) -> dict[str, list[SavedMessage]]:
        from moto.sqs.models import sqs_backends

        backend = sqs_backends[self._account][self._region]
        queues: dict[str, list[SavedMessage]] = {}
        for name, queue in list(backend.queues.items()):
            queues[name] = [
                SavedMessage.model_construct(
                    message_id=message.id,
                    body=message.body,
                    attributes=attributes_json(message.message_attributes),
                    system_attributes=attributes_json(message.system_attributes or {}),
                    sent_timestamp=message.sent_timestamp,
                    receive_count=message.approximate_receive_count,
                    first_receive_timestamp=message.approximate_first_receive_timestamp,
                    delayed_until=message.delayed_until if message.delayed else 0.0,
                    sender_id=message.sender_id,
                    group_id=message.group_id,
                    deduplication_id=message.deduplication_id,
                    sequence_number=message.sequence_number,
                )
                for message in list(queue._messages)
            ]
        return queues

    def _parameters(self) -> list[SavedParameter]:
        ssm = self._client("ssm")
        described = {
            item["Name"]: item
            for page in ssm.get_paginator("describe_parameters").paginate()
            for item in page.get("Parameters", [])
        }
        parameters: list[SavedParameter] = []
        for names in _chunks(sorted(described), _GET_PARAMETERS_LIMIT):
            found = ssm.get_parameters(Names=names, WithDecryption=True).get("Parameters", [])
            for item in found:
                about = described.get(item["Name"], {})
                parameters.append(
                    SavedParameter(
                        name=item["Name"],
                        type=item["Type"],
                        value=item["Value"],
                        description=about.get("Description") or None,
                        tier=about.get("Tier"),
                    )
                )
        return sorted(parameters, key=lambda parameter: parameter.name)

    def _push(self) -> tuple[list[SavedApplication], list[SavedEndpoint]]:
        from moto.sns.models import sns_backends

        sns = self._client("sns")
        applications = [
            SavedApplication(arn=item["PlatformApplicationArn"], attributes=item.get("Attributes", {}))
            for page in sns.get_paginator("list_platform_applications").paginate()
            for item in page.get("PlatformApplications", [])
        ]
        # moto answers an endpoint's CustomUserData to no call; it is read where moto keeps it.
        held = sns_backends[self._account][self._region].platform_endpoints
        endpoints = []
        for application in applications:
            pages = sns.get_paginator("list_endpoints_by_platform_application").paginate(
                PlatformApplicationArn=application.arn
            )
            for item in (item for page in pages for item in page.get("Endpoints", [])):
                attributes = dict(item.get("Attributes", {}))
                custom = getattr(held.get(item["EndpointArn"]), "custom_user_data", None)
                if custom is not None:
                    attributes.setdefault("CustomUserData", custom)
                endpoints.append(
                    SavedEndpoint(arn=item["EndpointArn"], application_arn=application.arn, attributes=attributes)
                )
        return sorted(applications, key=lambda item: item.arn), sorted(endpoints, key=lambda item: item.arn)

    def _identities(self) -> list[str]:
        ses = self._client("ses")
        return sorted(
            identity for page in ses.get_paginator("list_identities").paginate() for identity in page["Identities"]
        )

    def save(self) -> None:
        """Write moto's state to the file when it changed since the last write; serialized, safe from any thread.

        Does nothing until ``restore()`` ran. Raises ``SnapshotError`` when moto cannot be read or the file written;
        the file is then left as it was.
        """
        with self._lock:
            if not self._armed:
                return
            try:
                state = self.capture()
            except (*AWS_ERRORS, RuntimeError) as exc:
                reason = error_code(exc) if isinstance(exc, AWS_ERRORS) else str(exc)
                raise SnapshotError(f"reading moto failed ({reason})") from None
            dumped = state.model_dump(mode="json")
            digest = hashlib.sha256(json.dumps(dumped, sort_keys=True).encode()).hexdigest()
            if digest == self._digest and self.path.exists():
                return
            try:
                write_private(self.path, encode(dumped, self._account, self._region, datetime.now(UTC)))
            except OSError as exc:
                raise SnapshotError(f"writing {_shown(self.path)} failed ({exc.strerror or exc})") from None
            self._digest = digest

    def reset(self) -> None:
        """Remove everything saved (``LOCAL_RESET=1``): the next start is empty."""
        with self._lock:
            shutil.rmtree(self.directory, ignore_errors=True)
            self._digest = None

    def run_periodic(self, stop: threading.Event, every: float = 5.0) -> threading.Thread:
        """Save every ``every`` seconds (less often when a save takes long) until ``stop`` is set; return the thread.

        A killed run loses at most the last few seconds. A failed save is told once, not at every try.
        """

        def loop() -> None:
            wait, told = every, ""
            while not stop.wait(wait):
                started = time.monotonic()
                try:
                    self.save()
                    told = ""
                except Exception as exc:
                    # Any failure is told and the next save tried: a thread that died of one saved nothing more.
                    reason = str(exc) if isinstance(exc, SnapshotError) else type(exc).__name__
                    if not stop.is_set() and reason != told:
                        self._report(f"saving the local AWS state failed: {reason}")
                        told = reason
                wait = max(every, (time.monotonic() - started) / _SAVE_SHARE)

        thread = threading.Thread(target=loop, name="snapshots", daemon=True)
        thread.start()
        return thread
