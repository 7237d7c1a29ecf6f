"""The ``StripeGateway`` adapter over the stripe SDK, and the secret key it reads from SSM.

The stripe SDK is imported when the first Stripe client is built, never when this module is: functions that never
call Stripe must not pay for it at cold start, and those that do pay once per container.

Every failure comes out through ``translate``, in one place:

- network failures, 429, 409 (a request with the same idempotency key in flight, a lock timeout), 5xx: Stripe may
  succeed later → ``StripeUnavailableError`` (the subscriber raises; Lambda's async retries, then the on-failure
  destination and its alarm, take the event again); a 5xx that Stripe replays for an idempotency key
  (``Idempotent-Replayed: true``) → ``StripeReplayedFailureError``, a ``StripeUnavailableError`` that also tells the
  key's first request is finished and the same key will only ever get that 5xx again;
- 401 and 403 (a revoked or wrong key, a restricted key without the permission) are a configuration problem, not a
  property of the purchase: also ``StripeUnavailableError``, so the events wait in the on-failure queue while the
  alarm calls for a fix, and are redriven after it; recording them as refused would lose the credits;
- ``resource_missing`` (the customer, intent or session does not exist) → ``PermanentPurchaseError`` with the
  call's reason (``unknown_customer`` for a credit); the one exception is the Checkout Session lookup by
  PaymentIntent, where a 404 means "no session" (``checkout_session_for_intent``);
- an idempotency key reused with other parameters (``IdempotencyError``, a 400) → ``StripeIdempotencyError``, a
  ``StripeUnavailableError``: the key's first request may have credited the customer, so it is never recorded as a
  refusal (``core.purchases.credit`` saves a credit's terms so that this should not happen, and logs it when it does);
- any other 4xx (an invalid parameter) → ``PermanentPurchaseError`` ``stripe_refused``.

Texts carry the HTTP status, Stripe's error code and request id, never the key, and the SDK's exception is dropped
(``from None``): it holds the request's headers.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, NoReturn

from core.errors import AWS_ERRORS, error_code
from core.purchases.errors import (
    PermanentPurchaseError,
    StripeIdempotencyError,
    StripeReplayedFailureError,
    StripeUnavailableError,
)
from core.purchases.models import Credit
from core.purchases.ports import CheckoutSessionView, PaymentIntentView

if TYPE_CHECKING:
    from stripe import StripeClient, StripeError
    from stripe.params import CustomerBalanceTransactionListParams

# Retries belong to Lambda's async policy (minutes apart, then the on-failure queue); an SDK retry inside the
# invocation would only lengthen it while Stripe is down.
DEFAULT_NETWORK_RETRIES = 0
_RETRYABLE_STATUSES = frozenset({401, 403, 409, 429})
# Looking for an earlier credit: the customer's balance transactions, newest first, 100 a page, back to the first
# attempt less a margin for the clocks (Stripe's and Lambda's); more pages than this is no customer's day, and is
# retried (and alarmed on) rather than answered "none", which would credit again.
LIST_PAGE_SIZE = 100
MAX_LIST_PAGES = 10
CLOCK_MARGIN_SECONDS = 600


class StripeKeySource:
    """Returns the Stripe secret key from an SSM SecureString, cached.

    Parameters
    ----------
    provider:
        A ``core.secrets.SecureParameters``; it keeps the value for ``max_age`` seconds.
    parameter:
        The parameter's name.
    max_age:
        Seconds the key is reused before SSM is asked again, so a rolled key takes effect within that time.
    """

    def __init__(self, provider: Any, parameter: str, max_age: int) -> None:
        self._provider = provider
        self._parameter = parameter
        self._max_age = max_age

    def __repr__(self) -> str:
        return f"StripeKeySource(parameter={self._parameter!r})"

    def __call__(self) -> str:
        """Return the key; raise ``StripeUnavailableError`` when it cannot be read (retried, and alarmed on)."""
        try:
            value = self._provider.get(self._parameter, decrypt=True, max_age=self._max_age)
        except AWS_ERRORS as exc:
            raise StripeUnavailableError(f"reading the Stripe secret key failed ({error_code(exc)})") from None
        if not isinstance(value, str) or not value.strip():
            raise StripeUnavailableError("the Stripe secret key parameter is empty")
        # A key written from a file (``--value file://key.txt``) ends in a newline; a header cannot carry one.
        key = value.strip()
        if any(character.isspace() for character in key):
            raise StripeUnavailableError("the Stripe secret key parameter holds whitespace inside the key")
        return key


def translate(exc: StripeError, missing_reason: str) -> NoReturn:
    """Raise the domain error of a stripe SDK error (module docstring); ``missing_reason`` for ``resource_missing``."""
    import stripe

    status, code, request_id = exc.http_status, exc.code, exc.request_id
    where = ", ".join(str(part) for part in (status, code, request_id) if part)
    if isinstance(exc, stripe.APIConnectionError):
        raise StripeUnavailableError("Stripe could not be reached") from None
    if isinstance(exc, stripe.IdempotencyError):
        raise StripeIdempotencyError(
            f"Stripe refused an idempotency key reused with other parameters ({where})"
        ) from None
    if isinstance(exc, stripe.RateLimitError | stripe.AuthenticationError | stripe.PermissionError):
        raise StripeUnavailableError(f"Stripe refused the call for now ({where})") from None
    if isinstance(status, int) and status >= 500 and _replayed(exc):
        raise StripeReplayedFailureError(f"Stripe replayed the key's saved failure ({where})") from None
    if not isinstance(status, int) or status >= 500 or status in _RETRYABLE_STATUSES:
        raise StripeUnavailableError(f"Stripe failed ({where or type(exc).__name__})") from None
    if code == "resource_missing":
        raise PermanentPurchaseError(missing_reason, f"Stripe does not know the object ({where})") from None
    raise PermanentPurchaseError("stripe_refused", f"Stripe refused the request ({where})") from None


def _replayed(exc: StripeError) -> bool:
    """Whether Stripe answered with the saved result of the idempotency key's first request (``Idempotent-Replayed``:
    its headers' case is the HTTP client's)."""
    headers = exc.headers or {}
    return any(name.lower() == "idempotent-replayed" and value == "true" for name, value in headers.items())


def _text_map(value: Any) -> dict[str, str]:
    return {str(key): str(item) for key, item in dict(value or {}).items()}


def _id(value: Any) -> str | None:
    """Return an object's id whether Stripe gave the id or the expanded object."""
    if value is None or isinstance(value, str):
        return value
    found = value.get("id")
    return str(found) if found else None


