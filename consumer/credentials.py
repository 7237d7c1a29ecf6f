"""Integration credentials read by reference from SSM through powertools parameters, cached between invocations."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from core.errors import PermanentDeliveryError, RetryableDeliveryError

_MISSING_CODES = frozenset({"ParameterNotFound", "ParameterVersionNotFound"})


class CredentialSource:
    """Returns the JSON object stored in a SecureString parameter.

    Parameters
    ----------
    provider:
        A powertools ``SSMProvider``; it keeps values for ``max_age`` seconds.
    max_age:
        Seconds a value is reused before SSM is asked again, so a rotated secret takes effect within that time.
    """

    def __init__(self, provider: Any, max_age: int) -> None:
        self._provider = provider
        self._max_age = max_age

    def get(self, ref: str) -> dict[str, Any]:
        """Return the credentials named ``ref``; missing or unreadable ones are permanent, SSM outages retryable."""
        # Importing these exceptions imports the whole parameters package (AppConfig too); the provider loaded it.
        from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError, TransformParameterError

        try:
            value = self._provider.get(ref, decrypt=True, transform="json", max_age=self._max_age)
        except TransformParameterError:
            raise PermanentDeliveryError("credentials are not a JSON object") from None
        except GetParameterError as exc:
            # powertools wraps the SSM error without chaining it explicitly; its context is the ClientError.
            cause = exc.__cause__ or exc.__context__
            code = cause.response["Error"]["Code"] if isinstance(cause, ClientError) else type(cause).__name__
            if code in _MISSING_CODES:
                raise PermanentDeliveryError("credentials are missing") from None
            if code in ("AccessDeniedException", "ValidationException", "ParameterVersionLabelLimitExceeded"):
                raise PermanentDeliveryError(f"credentials cannot be read ({code})") from None
            raise RetryableDeliveryError(f"reading credentials failed ({code})") from None
        if not isinstance(value, dict):
            raise PermanentDeliveryError("credentials are not a JSON object")
        return value
