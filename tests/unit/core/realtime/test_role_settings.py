"""Unit tests of the realtime roles' settings (core/realtime/settings.py): the token function, the WebSocket function,
and the browser part of the deliver function's."""

from __future__ import annotations

import pytest

from core.realtime.settings import RealtimeTokensSettings, WebsocketSettings
from core.roles.deliver import ChannelSettings
from core.settings import SettingsError, role_settings

BASE = {"STAGE": "prod", "AWS_REGION": "eu-west-1"}
KEYS = {"REALTIME_KEYS_PARAMETER": "/notify/prod/realtime/signing-keys"}
TOKENS = {**BASE, **KEYS, "REALTIME_URL": "wss://abc123.execute-api.eu-west-1.amazonaws.com/prod"}
WEBSOCKET = {**BASE, **KEYS, "CONNECTIONS_TABLE": "notify-prod-connections"}
DELIVER = {**BASE, "DELIVERIES_TABLE": "notify-prod-ledger"}


def test_realtime_roles_are_the_functions_of_serverless_yml() -> None:
    assert role_settings()["realtimeTokens"] is RealtimeTokensSettings
    assert role_settings()["websocket"] is WebsocketSettings


@pytest.mark.parametrize("variable", ["REALTIME_KEYS_PARAMETER", "REALTIME_URL"])
def test_token_settings_variable_unset_fails_naming_it(variable: str) -> None:
    env = {key: value for key, value in TOKENS.items() if key != variable}

    with pytest.raises(SettingsError, match=rf"{variable} is not set"):
        RealtimeTokensSettings.from_env(env)


def test_token_settings_default_lifetime_over_the_maximum_is_refused() -> None:
    env = {**TOKENS, "REALTIME_TOKEN_SECONDS": "7200", "REALTIME_TOKEN_MAX_SECONDS": "3600"}

    with pytest.raises(SettingsError, match="REALTIME_TOKEN_SECONDS must not exceed REALTIME_TOKEN_MAX_SECONDS"):
        RealtimeTokensSettings.from_env(env)


def test_token_settings_url_must_be_a_websocket_url() -> None:
    with pytest.raises(SettingsError, match="REALTIME_URL"):
        RealtimeTokensSettings.from_env({**TOKENS, "REALTIME_URL": "https://example.com"})


@pytest.mark.parametrize("variable", ["CONNECTIONS_TABLE", "REALTIME_KEYS_PARAMETER"])
def test_websocket_settings_variable_unset_fails_naming_it(variable: str) -> None:
    env = {key: value for key, value in WEBSOCKET.items() if key != variable}

    with pytest.raises(SettingsError, match=rf"{variable} is not set"):
        WebsocketSettings.from_env(env)


def test_channel_settings_without_browser_settings_start() -> None:
    settings = ChannelSettings.from_env(DELIVER)

    assert (settings.connections_table, settings.realtime_management_url) == (None, None)


def test_channel_settings_with_one_browser_setting_only_fail_naming_the_other() -> None:
    with pytest.raises(SettingsError, match="REALTIME_MANAGEMENT_URL is not set"):
        ChannelSettings.from_env({**DELIVER, "CONNECTIONS_TABLE": "notify-prod-connections"})