def payment_intent_view(intent: Mapping[str, Any]) -> PaymentIntentView:
    """Return what the service reads of a PaymentIntent (its JSON, as ``to_dict`` gives it)."""
    return PaymentIntentView(
        id=str(intent.get("id")),
        status=str(intent.get("status")),
        amount=int(intent.get("amount") or 0),
        currency=str(intent.get("currency") or ""),
        customer_id=_id(intent.get("customer")),
        metadata=_text_map(intent.get("metadata")),
        created=int(intent.get("created") or 0),
        amount_refunded=_amount_refunded(intent.get("latest_charge")),
        charge_created=_charge_created(intent.get("latest_charge")),
        amount_received=_amount_received(intent),
    )


def _amount_received(intent: Mapping[str, Any]) -> int | None:
    """What a PaymentIntent's capture took: its ``amount_received``, else its expanded charge's ``amount_captured``;
    ``None`` when neither says (a capture takes something: 0 is no answer)."""
    charge = intent.get("latest_charge")
    for value in (
        intent.get("amount_received"),
        charge.get("amount_captured") if isinstance(charge, Mapping) else None,
    ):
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def _amount_refunded(charge: Any) -> int:
    """The amount a PaymentIntent's charge refunded, when it was expanded (else its id only: 0)."""
    return int(charge.get("amount_refunded") or 0) if isinstance(charge, Mapping) else 0


def _charge_created(charge: Any) -> int | None:
    """When a PaymentIntent's charge was made, when it was expanded (else its id only: ``None``)."""
    created = charge.get("created") if isinstance(charge, Mapping) else None
    return int(created) if created else None


def checkout_session_view(session: Mapping[str, Any]) -> CheckoutSessionView:
    """Return what the service reads of a Checkout Session retrieved with ``discounts.promotion_code`` expanded."""
    codes = []
    for discount in session.get("discounts") or []:
        promotion = discount.get("promotion_code")
        # Expanded, it is the PromotionCode object; not expanded, only its id, which names no code.
        if isinstance(promotion, Mapping) and promotion.get("code"):
            codes.append(str(promotion["code"]))
    return CheckoutSessionView(
        id=str(session.get("id")),
        payment_intent=_id(session.get("payment_intent")),
        customer_id=_id(session.get("customer")),
        promo_codes=tuple(codes),
        metadata=_text_map(session.get("metadata")),
    )


