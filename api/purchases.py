"""Admin routes' logic for promotions, and the views of purchases and payments (DESIGN.md "Purchases and Stripe")."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from api.handler import ADMIN_ERRORS, settings
from core.clients import get_payment_store, get_promotion_store, get_purchase_store
from core.errors import InvalidRequestError
from core.http import Response, RouteDoc, Router, json_response, parse_body
from core.pages import cursor_text, encode_cursor, page_limit
from core.purchases.models import (
    ID_PATTERN,
    PROMO_CODE_PATTERN,
    PaymentRecord,
    Promotion,
    PromotionListResponse,
    PromotionRequest,
    PurchaseRecord,
)
from core.validation import PATTERN_RULES

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
        raise InvalidRequestError("code", PATTERN_RULES[PROMO_CODE_PATTERN])
    return code.upper()


def check_id(field: str, value: str) -> str:
    """Return ``value``; raise naming ``field`` when it is not a valid purchase or payment id."""
    if not _ID.fullmatch(value):
        raise InvalidRequestError(field, PATTERN_RULES[ID_PATTERN])
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


# --- routes: served by the management API function (api/handler.py), which imports this module at their first request

router = Router()


@router.put(
    "/v1/promotions/<code>",
    RouteDoc(
        {200: Promotion, 201: Promotion},
        errors=(400, 413, 422, *ADMIN_ERRORS),
        security="admin",
        request=PromotionRequest,
    ),
)
def put_promotion_route(code: str) -> Response:
    """Create (201) or replace (200) the promotion of a promo code: the balance credit a purchase with it earns."""
    check_code(code)
    request = parse_body(router.current_event.decoded_body, PromotionRequest)
    view, created = put_promotion(code, request, get_promotion_store(settings()), datetime.now(UTC))
    return json_response(201 if created else 200, view)


@router.get("/v1/promotions/<code>", RouteDoc({200: Promotion}, errors=(404, 422, *ADMIN_ERRORS), security="admin"))
def get_promotion_route(code: str) -> Response:
    """Show a promotion."""
    return json_response(200, promotion_view(get_promotion_store(settings()).get(check_code(code))))


@router.delete("/v1/promotions/<code>", RouteDoc({204: None}, errors=(404, 422, *ADMIN_ERRORS), security="admin"))
def delete_promotion_route(code: str) -> Response:
    """Delete a promotion: purchases with its code earn nothing from then on."""
    get_promotion_store(settings()).delete(check_code(code))
    return Response(status_code=204)


@router.get(
    "/v1/promotions",
    RouteDoc({200: PromotionListResponse}, errors=(422, *ADMIN_ERRORS), security="admin", query=("limit", "cursor")),
)
def list_promotions_route() -> Response:
    """List the promotions, a page at a time (``?limit=``, at most 100; ``?cursor=``, a page's ``next``)."""
    query = router.current_event.query_string_parameters or {}
    return json_response(200, list_promotions(query, get_promotion_store(settings())))


@router.get(
    "/v1/purchases/<purchase_id>", RouteDoc({200: PurchaseRecord}, errors=(404, 422, *ADMIN_ERRORS), security="admin")
)
def get_purchase_route(purchase_id: str) -> Response:
    """Tell what was done with a purchase: the balance credit (or why none) and its notification."""
    record = get_purchase_store(settings()).get(check_id("purchase_id", purchase_id))
    return json_response(200, record.model_dump(mode="json"))


@router.get(
    "/v1/payments/<payment_id>", RouteDoc({200: PaymentRecord}, errors=(404, 422, *ADMIN_ERRORS), security="admin")
)
def get_payment_route(payment_id: str) -> Response:
    """Show a payment taken in from Stripe webhooks, with the Stripe events recorded for it."""
    record = get_payment_store(settings()).get(check_id("payment_id", payment_id))
    return json_response(200, record.model_dump(mode="json"))
