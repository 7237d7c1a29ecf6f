"""Models of the purchases domain: the Purchase event on SNS, promotions, and what the stores record.

The Purchase event is the contract of the SNS ``Purchase`` topic (DESIGN.md "Purchases and Stripe"): anything may
publish one; the subscribers parse it with ``PurchaseEvent``. Amounts are in the currency's minor units (cents), as
Stripe counts them; currencies are ISO 4217 codes in lower case, as Stripe writes them.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StringConstraints,
    model_validator,
)

from core.validation import PATTERN_RULES, UNSENDABLE, AwareDateTimeText, Reply, Strict

# A promo code as it appears in a path and in events: letters, digits, '-' and '_'; compared in upper case.
PROMO_CODE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
# Purchase and payment ids: what Stripe and backends use as ids (``pi_…``, UUIDs, order numbers).
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"
CUSTOMER_PATTERN = r"^cus_[A-Za-z0-9]{1,64}$"
_PROMO_CODE = re.compile(PROMO_CODE_PATTERN)


def _upper(code: str) -> str:
    return code.upper()


CURRENCY_PATTERN = r"^[A-Za-z]{3}$"
# In words, for the 422s of the request models and of the routes' own checks (api/purchases.py).
PATTERN_RULES.update(
    {
        PROMO_CODE_PATTERN: (
            "is not a valid promo code: 1 to 64 letters, digits, '-' or '_', starting with a letter or digit"
        ),
        ID_PATTERN: (
            "is not a valid id: 1 to 128 letters, digits, '.', ':', '-' or '_', starting with a letter or digit"
        ),
        CUSTOMER_PATTERN: "is not a Stripe customer id: cus_ and 1 to 64 letters or digits",
        CURRENCY_PATTERN: "must be a three-letter ISO 4217 currency code, such as eur or usd",
    }
)
PromoCode = Annotated[str, StringConstraints(pattern=PROMO_CODE_PATTERN), AfterValidator(_upper)]
Currency = Annotated[str, StringConstraints(pattern=CURRENCY_PATTERN, to_lower=True)]
# Stripe takes amounts of up to 12 digits (IDR, KRW… count in big numbers); strict: ``true`` or ``"100"`` is no amount.
MAX_AMOUNT = 999_999_999_999
MinorUnits = Annotated[StrictInt, Field(gt=0, le=MAX_AMOUNT)]


# The optional text fields of a purchase left out when unusable, and their longest length: an address (RFC 5321's
# 320), a backend's user id.
_OPTIONAL_TEXT = {"email": 320, "user_id": 256}


class PurchaseEvent(BaseModel):
    """A purchase, as published to the SNS ``Purchase`` topic (the message is this model's JSON)."""

    model_config = ConfigDict(extra="ignore", frozen=True, defer_build=True)

    purchase_id: str = Field(pattern=ID_PATTERN)
    customer_id: str = Field(pattern=CUSTOMER_PATTERN)
    user_id: str | None = Field(default=None, max_length=_OPTIONAL_TEXT["user_id"])
    email: str | None = Field(default=None, max_length=_OPTIONAL_TEXT["email"])
    amount: StrictInt = Field(ge=0, le=MAX_AMOUNT)
    currency: Currency
    promo_code: PromoCode | None = None
    # When the customer paid (the payment worker publishes its charge's time): a promotion's expiry is checked
    # against it, so a delivery handled after the expiry still credits a purchase made before.
    purchased_at: datetime
    # Set by the parse only (never read from the message, never published): a code that is no code was left out.
    promo_code_invalid: bool = Field(default=False, exclude=True)
    # Set by the parse only, like it: the optional fields (``_OPTIONAL_TEXT``) left out as unusable.
    fields_left_out: tuple[str, ...] = Field(default=(), exclude=True)

    @model_validator(mode="before")
    @classmethod
    def _lenient_optional_fields(cls, data: Any) -> Any:
        """Read an empty ``promo_code`` as none, and leave out one that is no code (``"SUMMER SALE"``), marking it;
        leave out an ``email`` or ``user_id`` that is no text within its length (or holds what a message cannot carry),
        naming it in ``fields_left_out``.

        Anything may publish a purchase: an unusable optional field must cost the purchase what needs it (the credit
        subscriber records ``invalid_code``; the notification's variable is empty), never the whole event.
        """
        if not isinstance(data, dict):
            return data
        code = data.get("promo_code")
        if isinstance(code, str):
            code = code.strip() or None
        invalid = code is not None and not (isinstance(code, str) and _PROMO_CODE.fullmatch(code))
        left_out = tuple(
            name
            for name, limit in _OPTIONAL_TEXT.items()
            if data.get(name) is not None
            # Text a delivery message cannot carry (a lone surrogate, U+FFFE, U+FFFF) would fail the notification.
            and not (isinstance(data[name], str) and len(data[name]) <= limit and not UNSENDABLE.search(data[name]))
        )
        return {
            **data,
            **dict.fromkeys(left_out),
            "promo_code": None if invalid else code,
            "promo_code_invalid": invalid,
            "fields_left_out": left_out,
        }


class Credit(BaseModel):
    """An amount in a currency (minor units); unknown keys are refused, as in every request."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    amount: MinorUnits
    currency: Currency


class PromotionRequest(Strict):
    """Body of ``PUT /v1/promotions/{code}``: the credit a purchase with this code earns the customer."""

    credit: Credit
    description: str | None = Field(default=None, max_length=350)
    active: StrictBool = True
    # With its offset: a time without one would be read in whatever zone the reader assumes.
    expires_at: AwareDateTimeText | None = None


class Promotion(Reply):
    """A promotion as stored and shown."""

    code: str
    credit: Credit
    description: str | None = None
    active: bool
    expires_at: datetime | None = None
    created_at: datetime
    updated_at: datetime


class PromotionListResponse(Reply):
    """Body of ``GET /v1/promotions``: a page of them, and ``next``, the cursor of the next page, when more may
    follow."""

    promotions: list[Promotion]
    next: str | None = None


class CreditRecord(Reply):
    """A balance credit Stripe made: its balance transaction id and the credit."""

    balance_transaction: str
    amount: int
    currency: str


class CreditTerms(BaseModel):
    """What a purchase's credit asks Stripe for, saved on the purchase before the first Stripe call (first writer
    wins), so that every retry sends the same request whatever became of the promotion since."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    amount: int
    currency: str
    description: str
    idempotency_key: str
    first_attempt_at: datetime


