"""Settings mixins of the purchases domain's tables, which the management API reads too: apart from the purchase
functions' roles (``core/purchases/settings.py``), so that the API defines none of those at its cold start, and the
functions of no purchase table define these."""

from __future__ import annotations

from pydantic import Field

from core.settings import FunctionSettings


class PromotionsSettings(FunctionSettings):
    """The promotions table (promo codes and the credit each earns)."""

    promotions_table: str = Field(alias="PROMOTIONS_TABLE", min_length=1)


class PurchasesSettings(FunctionSettings):
    """The purchases table: per purchase, the Stripe balance credit (or why none) and the purchase notification."""

    purchases_table: str = Field(alias="PURCHASES_TABLE", min_length=1)


class PaymentsSettings(FunctionSettings):
    """The payments table: payments taken in from Stripe webhooks, with the Stripe event ids recorded for each."""

    payments_table: str = Field(alias="PAYMENTS_TABLE", min_length=1)
