"""Settings of the local stack, read once from the environment of ``make run``."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
ACCOUNT_ID = "123456789012"
# The local Stripe server takes any secret key; the functions read this one from SSM as they would Stripe's.
LOCAL_STRIPE_SECRET_KEY = "sk_test_local"  # noqa: S105 - a local placeholder, not a secret
# What the local stage's Stripe webhook route checks signatures with (LOCAL_STRIPE_WEBHOOK_SECRET overrides it).
LOCAL_STRIPE_WEBHOOK_SECRET = "whsec_local_notify"  # noqa: S105 - the documented local default


class ConfigError(Exception):
    """A setting of the local stack is not usable; the message says which and what to do."""


def _port(environ: Mapping[str, str], name: str, default: int) -> int:
    raw = environ.get(name, "")
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name}={raw!r} is not a port number") from exc
    if not 0 < value < 65536:
        raise ConfigError(f"{name}={raw!r} is not a port number")
    return value


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _log_level(raw: str) -> str:
    level = raw.strip().upper() or "INFO"
    if level == "WARN":
        level = "WARNING"
    if level not in LOG_LEVELS:
        raise ConfigError(f"LOCAL_LOG_LEVEL={raw!r} is not one of {', '.join(LOG_LEVELS)}")
    return level


def parse_params(raw: str) -> dict[str, str]:
    """Parse ``LOCAL_PARAMS`` (``name=value`` pairs separated by commas or spaces) into a dict."""
    params: dict[str, str] = {}
    for item in raw.replace(",", " ").split():
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise ConfigError(f"LOCAL_PARAMS item {item!r} is not name=value")
        params[name] = value
    return params


@dataclass(frozen=True)
class LocalConfig:
    """Ports, paths, keys and overrides of one local stack."""

    root: Path
    state_dir: Path
    port: int
    receiver_port: int
    aws_port: int
    postgres_port: int
    stripe_port: int
    api_key: str
    admin_token: str
    database_url: str | None
    params: dict[str, str] = field(default_factory=dict)
    stage: str = "local"
    region: str = "us-east-1"
    max_concurrency: int = 3
    seed: bool = True
    reset: bool = False
    log_level: str = "INFO"
    stripe_webhook_secret: str = ""
    # Every rate() schedule played this often instead (LOCAL_RATE_SECONDS): the cron within seconds, for tests.
    rate_seconds: int | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> LocalConfig:
        """Read the configuration: ``PORT`` and the ``LOCAL_*`` variables, with the defaults of DESIGN.md."""
        port = _port(environ, "PORT", 3000)
        state = Path(environ.get("LOCAL_STATE_DIR") or ROOT / ".local").resolve()
        try:
            concurrency = max(1, int(environ.get("LOCAL_MAX_CONCURRENCY") or 3))
        except ValueError as exc:
            raise ConfigError("LOCAL_MAX_CONCURRENCY must be a whole number") from exc
        rate = environ.get("LOCAL_RATE_SECONDS") or ""
        if rate and not re.fullmatch(r"[1-9][0-9]{0,4}", rate):
            raise ConfigError("LOCAL_RATE_SECONDS must be a whole number of seconds, 1 to 99999")
        return cls(
            root=ROOT,
            state_dir=state,
            port=port,
            receiver_port=_port(environ, "LOCAL_RECEIVER_PORT", port + 1),
            aws_port=_port(environ, "LOCAL_AWS_PORT", port + 2),
            postgres_port=_port(environ, "LOCAL_POSTGRES_PORT", port + 3),
            stripe_port=_port(environ, "LOCAL_STRIPE_PORT", port + 4),
            stripe_webhook_secret=environ.get("LOCAL_STRIPE_WEBHOOK_SECRET") or LOCAL_STRIPE_WEBHOOK_SECRET,
            api_key=environ.get("LOCAL_API_KEY") or "local-api-key",
            admin_token=environ.get("LOCAL_ADMIN_TOKEN") or "local-admin-token",
            database_url=environ.get("DATABASE_URL") or None,
            params=parse_params(environ.get("LOCAL_PARAMS", "")),
            max_concurrency=concurrency,
            seed=environ.get("LOCAL_SEED", "1") not in {"0", "false", "no"},
            reset=environ.get("LOCAL_RESET", "0") not in {"", "0", "false", "no"},
            log_level=_log_level(environ.get("LOCAL_LOG_LEVEL", "")),
            rate_seconds=int(rate) if rate else None,
        )

    @property
    def api_url(self) -> str:
        """Base URL of the local API Gateway."""
        return f"http://{HOST}:{self.port}"

    @property
    def receiver_url(self) -> str:
        """Base URL of the local Slack/Telegram/webhook receiver."""
        return f"http://{HOST}:{self.receiver_port}"

    @property
    def stripe_url(self) -> str:
        """Base URL of the local Stripe API server."""
        return f"http://{HOST}:{self.stripe_port}"

    @property
    def aws_url(self) -> str:
        """Endpoint of moto, the local AWS."""
        return f"http://{HOST}:{self.aws_port}"

    @property
    def logs_dir(self) -> Path:
        """Where each function's log goes."""
        return self.state_dir / "logs"

    @property
    def snapshot_dir(self) -> Path:
        """Where the local AWS state is kept between runs (``LOCAL_RESET=1`` or ``make reset`` starts afresh)."""
        return self.state_dir / "aws"

    def package_params(self) -> dict[str, str]:
        """Stage params handed to ``osls package``: the receiver as Telegram's API, then the user's overrides."""
        return {"telegramApiBase": f"{self.receiver_url}/telegram", "stripeApiBase": self.stripe_url, **self.params}
