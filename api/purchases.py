"""Admin routes' logic for promotions, and the views of purchases and payments (DESIGN.md "Purchases and Stripe")."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from core.errors import InvalidRequestError
from core.pages import cursor_text, encode_cursor, page_limit
from core.purchases.models import CODE_RULE, ID_PATTERN, ID_RULE, PROMO_CODE_PATTERN, Promotion, PromotionRequest

if TYPE_CHECKING:
    # Only for annotations: the store's module loads boto3 (its DynamoDB type serializer), ~10 ms of the api
    # function's cold start that only the promotions routes need (``core.clients`` loads it with the store).
    from core.purchases.promotions import PromotionStorePort

_CODE = re.compile(PROMO_CODE_PATTERN)
_ID = re.compile(ID_PATTERN)
LIST_LIMIT = 100


def check_code(code: str) -> str:
    """Return the promo code in upper case, as it is stored and matched; raise naming ``code`` when it is invalid."""
    if not _CODE.fullmatch(code):
        raise InvalidRequestError("code", f"is not a valid promo code: {CODE_RULE}")
    return code.upper()


def check_id(field: str, value: str) -> str:
    """Return ``value``; raise naming ``field`` when it is not a valid purchase or payment id."""
    if not _ID.fullmatch(value):
        raise InvalidRequestError(field, f"is not a valid id: {ID_RULE}")
    return value


def put_promotion(
    code: str, request: PromotionRequest, store: PromotionStorePort, now: datetime
) -> tuple[dict[str, Any], bool]:
    """Create or replace a promotion; return its view and whether it was created."""
    promotion, created = store.put(check_code(code), request, now)
    return promotion_view(promotion), created


def promotion_view(promotion: Promotion) -> dict[str, Any]:
    """Return a promotion as the routes show it."""
    return promotion.model_dump(mode="json")


def list_promotions(query: Mapping[str, str], store: PromotionStorePort) -> dict[str, Any]:
    """Return a page of the promotions, in the table's order: at most ``limit`` (``LIST_LIMIT``), with ``next`` when
    more may follow (each promotion is at most a few KB, so a page stays far under a Lambda answer's 6 MB).

    Raises
    ------
    InvalidRequestError
        ``limit`` or ``cursor`` is not one this route takes.
    """
    limit = page_limit(query.get("limit"), LIST_LIMIT)
    cursor = query.get("cursor")
    after = cursor_text(cursor, "c", _CODE.fullmatch).upper() if cursor is not None else None
    promotions, more = store.page(after, limit)
    body: dict[str, Any] = {"promotions": [promotion_view(promotion) for promotion in promotions]}
    if promotions and more:
        body["next"] = encode_cursor({"c": promotions[-1].code})
    return body
