"""Settings mixins of the resources several roles share, the domains' roles too: the topics table, the ledger, the
delivery queue and its dead-letter queue, and outbound HTTP."""

from __future__ import annotations

from typing import Self

from pydantic import Field, model_validator

from core.settings import LOCAL_STACK_MARKER, LOCAL_STAGE, FunctionSettings


class TopicsSettings(FunctionSettings):
    """The topics table and how long a read topic is reused."""

    topics_table: str = Field(alias="TOPICS_TABLE", min_length=1)
    topic_cache_ttl_seconds: float = Field(default=30.0, ge=0, alias="TOPIC_CACHE_TTL_SECONDS")


class LedgerSettings(FunctionSettings):
    """The delivery ledger table and how long its rows live."""

    deliveries_table: str = Field(alias="DELIVERIES_TABLE", min_length=1)
    ledger_ttl_days: int = Field(default=30, ge=1, alias="LEDGER_TTL_DAYS")


class DeliveryQueueSettings(FunctionSettings):
    """The delivery queue."""

    delivery_queue_url: str = Field(alias="DELIVERY_QUEUE_URL", min_length=1)


class DeadLetterQueueSettings(FunctionSettings):
    """The delivery queue's dead-letter queue."""

    dead_letter_queue_url: str = Field(alias="DEAD_LETTER_QUEUE_URL", min_length=1)


class OutboundSettings(FunctionSettings):
    """Outbound HTTP of deliveries: timeouts, concurrency, the Telegram API, and the SSRF guard's one switch.

    ``ALLOW_PRIVATE_TARGETS=true`` is refused inside Lambda unless this is the local stack: with the guard off, a
    webhook URL could reach the Lambda runtime API on 127.0.0.1:9001 or anything in the VPC. Inside Lambda means
    ``AWS_LAMBDA_FUNCTION_NAME`` is set (tests and scripts set none). The local stack is told apart by ``STAGE=local``
    and its marker ``NOTIFY_LOCAL_STACK=1``, and by the absence of what only the real runtime sets
    (``AWS_EXECUTION_ENV``, ``AWS_LAMBDA_RUNTIME_API``; reserved, a deploy cannot set or unset them): a Lambda of
    stage ``local`` deployed to AWS is refused too.
    """

    http_connect_timeout: float = Field(default=3.05, gt=0, alias="HTTP_CONNECT_TIMEOUT")
    http_read_timeout: float = Field(default=10.0, gt=0, alias="HTTP_READ_TIMEOUT")
    delivery_concurrency: int = Field(default=10, ge=1, alias="DELIVERY_CONCURRENCY")
    telegram_api_base: str = Field(default="https://api.telegram.org", pattern=r"^https?://", alias="TELEGRAM_API_BASE")
    allow_private_targets: bool = Field(default=False, alias="ALLOW_PRIVATE_TARGETS")
    lambda_function_name: str | None = Field(default=None, alias="AWS_LAMBDA_FUNCTION_NAME")
    lambda_execution_env: str | None = Field(default=None, alias="AWS_EXECUTION_ENV")
    lambda_runtime_api: str | None = Field(default=None, alias="AWS_LAMBDA_RUNTIME_API")
    local_stack: bool = Field(default=False, alias=LOCAL_STACK_MARKER)

    @property
    def on_local_stack(self) -> bool:
        """Tell whether this function runs on the local stack (``make run``), not in AWS."""
        real_runtime = self.lambda_execution_env is not None or self.lambda_runtime_api is not None
        return self.stage == LOCAL_STAGE and self.local_stack and not real_runtime

    @model_validator(mode="after")
    def _private_targets_only_locally(self) -> Self:
        inside_lambda = self.lambda_function_name is not None
        if self.allow_private_targets and inside_lambda and not self.on_local_stack:
            raise ValueError(
                "ALLOW_PRIVATE_TARGETS=true is refused inside Lambda: loopback and private targets are allowed on "
                f"the local stack only (STAGE={LOCAL_STAGE} under make run); this is stage {self.stage!r}"
            )
        return self
