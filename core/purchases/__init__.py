"""Purchases and Stripe: purchase events, promotions, balance credits, payments from Stripe webhooks."""
