"""The one translation of psycopg2's errors into the service's domain errors (``core/errors.py``).

Decided by SQLSTATE and constraint name, never by message text; a message never carries the error's DETAIL, which
quotes the row's values.
"""

from __future__ import annotations

from collections.abc import Callable

from core.errors import ConflictError, InvalidRequestError, NotFoundError, NotificationError, UpstreamError

# A violated constraint → the error a caller sees. Names as spelled in infra/migrations/.
# Factories, not instances: a raised exception keeps its traceback, so each raise gets a fresh one.
_FOREIGN_KEYS: dict[str, Callable[[], NotificationError]] = {
    "devices_app_fkey": lambda: InvalidRequestError("app", "no app of that name is registered"),
    "devices_user_id_fkey": lambda: NotFoundError("the user does not exist"),
    "subscriptions_user_id_fkey": lambda: NotFoundError("the user does not exist"),
}
_UNIQUE: dict[str, str] = {
    "devices_app_token_key": "the token is already registered for this app",
    "sends_notification_id_key": "a send of this notification already exists",
}
_CHECKS: dict[str, tuple[str, str]] = {
    "users_id_check": ("user_id", "must be 1 to 256 characters"),
    "users_timezone_check": ("timezone", "must be 1 to 64 characters"),
    "users_data_check": ("data", "must be a JSON object"),
    "apps_platform_check": ("platform", "must be APNS, APNS_SANDBOX or GCM"),
}
UNIQUE_VIOLATION = "23505"
FOREIGN_KEY_VIOLATION = "23503"
CHECK_VIOLATION = "23514"
NOT_NULL_VIOLATION = "23502"
# Class 22, data exceptions: a value PostgreSQL cannot take (a NUL character in text, a number out of range…).
DATA_EXCEPTION_CLASS = "22"
# A statement cancelled, here by its statement_timeout (core/audience/connection.py Database.bound_to).
QUERY_CANCELED = "57014"


def database_error(exc: Exception, action: str) -> NotificationError:
    """Return the domain error of a failed database call; raise it ``from exc``.

    A unique violation is a ``ConflictError``; a foreign key, check or data error an ``InvalidRequestError`` naming
    the field when the constraint tells it (an unknown ``app``), or ``NotFoundError`` for a missing user; anything
    else (no connection, a timeout, a server going away, a deadlock) an ``UpstreamError`` the caller may retry.
    """
    import psycopg2

    code = getattr(exc, "pgcode", None) or ""
    diag = getattr(exc, "diag", None)
    constraint = (getattr(diag, "constraint_name", None) or "") if diag is not None else ""
    if isinstance(exc, psycopg2.IntegrityError) or code.startswith("23"):
        if code == UNIQUE_VIOLATION:
            return ConflictError(_UNIQUE.get(constraint, f"{action} conflicts with what is stored"))
        if code == FOREIGN_KEY_VIOLATION and constraint in _FOREIGN_KEYS:
            return _FOREIGN_KEYS[constraint]()
        if code == CHECK_VIOLATION and constraint in _CHECKS:
            return InvalidRequestError(*_CHECKS[constraint])
        return InvalidRequestError("", f"{action}: the values break a rule of the store ({code or 'integrity'})")
    if code.startswith(DATA_EXCEPTION_CLASS):
        return InvalidRequestError("", f"{action}: a value cannot be stored ({code})")
    if code == QUERY_CANCELED:
        return UpstreamError(f"{action} took longer than the time left to this request; the database cancelled it")
    return UpstreamError(f"{action} failed ({code or type(exc).__name__})")
