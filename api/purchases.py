"""Admin routes' logic for promotions, and the views of purchases and payments (DESIGN.md "Purchases and Stripe")."""

from __future__ import annotations

import re
from datetime import datetime
from typing import TYPE_CHECKING, Any

from core.errors import InvalidRequestError
from core.purchases.models import ID_PATTERN, PROMO_CODE_PATTERN, Promotion, PromotionRequest

if TYPE_CHECKING:
    # Only for annotations: the store's module loads boto3 (its DynamoDB type serializer), ~10 ms of the api
    # function's cold start that only the promotions routes need (``core.clients`` loads it with the store).
    from core.purchases.promotions import PromotionStorePort

_CODE = re.compile(PROMO_CODE_PATTERN)
_ID = re.compile(ID_PATTERN)
CODE_RULE = "1 to 64 letters, digits, '-' or '_', starting with a letter or digit"
ID_RULE = "1 to 128 letters, digits, '.', ':', '-' or '_', starting with a letter or digit"


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