class PurchaseRecord(Reply):
    """What the service did with a purchase (``GET /v1/purchases/{purchase_id}``).

    ``credit`` is set once Stripe credited the customer; ``credit_error`` tells why a permanent refusal gave none;
    ``notification_id`` is the purchase notification's, once it was published.
    """

    purchase_id: str
    customer_id: str | None = None
    promo_code: str | None = None
    credit: CreditRecord | None = None
    credit_error: str | None = None
    notification_id: str | None = None
    notification_error: str | None = None
    updated_at: datetime | None = None
    # Bookkeeping of the credit subscriber, not shown: the route and the OpenAPI document leave it out.
    credit_terms: CreditTerms | None = Field(default=None, exclude=True)


class PaymentRecord(Reply):
    """A payment taken in from a Stripe webhook (``GET /v1/payments/{payment_id}``).

    ``payment_id`` is the PaymentIntent's ``metadata.payment_id``, else the intent's id; it is also the purchase id of
    the Purchase event published for it. ``events`` lists the Stripe event ids that were recorded for it.
    """

    payment_id: str
    payment_intent: str
    customer_id: str | None = None
    amount: int
    currency: str
    promo_code: str | None = None
    status: str
    events: list[str]
    purchase_published: bool = False
    created_at: datetime
    updated_at: datetime
