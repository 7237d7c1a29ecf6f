"""The topic registry: channel/topic → integrations, in DynamoDB, with a short in-process cache for warm invocations."""

from __future__ import annotations

import builtins
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from core.errors import (
    AWS_ERRORS,
    ConflictError,
    ForbiddenError,
    NotFoundError,
    PayloadTooLargeError,
    aws_error,
    error_code,
)
from core.models import Integration, Topic


def new_topic_hash() -> str:
    """Return a fresh random topic hash: the secret a publisher sends in ``x-topic-hash-x``."""
    return secrets.token_urlsafe(32)


def hash_topic_secret(secret: str) -> str:
    """Return the SHA-256 hex digest under which a topic hash is stored; the hash itself never is."""
    # surrogatepass: a header holding a lone surrogate is a wrong hash (403), not an encoding error.
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def check_topic_hash(topic: Topic, given: str) -> None:
    """Raise ``ForbiddenError`` unless ``given`` is the topic's hash, compared in constant time."""
    if not hmac.compare_digest(hash_topic_secret(given), topic.hash_sha256):
        raise ForbiddenError("x-topic-hash-x does not match the topic")


# DynamoDB's item limit is 400 KB, names and values counted in UTF-8 bytes; checked below it, before any write.
MAX_ITEM_BYTES = 400_000


class StoredTopic(NamedTuple):
    """A topic as its item holds it, with the credentials its earlier versions used (``retired``: reference → when
    the topic stopped using it), kept while deliveries queued before a change may still read them."""

    topic: Topic
    retired: Mapping[str, str]


def _json(value: Any) -> str:
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    try:
        text.encode()
    except UnicodeEncodeError:
        # A lone surrogate has no UTF-8 form; \u escapes keep it, as every item held it before.
        return json.dumps(value, separators=(",", ":"))
    return text


def _to_item(topic: Topic, retired: Mapping[str, str] | None = None) -> dict[str, Any]:
    integrations = [integration.model_dump(mode="json") for integration in topic.integrations]
    item: dict[str, Any] = {
        "channel": {"S": topic.channel},
        "topic": {"S": topic.topic},
        # JSON keeps template values (floats, nulls, nesting) exactly; the item is read whole anyway. UTF-8, not
        # \u escapes: those take six bytes for a character of three, and the item has a size limit.
        "integrations": {"S": _json(integrations)},
        "hash_sha256": {"S": topic.hash_sha256},
        "created_at": {"S": topic.created_at},
        "updated_at": {"S": topic.updated_at},
    }
    if retired:
        item["retired_refs"] = {"S": _json(dict(sorted(retired.items())))}
    return item


def _from_item(item: dict[str, Any]) -> Topic:
    return Topic(
        channel=item["channel"]["S"],
        topic=item["topic"]["S"],
        integrations=[Integration.model_validate(raw) for raw in json.loads(item["integrations"]["S"])],
        hash_sha256=item["hash_sha256"]["S"],
        created_at=item["created_at"]["S"],
        updated_at=item["updated_at"]["S"],
    )


def _stored_from_item(item: dict[str, Any]) -> StoredTopic:
    topic = _from_item(item)
    if "retired_refs" in item:
        retired: dict[str, str] = json.loads(item["retired_refs"]["S"])
    else:
        # An item written before retirement times were kept: its replaced credentials count from its last change.
        retired = dict.fromkeys(item.get("replaced_refs", {}).get("SS", []), topic.updated_at)
    return StoredTopic(topic, retired)


def _item_size(item: dict[str, Any]) -> int:
    """Return an item's size as DynamoDB counts it, for the string and string-set attributes topics have."""
    size = 0
    for name, value in item.items():
        ((kind, data),) = value.items()
        strings = data if kind == "SS" else [data]
        size += len(name.encode()) + sum(len(text.encode()) for text in strings)
    return size


def _check_size(item: dict[str, Any], topic: Topic) -> None:
    size = _item_size(item)
    if size > MAX_ITEM_BYTES:
        raise PayloadTooLargeError(
            f"topic {topic.topic!r} of channel {topic.channel!r} would take {size} bytes in DynamoDB, over its item "
            f"limit of 400 KB ({MAX_ITEM_BYTES} bytes); use fewer or smaller integration models"
        )


def check_item_size(topic: Topic, retired: Mapping[str, str] | None = None) -> None:
    """Raise ``PayloadTooLargeError`` when the topic's item would be over DynamoDB's item limit."""
    _check_size(_to_item(topic, retired), topic)


