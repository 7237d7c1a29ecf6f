"""Idempotent publishing on powertools' idempotency utility, scoped to the caller's API key and the topic.

The utility is loaded on the first request that carries an ``Idempotency-Key``, so publishes without one never pay
for importing it at cold start.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from core.errors import ConflictError, UpstreamError
from core.fanout import KEY_REUSED
from core.observability import logger

Action = Callable[[], dict[str, Any]]
# Called with the answer of an action that ran when the store could not save it; must not raise.
Unsaved = Callable[[dict[str, Any]], None]


def _execute(request: dict[str, Any], action: Action) -> dict[str, Any]:
    return action()


class PublishInProgressError(ConflictError):
    """A request with this ``Idempotency-Key`` is still running (or died, and its record lapses at its deadline)."""

    def __init__(self) -> None:
        super().__init__("a request with this Idempotency-Key is still in progress; retry later")


class IdempotentPublisher:
    """Runs an action at most once per idempotency scope; a replay returns the first result.

    Parameters
    ----------
    client:
        A boto3 DynamoDB client.
    table_name:
        The idempotency table (partition key ``id``, TTL on ``expiration``).
    ttl_seconds:
        How long a result is replayed (24 h by default).
    """

    def __init__(self, client: Any, table_name: str, ttl_seconds: int = 86400) -> None:
        self._client = client
        self._table_name = table_name
        self._ttl_seconds = ttl_seconds
        self._context: Any = None
        self._config: Any = None
        self._run: Callable[..., dict[str, Any]] | None = None

    def _runner(self) -> Callable[..., dict[str, Any]]:
        if self._run is None:
            from aws_lambda_powertools.utilities.idempotency import (
                DynamoDBPersistenceLayer,
                IdempotencyConfig,
                idempotent_function,
            )

            self._config = IdempotencyConfig(
                event_key_jmespath="scope",
                payload_validation_jmespath="payload",
                expires_after_seconds=self._ttl_seconds,
                raise_on_no_idempotency_key=True,
            )
            persistence = DynamoDBPersistenceLayer(table_name=self._table_name, boto3_client=self._client)
            # A fixed prefix keeps keys stable when the function is renamed or redeployed under another name.
            self._run = idempotent_function(
                data_keyword_argument="request",
                persistence_store=persistence,
                config=self._config,
                key_prefix="publish",
            )(_execute)
        if self._context is not None:
            self._config.register_lambda_context(self._context)
        return self._run

    @property
    def ttl_seconds(self) -> int:
        """How long a result is replayed; a retry within it finishes the notification of the first attempt."""
        return self._ttl_seconds

    def register_context(self, context: Any) -> None:
        """Let an in-progress record expire with the invocation, so a timed-out publish can be retried."""
        self._context = context

    def run(self, scope: list[str], payload: str, action: Action, on_unsaved: Unsaved | None = None) -> dict[str, Any]:
        """Run ``action`` once for ``scope``; the same scope with another ``payload`` is a conflict.

        When the store cannot save the answer of an action that ran, the answer is returned all the same, once
        ``on_unsaved`` was called with it. The store's record then stays in progress (a retry is a conflict) until the
        invocation's deadline, after which a retry runs ``action`` again: ``on_unsaved`` is where the caller keeps what
        that run needs to answer the same and do nothing twice.
        """
        from aws_lambda_powertools.utilities.idempotency.exceptions import (
            IdempotencyAlreadyInProgressError,
            IdempotencyPersistenceLayerError,
            IdempotencyValidationError,
        )

        done: list[dict[str, Any]] = []

        def run_once() -> dict[str, Any]:
            outcome = action()
            done.append(outcome)
            return outcome

        try:
            result: dict[str, Any] = self._runner()(request={"scope": scope, "payload": payload}, action=run_once)
        except IdempotencyValidationError as exc:
            raise ConflictError(KEY_REUSED) from exc
        except IdempotencyAlreadyInProgressError as exc:
            raise PublishInProgressError from exc
        except IdempotencyPersistenceLayerError as exc:
            if done:
                # The publish ran: only its replay record was not saved. Its answer is the truth; a 502 would send
                # the caller to retry what is already enqueued.
                logger.warning("idempotency record of a finished publish not saved", extra={"reason": str(exc)})
                if on_unsaved is not None:
                    on_unsaved(done[0])
                return done[0]
            raise UpstreamError("the idempotency store failed") from exc
        return result
