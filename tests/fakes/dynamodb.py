"""A DynamoDB client holding items in memory, for unit tests of the stores built on the low-level client."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any


class FakePaginator:
    """boto3's paginator over one operation of the fake: calls it lazily, a page per step, following
    ``LastEvaluatedKey`` with ``ExclusiveStartKey`` as boto3 does."""

    def __init__(self, operation: Callable[..., dict[str, Any]]) -> None:
        self._operation = operation

    def paginate(self, **kwargs: Any) -> Iterator[dict[str, Any]]:
        """Yield the operation's pages."""
        params = dict(kwargs)
        while True:
            page = self._operation(**params)
            yield page
            if "LastEvaluatedKey" not in page:
                return
            params["ExclusiveStartKey"] = page["LastEvaluatedKey"]


class FakeDynamoDBClient:
    """Implements the calls ``TopicRegistry`` and ``DeliveryLedger`` make, without conditions; records every call.

    Parameters
    ----------
    keys:
        Table name → the names of its key attributes.
    page_size:
        How many items a ``query`` page holds at most (DynamoDB stops a page at 1 MB); unlimited when ``None``.
    """

    def __init__(self, keys: dict[str, tuple[str, ...]], page_size: int | None = None) -> None:
        self._keys = keys
        self._page_size = page_size
        self.tables: dict[str, dict[tuple[str, ...], dict[str, Any]]] = {name: {} for name in keys}
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def count(self, operation: str) -> int:
        """Return how many times an operation (``get_item``, …) was called."""
        return sum(1 for name, _ in self.calls if name == operation)

    def _key(self, table: str, item: dict[str, Any]) -> tuple[str, ...]:
        return tuple(item[name]["S"] for name in self._keys[table])

    def get_paginator(self, operation_name: str) -> FakePaginator:
        """Return a paginator of ``query`` (or of another operation this fake implements)."""
        return FakePaginator(getattr(self, operation_name))

    def query(self, TableName: str, ExpressionAttributeValues: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        """Return one page of a partition's items in key order.

        The key condition is ``<pk> = :v``, optionally ``AND <sk> BETWEEN :a AND :b`` or ``AND <sk> > :a``; a page
        ends at ``Limit`` items, or at the fake's page size; projections are ignored.
        """
        self.calls.append(("query", {"TableName": TableName, **kwargs}))
        condition: str = kwargs["KeyConditionExpression"]
        names = self._keys[TableName]
        partition = re.search(rf"\b{names[0]} = (:\w+)", condition)
        assert partition, f"unsupported key condition {condition!r}"
        wanted = ExpressionAttributeValues[partition.group(1)]["S"]
        between = re.search(r"BETWEEN (:\w+) AND (:\w+)", condition)
        low, high = (ExpressionAttributeValues[name]["S"] for name in between.groups()) if between else ("", "\uffff")
        greater = re.search(rf"\b{names[-1]} > (:\w+)", condition)
        floor = ExpressionAttributeValues[greater.group(1)]["S"] if greater else None
        start = kwargs.get("ExclusiveStartKey")
        after = self._key(TableName, start) if start else None
        keys = sorted(
            key
            for key in self.tables[TableName]
            if key[0] == wanted
            and low <= key[-1] <= high
            and (floor is None or key[-1] > floor)
            and (after is None or key > after)
        )
        sizes = [size for size in (self._page_size, kwargs.get("Limit")) if size]
        page = keys[: min(sizes)] if sizes else keys
        response: dict[str, Any] = {"Items": [dict(self.tables[TableName][key]) for key in page]}
        if len(page) < len(keys):
            response["LastEvaluatedKey"] = {name: {"S": value} for name, value in zip(names, page[-1], strict=True)}
        return response

    def get_item(self, TableName: str, Key: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        """Return the item under ``Key``, if any."""
        self.calls.append(("get_item", {"TableName": TableName, "Key": Key, **kwargs}))
        item = self.tables[TableName].get(self._key(TableName, Key))
        return {"Item": dict(item)} if item else {}

    def put_item(self, TableName: str, Item: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        """Store ``Item``, ignoring any condition."""
        self.calls.append(("put_item", {"TableName": TableName, "Item": Item, **kwargs}))
        self.tables[TableName][self._key(TableName, Item)] = dict(Item)
        return {}

    def update_item(
        self,
        TableName: str,
        Key: dict[str, Any],
        UpdateExpression: str,
        ExpressionAttributeValues: dict[str, Any],
        ExpressionAttributeNames: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> dict[str, Any]:
        """Apply the ``SET a = :v``, ``SET a = list_append(if_not_exists(a, :e), :v)`` and ``REMOVE a`` clauses of an
        update, ignoring any condition."""
        self.calls.append(("update_item", {"TableName": TableName, "Key": Key, "UpdateExpression": UpdateExpression}))
        names = ExpressionAttributeNames or {}
        item = self.tables[TableName].setdefault(self._key(TableName, Key), dict(Key))
        sets, _, removes = UpdateExpression.partition(" REMOVE ")
        for attribute, placeholder in re.findall(r"([#\w]+) = (:\w+)", sets):
            item[names.get(attribute, attribute)] = ExpressionAttributeValues[placeholder]
        appends = re.findall(r"([#\w]+) = list_append\(if_not_exists\(([#\w]+), (:\w+)\), (:\w+)\)", sets)
        for attribute, source, empty, placeholder in appends:
            start = item.get(names.get(source, source), ExpressionAttributeValues[empty])
            item[names.get(attribute, attribute)] = {"L": [*start["L"], *ExpressionAttributeValues[placeholder]["L"]]}
        for attribute in filter(None, (part.strip() for part in removes.split(","))):
            item.pop(names.get(attribute, attribute), None)
        return {}
