"""The promotions store: promo code → the balance credit a purchase with it earns, in DynamoDB.

Table key: ``code`` (a string, the code in upper case). An item holds the credit (``credit_amount`` in minor units,
``credit_currency``), ``active``, and optionally ``description`` and ``expires_at`` (ISO 8601), with its created and
updated times.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Protocol

from core.attributes import from_item, to_attribute
from core.errors import AWS_ERRORS, NotFoundError, aws_error
from core.purchases.models import Credit, Promotion, PromotionRequest


class PromotionStorePort(Protocol):
    """The promotions as the admin routes and the credit subscriber use them."""

    def put(self, code: str, request: PromotionRequest, now: datetime) -> tuple[Promotion, bool]:
        """Create or replace a promotion; return it and whether it was created."""
        ...

    def get(self, code: str) -> Promotion:
        """Return a promotion; raise ``NotFoundError`` when there is none."""
        ...

    def delete(self, code: str) -> None:
        """Delete a promotion; raise ``NotFoundError`` when there is none."""
        ...

    def page(self, after: str | None, limit: int) -> tuple[list[Promotion], bool]:
        """Return up to ``limit`` promotions in the store's order, those after the code ``after`` when given, and
        whether more may follow."""
        ...


def _key(code: str) -> dict[str, Any]:
    return {"code": {"S": code.upper()}}


def _utc(moment: datetime) -> datetime:
    """A time without an offset is taken as UTC (``now`` as a caller gives it; a request's ``expires_at`` has one)."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _iso(moment: datetime) -> str:
    return _utc(moment).isoformat()


def _from_item(item: dict[str, Any]) -> Promotion:
    values = from_item(item)
    return Promotion(
        code=values["code"],
        credit=Credit(amount=int(values["credit_amount"]), currency=values["credit_currency"]),
        description=values.get("description"),
        active=bool(values["active"]),
        expires_at=values.get("expires_at"),
        created_at=values["created_at"],
        updated_at=values["updated_at"],
    )


class PromotionStore:
    """Reads and writes promotions in the DynamoDB ``promotions`` table (key: ``code``).

    Parameters
    ----------
    client:
        A boto3 DynamoDB client.
    table_name:
        The table's name.
    """

    def __init__(self, client: Any, table_name: str) -> None:
        self._client = client
        self._table = table_name

    def put(self, code: str, request: PromotionRequest, now: datetime) -> tuple[Promotion, bool]:
        """Create or replace the promotion ``code`` (upper-cased); return it and whether it was created.

        A replace keeps the creation time; ``description`` and ``expires_at`` left out of ``request`` are removed.
        """
        values: dict[str, Any] = {
            "credit_amount": request.credit.amount,
            "credit_currency": request.credit.currency,
            "active": request.active,
            "updated_at": _iso(now),
        }
        removes = []
        for name, value in (("description", request.description), ("expires_at", request.expires_at)):
            if value is None:
                removes.append(name)
            else:
                values[name] = _iso(value) if isinstance(value, datetime) else value
        # Names go through placeholders: DynamoDB reserves many words.
        names = {f"#{name}": name for name in [*values, *removes, "created_at"]}
        sets = [f"#{name} = :{name}" for name in values]
        sets.append("#created_at = if_not_exists(#created_at, :updated_at)")
        expression = (
            "SET " + ", ".join(sets) + (" REMOVE " + ", ".join(f"#{name}" for name in removes) if removes else "")
        )
        try:
            response = self._client.update_item(
                TableName=self._table,
                Key=_key(code),
                UpdateExpression=expression,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues={f":{name}": to_attribute(value) for name, value in values.items()},
                ReturnValues="ALL_OLD",
            )
        except AWS_ERRORS as exc:
            raise aws_error(exc, "writing promotion") from exc
        earlier = response.get("Attributes")
        promotion = Promotion(
            code=code.upper(),
            credit=request.credit,
            description=request.description,
            active=request.active,
            expires_at=request.expires_at,
            created_at=datetime.fromisoformat(earlier["created_at"]["S"]) if earlier else _utc(now),
            updated_at=_utc(now),
        )
        return promotion, not earlier

    def get(self, code: str) -> Promotion:
        """Return the promotion ``code`` (any case), read consistently; raise ``NotFoundError`` when there is none."""
        try:
            response = self._client.get_item(TableName=self._table, Key=_key(code), ConsistentRead=True)
        except AWS_ERRORS as exc:
            raise aws_error(exc, "reading promotion") from exc
        if "Item" not in response:
            raise NotFoundError(f"promotion {code.upper()!r} does not exist")
        return _from_item(response["Item"])

    def delete(self, code: str) -> None:
        """Delete the promotion ``code``; raise ``NotFoundError`` when there is none."""
        try:
            response = self._client.delete_item(TableName=self._table, Key=_key(code), ReturnValues="ALL_OLD")
        except AWS_ERRORS as exc:
            raise aws_error(exc, "deleting promotion") from exc
        if "Attributes" not in response:
            raise NotFoundError(f"promotion {code.upper()!r} does not exist")

    def page(self, after: str | None, limit: int) -> tuple[list[Promotion], bool]:
        """Return up to ``limit`` promotions in the table's order (one ``Scan``), those after the code ``after`` when
        given, and whether more may follow: codes made per customer make the table a catalogue, not a few rows."""
        scan: dict[str, Any] = {"TableName": self._table, "ConsistentRead": True, "Limit": limit}
        if after is not None:
            scan["ExclusiveStartKey"] = _key(after)
        try:
            response = self._client.scan(**scan)
        except AWS_ERRORS as exc:
            raise aws_error(exc, "listing promotions") from exc
        return [_from_item(item) for item in response.get("Items", [])], "LastEvaluatedKey" in response
