"""Settings of each function role, parsed once from the environment into a frozen model built from mixins.

This module holds the base and the loader. The mixins of resources several roles share are ``core/roles/shared.py``
(the purchase tables ``core/purchases/tables.py``); each spine role (publish, the management API, the authorizer, the
consumer) is a module of ``core/roles/`` with the mixins only it uses, and each later domain's roles are its own
``settings`` module (``core/audience/``, ``core/purchases/``, ``core/realtime/``): a function defines only the models
of its own role at its cold start.

A role's model holds what that function needs and no more: real resource names (tables, queue URLs, parameter names)
are required and have no default, so a function deployed without one fails its cold start naming the variable;
tunables have defaults. Field aliases are the environment variables. Only handlers and ``core/clients.py`` read
settings; this module is the only one that reads ``os.environ``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Self, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

# The stage whose functions may send to loopback and private addresses: the local stack's (DESIGN.md).
LOCAL_STAGE = "local"
# Set by the local stack (infra/local/workers.py) in every function it runs, never in serverless.yml.
LOCAL_STACK_MARKER = "NOTIFY_LOCAL_STACK"
# The longest a rotated admin token keeps working: API Gateway's authorizer result cache plus the authorizer's own
# cache of the token hash (serverless.yml custom.adminAuthorizer, ADMIN_TOKEN_CACHE_SECONDS).
ADMIN_TOKEN_ROTATION_SECONDS = 60


class SettingsError(Exception):
    """The environment does not configure this function; the message names every variable missing or invalid."""


def _problem(error: Mapping[str, Any]) -> str:
    where = ".".join(str(part) for part in error["loc"])
    if error["type"] == "missing":
        return f"{where} is not set"
    message = str(error["msg"]).removeprefix("Value error, ")
    # Only the variable and the rule: the value itself might be a secret.
    return f"{where}: {message}" if where else message


class FunctionSettings(BaseModel):
    """What every function knows: its stage and region. The base of every mixin and role."""

    # Built on first use: a function validates its one role, so the mixins and the other roles are never built.
    model_config = ConfigDict(frozen=True, extra="ignore", defer_build=True)

    stage: str = Field(alias="STAGE", min_length=1)
    aws_region: str = Field(alias="AWS_REGION", min_length=1)

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Self:
        """Build the settings from an environment mapping; an empty variable counts as unset.

        Raises
        ------
        SettingsError
            A required variable is not set or a value is invalid; the message names the variables, not the values.
        """
        try:
            return cls.model_validate({key: value for key, value in environ.items() if value != ""})
        except ValidationError as exc:
            problems = "; ".join(_problem(error) for error in exc.errors(include_url=False, include_input=False))
            raise SettingsError(f"{cls.__name__}: {problems}") from None


S = TypeVar("S", bound=FunctionSettings)
_loaded: dict[type[FunctionSettings], FunctionSettings] = {}


def load_settings(model: type[S]) -> S:
    """Return this process's settings of ``model``, parsed from ``os.environ`` the first time (the cold start).

    Raises
    ------
    SettingsError
        The environment lacks a variable the model requires, or has an invalid one; nothing is cached then.
    """
    found = _loaded.get(model)
    if found is None:
        found = _loaded[model] = model.from_env(os.environ)
    assert isinstance(found, model)
    return found


def clear_settings() -> None:
    """Forget every parsed settings model; tests call it (through ``core.clients.reset``) after changing the env."""
    _loaded.clear()


def role_settings() -> dict[str, type[FunctionSettings]]:
    """Return the settings model of each function of serverless.yml, by its key there (the deploy checks parse each
    packaged environment with it). The domains' roles are imported here, at the call: a function imports its own
    role's module only, and defines no other role's models at its cold start."""
    from core.audience.settings import AudienceSettings, CronSettings, ExpandSettings
    from core.purchases.settings import (
        PaymentWorkerSettings,
        PurchaseNotifySettings,
        StripeCreditSettings,
        StripeWebhookSettings,
    )
    from core.realtime.settings import RealtimeTokensSettings, WebsocketSettings
    from core.roles.api import ApiSettings
    from core.roles.authorizer import AuthorizerSettings
    from core.roles.deliver import DeliverSettings
    from core.roles.publish import PublishSettings

    return {
        "publish": PublishSettings,
        "api": ApiSettings,
        "adminAuthorizer": AuthorizerSettings,
        "deliver": DeliverSettings,
        "realtimeTokens": RealtimeTokensSettings,
        "websocket": WebsocketSettings,
        "stripeCredit": StripeCreditSettings,
        "purchaseNotify": PurchaseNotifySettings,
        "stripeWebhook": StripeWebhookSettings,
        "paymentWorker": PaymentWorkerSettings,
        "audience": AudienceSettings,
        "cron": CronSettings,
        "expand": ExpandSettings,
    }
