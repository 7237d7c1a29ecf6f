"""A DynamoDB client holding items in memory, for unit tests of the stores built on the low-level client."""

from __future__ import annotations

import re
from typing import Any


class FakeDynamoDBClient:
    """Implements the calls ``TopicRegistry`` and ``DeliveryLedger`` make, without conditions; records every call.

    Parameters
    ----------
    keys:
        Table name → the names of its key attributes.
    """

    def __init__(self, keys: dict[str, tuple[str, ...]]) -> None:
        self._keys = keys
        self.tables: dict[str, dict[tuple[str, ...], dict[str, Any]]] = {name: {} for name in keys}
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def count(self, operation: str) -> int:
        """Return how many times an operation (``get_item``, …) was called."""
        return sum(1 for name, _ in self.calls if name == operation)

    def _key(self, table: str, item: dict[str, Any]) -> tuple[str, ...]:
        return tuple(item[name]["S"] for name in self._keys[table])

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

    def batch_write_item(self, RequestItems: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
        """Store every put request."""
        self.calls.append(("batch_write_item", {"RequestItems": RequestItems}))
        for table, requests in RequestItems.items():
            for request in requests:
                item = request["PutRequest"]["Item"]
                self.tables[table][self._key(table, item)] = dict(item)
        return {"UnprocessedItems": {}}

    def update_item(
        self,
        TableName: str,
        Key: dict[str, Any],
        UpdateExpression: str,
        ExpressionAttributeValues: dict[str, Any],
        ExpressionAttributeNames: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> dict[str, Any]:
        """Apply the ``SET a = :v`` and ``REMOVE a`` clauses of an update, ignoring any condition."""
        self.calls.append(("update_item", {"TableName": TableName, "Key": Key, "UpdateExpression": UpdateExpression}))
        names = ExpressionAttributeNames or {}
        item = self.tables[TableName].setdefault(self._key(TableName, Key), dict(Key))
        sets, _, removes = UpdateExpression.partition(" REMOVE ")
        for attribute, placeholder in re.findall(r"([#\w]+) = (:\w+)", sets):
            item[names.get(attribute, attribute)] = ExpressionAttributeValues[placeholder]
        for attribute in filter(None, (part.strip() for part in removes.split(","))):
            item.pop(names.get(attribute, attribute), None)
        return {}