class TopicRegistry:
    """Reads and writes topics in the DynamoDB ``topics`` table (key: channel, topic).

    Parameters
    ----------
    client:
        A boto3 DynamoDB client.
    table_name:
        The table's name.
    cache_ttl_seconds:
        How long a topic read is reused by ``get``; 0 turns the cache off.
    clock:
        Monotonic clock, injectable for tests.
    """

    def __init__(
        self,
        client: Any,
        table_name: str,
        cache_ttl_seconds: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._table = table_name
        self._ttl = cache_ttl_seconds
        self._clock = clock
        self._cache: dict[tuple[str, str], tuple[float, Topic]] = {}

    def get(self, channel: str, topic: str) -> Topic:
        """Return a topic, from the cache while it is fresh; raise ``NotFoundError`` when it does not exist."""
        cached = self._cache.get((channel, topic))
        if cached is not None and self._clock() - cached[0] < self._ttl:
            return cached[1]
        return self.read(channel, topic)

    def read(self, channel: str, topic: str) -> Topic:
        """Return a topic straight from the table, bypassing the cache, and cache what was read."""
        now = self._clock()
        found = self.read_stored(channel, topic).topic
        if self._ttl > 0:
            self._cache[(channel, topic)] = (now, found)
        return found

    def read_stored(self, channel: str, topic: str) -> StoredTopic:
        """Return a topic straight from the table with the credentials its previous version used."""
        try:
            response = self._client.get_item(
                TableName=self._table,
                Key={"channel": {"S": channel}, "topic": {"S": topic}},
                ConsistentRead=True,
            )
        except AWS_ERRORS as exc:
            raise aws_error(exc, "reading topic") from exc
        if "Item" not in response:
            raise NotFoundError(f"topic {topic!r} of channel {channel!r} does not exist")
        return _stored_from_item(response["Item"])

    def list(self, channel: str) -> list[Topic]:
        """Return every topic of a channel, ordered by name."""
        pages = self._client.get_paginator("query").paginate(
            TableName=self._table,
            KeyConditionExpression="channel = :c",
            ExpressionAttributeValues={":c": {"S": channel}},
        )
        try:
            return [_from_item(item) for response in pages for item in response.get("Items", [])]
        except AWS_ERRORS as exc:
            raise aws_error(exc, "listing topics") from exc

    def page(self, channel: str, after: str | None, limit: int) -> tuple[builtins.list[Topic], bool]:
        """Return up to ``limit`` topics of a channel by name, those after the topic ``after`` when given, and whether
        more may follow: one ``Query``, which DynamoDB also ends at 1 MB of items."""
        query: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "channel = :c",
            "ExpressionAttributeValues": {":c": {"S": channel}},
            "Limit": limit + 1,
        }
        if after is not None:
            query["ExclusiveStartKey"] = {"channel": {"S": channel}, "topic": {"S": after}}
        try:
            response = self._client.query(**query)
        except AWS_ERRORS as exc:
            raise aws_error(exc, "listing topics") from exc
        items = response.get("Items", [])
        more = len(items) > limit or "LastEvaluatedKey" in response
        return [_from_item(item) for item in items[:limit]], more

    def create(self, topic: Topic) -> None:
        """Store a new topic; raise ``ConflictError`` if it exists already, ``PayloadTooLargeError`` if too large."""
        self._put(_to_item(topic), topic, "attribute_not_exists(channel)", None)

    def replace(self, topic: Topic, expected_updated_at: str, retired: Mapping[str, str] | None = None) -> None:
        """Overwrite a topic read at ``expected_updated_at``; raise ``ConflictError`` if it changed since.

        ``retired``: the credentials earlier versions used that are still kept, each with when it was retired.
        """
        self._put(_to_item(topic, retired), topic, "updated_at = :seen", {":seen": {"S": expected_updated_at}})

    def _put(self, item: dict[str, Any], topic: Topic, condition: str, values: dict[str, Any] | None) -> None:
        _check_size(item, topic)
        kwargs: dict[str, Any] = {"TableName": self._table, "Item": item, "ConditionExpression": condition}
        if values:
            kwargs["ExpressionAttributeValues"] = values
        try:
            self._client.put_item(**kwargs)
        except AWS_ERRORS as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                raise ConflictError(
                    f"topic {topic.topic!r} of channel {topic.channel!r} was changed meanwhile; retry"
                ) from exc
            raise aws_error(exc, "writing topic") from exc
        self._cache.pop((topic.channel, topic.topic), None)

    def delete(self, channel: str, topic: str) -> StoredTopic:
        """Delete a topic and return what it was; raise ``NotFoundError`` when it does not exist."""
        try:
            response = self._client.delete_item(
                TableName=self._table,
                Key={"channel": {"S": channel}, "topic": {"S": topic}},
                ReturnValues="ALL_OLD",
            )
        except AWS_ERRORS as exc:
            raise aws_error(exc, "deleting topic") from exc
        self._cache.pop((channel, topic), None)
        if "Attributes" not in response:
            raise NotFoundError(f"topic {topic!r} of channel {channel!r} does not exist")
        return _stored_from_item(response["Attributes"])