class StripeApiGateway:
    """``StripeGateway`` over the stripe SDK's ``StripeClient``.

    Parameters
    ----------
    api_key:
        Returns the secret key (``StripeKeySource``); asked on every call, so a rolled key is picked up when its
        cache expires. A client is built per key and reused while the key stays the same.
    api_base:
        The API's base URL (the local Stripe server); ``None`` for Stripe's own.
    timeout_seconds:
        Timeout of each HTTP request.
    max_network_retries:
        Retries the SDK makes itself (with the same idempotency key).
    """

    def __init__(
        self,
        api_key: Callable[[], str],
        *,
        api_base: str | None = None,
        timeout_seconds: float = 10.0,
        max_network_retries: int = DEFAULT_NETWORK_RETRIES,
    ) -> None:
        self._api_key = api_key
        self._api_base = api_base
        self._timeout = timeout_seconds
        self._retries = max_network_retries
        self._lock = threading.Lock()
        self._client: tuple[str, StripeClient] | None = None

    def __repr__(self) -> str:
        return f"StripeApiGateway(api_base={self._api_base!r})"

    def _stripe(self) -> StripeClient:
        key = self._api_key()
        with self._lock:
            if self._client is None or self._client[0] != key:
                import stripe

                self._client = (
                    key,
                    stripe.StripeClient(
                        key,
                        base_addresses={"api": self._api_base} if self._api_base else None,
                        max_network_retries=self._retries,
                        http_client=stripe.RequestsClient(timeout=self._timeout),
                    ),
                )
            return self._client[1]

    def credit_balance(
        self, customer_id: str, credit: Credit, description: str, metadata: Mapping[str, str], idempotency_key: str
    ) -> str:
        """Credit ``customer_id``'s balance by ``credit`` (a negative balance transaction); return its id.

        A 5xx carrying ``Idempotent-Replayed: true`` is ``StripeReplayedFailureError`` (``translate``): Stripe answered
        the key's saved result, so its first request is over, whatever it did.
        """
        import stripe

        client = self._stripe()
        try:
            transaction = client.v1.customers.balance_transactions.create(
                customer_id,
                {
                    # A negative amount is a credit: it lowers what the customer's next invoice asks.
                    "amount": -credit.amount,
                    "currency": credit.currency,
                    "description": description,
                    "metadata": dict(metadata),
                },
                {"idempotency_key": idempotency_key},
            )
        except stripe.StripeError as exc:
            translate(exc, "unknown_customer")
        return str(transaction.id)

    def find_credit(self, customer_id: str, purchase_id: str, since: datetime) -> str | None:
        """Return the id of the customer's balance transaction with ``metadata.purchase_id`` = ``purchase_id``, paging
        newest first back to ``since`` (less ``CLOCK_MARGIN_SECONDS``); ``None`` when there is none.

        ``StripeUnavailableError`` when more than ``MAX_LIST_PAGES`` pages would be needed: "none" is only answered
        when it is known.
        """
        import stripe

        client = self._stripe()
        oldest = int(since.timestamp()) - CLOCK_MARGIN_SECONDS
        params: CustomerBalanceTransactionListParams = {"limit": LIST_PAGE_SIZE}
        for _ in range(MAX_LIST_PAGES):
            try:
                page = client.v1.customers.balance_transactions.list(customer_id, params).to_dict()
            except stripe.StripeError as exc:
                translate(exc, "unknown_customer")
            transactions = page.get("data") or []
            for transaction in transactions:
                if (transaction.get("metadata") or {}).get("purchase_id") == purchase_id:
                    return str(transaction["id"])
            if not page.get("has_more") or not transactions or int(transactions[-1].get("created") or 0) < oldest:
                return None
            params = {"limit": LIST_PAGE_SIZE, "starting_after": transactions[-1]["id"]}
        raise StripeUnavailableError(
            f"the customer has more than {MAX_LIST_PAGES * LIST_PAGE_SIZE} balance transactions since the first attempt"
        )

    def payment_intent(self, intent_id: str) -> PaymentIntentView:
        """Retrieve a PaymentIntent with its charge (when it was made, what it refunded); an unknown one is
        ``PermanentPurchaseError("unknown_payment_intent")``."""
        import stripe

        client = self._stripe()
        try:
            intent = client.v1.payment_intents.retrieve(intent_id, {"expand": ["latest_charge"]}).to_dict()
        except stripe.StripeError as exc:
            translate(exc, "unknown_payment_intent")
        return payment_intent_view(intent)

    def checkout_session(self, session_id: str) -> CheckoutSessionView:
        """Retrieve a Checkout Session with its discounts' promotion codes; an unknown one is
        ``PermanentPurchaseError("unknown_checkout_session")``."""
        import stripe

        client = self._stripe()
        try:
            session = client.v1.checkout.sessions.retrieve(
                session_id, {"expand": ["discounts.promotion_code"]}
            ).to_dict()
        except stripe.StripeError as exc:
            translate(exc, "unknown_checkout_session")
        return checkout_session_view(session)

    def checkout_session_for_intent(self, intent_id: str) -> CheckoutSessionView | None:
        """Return the Checkout Session that created the PaymentIntent ``intent_id``, with its discounts' promotion
        codes; ``None`` when no Checkout created it."""
        import stripe

        client = self._stripe()
        try:
            sessions = client.v1.checkout.sessions.list(
                params={"payment_intent": intent_id, "expand": ["data.discounts.promotion_code"]}
            ).to_dict()
        except stripe.StripeError as exc:
            # localstripe (the local Stripe server), and only that, has no Checkout: it answers 404 "Unrecognized
            # request URL" (Stripe's shape, no code). Stripe itself answers an empty list when no session made the
            # intent; a resource_missing 404 on this list names an object that is not there, also no session. The
            # status and code decide, never the message's text; every other failure is translated as usual.
            if exc.http_status == 404 and exc.code in (None, "resource_missing"):
                return None
            translate(exc, "unknown_checkout_session")
        found = sessions.get("data") or []
        return checkout_session_view(found[0]) if found else None
