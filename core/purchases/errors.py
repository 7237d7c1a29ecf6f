"""Errors of the purchases domain; each is a ``core.errors`` type, so the API's one table maps it to HTTP.

The subscribers decide on the type alone: a ``PermanentPurchaseError`` is recorded with its reason and not retried;
a ``StripeUnavailableError`` (Stripe 5xx, 429, a network failure) is raised so that Lambda's async retries, then the
on-failure destination, take the event again.
"""

from __future__ import annotations

from core.errors import MalformedRequestError, NotificationError, UpstreamError


class PermanentPurchaseError(NotificationError):
    """Retrying cannot help: an unknown or inactive promo code, an unknown customer, a request Stripe refuses.

    ``reason`` is a short machine-readable word (``invalid_code``, ``unknown_code``, ``inactive_code``,
    ``expired_code``, ``unknown_customer``, ``currency_mismatch``, ``stripe_refused``); the text says it for a person,
    never a secret.
    """

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        super().__init__(detail)


class StripeUnavailableError(UpstreamError):
    """Stripe answered 5xx or 429, or could not be reached: the same call may succeed later."""


class StripeIdempotencyError(StripeUnavailableError):
    """Stripe refused an idempotency key reused with other parameters (its ``IdempotencyError``, a 400).

    Retried, never recorded as a refusal: the key's first request may have credited the customer, and the credit's
    terms saved before that request are what every retry sends. Seeing one means those terms were not the ones sent
    first (a bug, or a key shared by mistake): it is logged on its own, for a person to look at.
    """


class StripeReplayedFailureError(StripeUnavailableError):
    """Stripe replayed the 5xx it answered an idempotency key's first request (``Idempotent-Replayed: true``).

    Stripe saves the result of any request that began executing, a 500 too, and answers it to every request with that
    key for 24 hours without running them: the first request is finished, not in flight, and the key will never
    credit. ``core.purchases.credit`` then looks for the credit that request may have made, and sends a new key only
    when there is none.
    """


class StripeEventObjectRefusedError(StripeUnavailableError):
    """Stripe refused to return the PaymentIntent or Checkout Session of a verified webhook event (404, another 4xx).

    Retried, never dropped: the event's signature proves Stripe sent it, and Stripe deletes neither, so a refusal says
    our side is wrong (a key of the other mode or of another account, a request Stripe refuses), as a 401 does. The
    queue's retries then its alarmed DLQ keep the event until that is fixed and it is redriven. ``reason`` is the
    refusal's (``unknown_payment_intent``, ``stripe_refused``…).
    """

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        super().__init__(detail)


class PublicationBusyError(UpstreamError):
    """Another attempt holds the claim to publish the payment's Purchase event (or published it a moment ago).

    Retried, never acknowledged: the attempt holding the claim may yet fail, and the message it came from may be this
    very one (SQS hands a message over twice; Stripe sends an event again when its first answer was late). The retry
    finds the event published, or the claim released or lapsed, and publishes it then.
    """


class StripeSignatureError(MalformedRequestError):
    """A Stripe webhook whose ``Stripe-Signature`` is missing, forged or outside the tolerance (400)."""
