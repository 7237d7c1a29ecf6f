"""Shared domain of the notification service: models, errors, settings, clients, stores, templates, fan-out."""
