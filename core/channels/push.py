"""Mobile push through SNS ``publish`` to a platform endpoint or a topic, with a payload per platform."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from typing import Annotated, Any, ClassVar, Literal, NamedTuple

from botocore.exceptions import ClientError
from pydantic import Field, field_validator, model_validator

from core.channels.base import (
    Channel,
    DeliveryReceipt,
    IntegrationBase,
    Limit,
    aws_failure,
    destination_key,
    json_shape,
    limit_at,
    parse_settings,
    render_text_or_data,
    require_text,
)
from core.errors import (
    AWS_ERRORS,
    ContentTooLongError,
    EndpointDisabledError,
    PermanentDeliveryError,
    TemplateError,
    UnsendableContentError,
)
from core.models import Content, IntegrationType
from core.templates import variables
from core.validation import Strict, refuse_at

SNS_ARN_PATTERN = r"^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:.+$"
SNS_ARN_RULE = "must be an SNS ARN: arn:aws:sns:<region>:<12-digit account>:<name>"

# SNS names Firebase Cloud Messaging "GCM"; "FCM" is accepted as its alias.
PLATFORM_ALIASES = {"FCM": "GCM"}
# The platforms a payload is built for: SNS picks the one of the endpoint's platform application.
PUSH_PLATFORMS = ("APNS", "APNS_SANDBOX", "GCM")
# The keys of a message structure whose value is a JSON object, which SNS takes JSON-encoded into a string. Values
# are inserted into its strings, never into its JSON text, where a quote would break it or add keys. The other keys
# take text: ``default``, a topic's protocols (``email``, ``sqs``, ``sms``, …), and MPNS and WNS (XML).
JSON_PLATFORMS = frozenset(
    {"APNS", "APNS_SANDBOX", "APNS_VOIP", "APNS_VOIP_SANDBOX", "MACOS", "MACOS_SANDBOX", "GCM", "ADM", "BAIDU"}
)
# The most bytes of payload a platform takes, counted as SNS gets it (JSON, UTF-8): APNs 4096 (5120 for VoIP),
# FCM 4096. Over it SNS refuses the publish with a bare InvalidParameter, or the platform drops the notification.
PLATFORM_PAYLOAD_BYTES: Mapping[str, int] = {
    "APNS": 4096,
    "APNS_SANDBOX": 4096,
    "APNS_VOIP": 5120,
    "APNS_VOIP_SANDBOX": 5120,
    "MACOS": 4096,
    "MACOS_SANDBOX": 4096,
    "GCM": 4096,
}
ELLIPSIS = "…"


def platform_limit(key: str) -> int | None:
    """The most bytes of payload the platform of a message structure's key takes (``FCM`` naming GCM), if known."""
    return PLATFORM_PAYLOAD_BYTES.get(PLATFORM_ALIASES.get(key, key))


_JSON_NAMES = {list: "an array", str: "a string", int: "a number", float: "a number", bool: "a boolean"}
# What a 422 says of a platform's payload that holds no JSON object, after why it holds none.
PAYLOAD_RULE = (
    'write the platform\'s payload as a JSON object, e.g. {"aps": {"alert": "$text"}}; a string must hold one, '
    "each placeholder inside a JSON string"
)


class PushTarget(Strict):
    """An SNS platform endpoint or an SNS topic: exactly one of the two."""

    endpoint_arn: str | None = Field(default=None, pattern=SNS_ARN_PATTERN)
    topic_arn: str | None = Field(default=None, pattern=SNS_ARN_PATTERN)

    @model_validator(mode="after")
    def _exactly_one(self) -> PushTarget:
        if self.endpoint_arn is None and self.topic_arn is None:
            raise ValueError("needs endpoint_arn (an SNS platform endpoint) or topic_arn (an SNS topic)")
        if self.endpoint_arn is not None and self.topic_arn is not None:
            raise ValueError("must hold endpoint_arn or topic_arn, not both")
        return self


class PushIntegration(IntegrationBase):
    """Mobile push through SNS: one platform endpoint or a topic."""

    type: Literal[IntegrationType.PUSH]
    target: PushTarget
    model: Annotated[
        str | dict[str, Any],
        json_shape((str, dict), "a template string or a JSON object with one payload per platform"),
    ]

    @field_validator("model")
    @classmethod
    def _platform_objects(cls, model: str | dict[str, Any]) -> str | dict[str, Any]:
        """Store each platform payload written as a JSON string (AWS's examples' form) as the object it holds, so
        that values are inserted into its strings and encoded by ``json``; refuse one holding no JSON object, at its
        key: stored, its values would be inserted raw into JSON text, which a quote breaks or adds keys to."""
        if isinstance(model, str):
            return model
        read: dict[str, Any] = {}
        for key, value in model.items():
            template = _payload_template(key, value)
            if isinstance(template, _Unreadable):
                rule = f"must be a JSON object ({template.reason}): {PAYLOAD_RULE}"
                refuse_at((key,), "platform_payload", rule, value, cls.__name__)
            read[key] = template
        return read


class _Unreadable(NamedTuple):
    """A platform payload written as a string that holds no JSON object, and why."""

    reason: str


class _NotJsonError(ValueError):
    """A word Python's ``json`` reads that JSON has not (NaN, Infinity): APNs and FCM refuse it."""


def _refuse_constant(name: str) -> Any:
    raise _NotJsonError(f"{name} is not a JSON number")


def _json_object(text: str) -> dict[str, Any] | _Unreadable:
    """Return the JSON object ``text`` holds, or why it holds none, in words that quote none of it."""
    try:
        value = json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        return _Unreadable(f"{exc.msg} at character {exc.pos + 1}")
    except _NotJsonError as exc:
        return _Unreadable(str(exc))
    except ValueError:  # an integer of thousands of digits, more than Python converts
        return _Unreadable("it holds a number too long")
    except RecursionError:
        return _Unreadable("it is nested too deeply")
    if not isinstance(value, dict):
        return _Unreadable(f"it holds {_JSON_NAMES.get(type(value), 'null')}")
    return value


def _one_placeholder(text: str) -> bool:
    """Whether ``text`` is exactly ``$name`` or ``${name}``: it renders to the value, typed (an object, say)."""
    try:
        names = variables(text)
    except TemplateError:
        return False
    return len(names) == 1 and text in {f"${name}" for name in names} | {f"${{{name}}}" for name in names}


def _payload_template(key: str, value: Any) -> Any:
    """Return a model's value as it is rendered: a JSON platform's payload written as a string, the object it holds."""
    if PLATFORM_ALIASES.get(key, key) not in JSON_PLATFORMS or not isinstance(value, str) or _one_placeholder(value):
        return value
    return _json_object(value)


_ENDPOINT_DELETED = " (the endpoint is deleted: its device was unregistered or removed, or registered by another user)"


def _endpoint_gone(exc: ClientError) -> str | None:
    """The code of an SNS answer saying a platform endpoint takes no more pushes: ``EndpointDisabled``, or one saying it
    does not exist (``NotFound``; ``InvalidParameter`` "No endpoint found for the target arn"); else ``None``."""
    error = exc.response.get("Error", {})
    code, message = str(error.get("Code", "")), str(error.get("Message", ""))
    if code in ("EndpointDisabled", "NotFound"):
        return code
    if code == "InvalidParameter" and "no endpoint found" in message.lower():
        return "NotFound"
    return None


def _encoded(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _size(payload: Any) -> int:
    return len(_encoded(payload).encode())


def _cut(text: str, fits: Callable[[str], bool], most: int) -> str:
    """Return the longest start of ``text`` that ``fits`` with an ellipsis marking the cut ("" if not even that).

    ``most`` bounds the characters kept (a character takes a byte at least), so a long text is never encoded whole
    for each try; the search tries log2(most) cuts.
    """
    if not text or not fits(ELLIPSIS):
        return ""
    low, high = 0, min(len(text) - 1, most)
    while low < high:
        middle = (low + high + 1) // 2
        if fits(text[:middle] + ELLIPSIS):
            low = middle
        else:
            high = middle - 1
    return text[:low] + ELLIPSIS


def _fitted(
    build: Callable[[str, str | None], dict[str, Any]], text: str, title: str | None, limit: int
) -> dict[str, Any]:
    """Return ``build(text, title)`` cut, as Slack and Telegram cut text, to take at most ``limit`` bytes as JSON.

    The body is cut; the title too when it takes more than half of the room, so that the body keeps the other half.
    Sizes are measured on the encoded JSON, as SNS and the platform count them: a quote is 2 bytes, an é 2.
    """
    payload = build(text, title)
    if _size(payload) <= limit:
        return payload
    if title and _size(build("", title)) > limit // 2:
        title = _cut(title, lambda cut: _size(build("", cut)) <= limit // 2, limit)
    text = _cut(text, lambda cut: _size(build(cut, title)) <= limit, limit)
    return build(text, title)


def apns_payload(text: str, title: str | None = None) -> dict[str, Any]:
    """Return the APNs payload of a text: an alert with its title when there is one, cut to fit APNs' 4096 bytes."""

    def build(body: str, head: str | None) -> dict[str, Any]:
        return {"aps": {"alert": {"title": head, "body": body} if head else body}}

    return _fitted(build, text, title, PLATFORM_PAYLOAD_BYTES["APNS"])


def fcm_payload(text: str, title: str | None = None, data: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Return the payload SNS takes for GCM endpoints today: the FCM HTTP v1 shape (``fcmV1Message``), its
    notification cut to fit FCM's 4096 bytes.

    FCM's ``data`` holds strings only: other values are sent as their JSON text.
    """
    strings = {key: value if isinstance(value, str) else _encoded(value) for key, value in (data or {}).items()}

    def build(body: str, head: str | None) -> dict[str, Any]:
        message: dict[str, Any] = {"notification": {"title": head, "body": body} if head else {"body": body}}
        if strings:
            message["data"] = strings
        return {"fcmV1Message": {"message": message}}

    return _fitted(build, text, title, PLATFORM_PAYLOAD_BYTES["GCM"])


def platform_payloads(
    text: str, title: str | None = None, overrides: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Return one payload object per platform and the ``default`` text: what ``Content.data`` carries for a push.

    Built once for every recipient of a send: the objects are JSON-encoded only by ``push_payload``, once, when the
    message is published (the seed encoded them again for every recipient after the first). ``overrides`` replaces
    a platform's payload (``{"APNS": {…}, "GCM": {…}}``, ``FCM`` naming GCM); an ``APNS`` one serves the sandbox too
    unless ``APNS_SANDBOX`` is given. The payloads built from the text are cut to fit their platform; ``default``,
    which SNS gives a topic's other protocols (email, SQS), is the whole text.
    """
    given = {PLATFORM_ALIASES.get(key, key): value for key, value in (overrides or {}).items()}
    apns = given["APNS"] if "APNS" in given else apns_payload(text, title)
    return {
        "default": text,
        "APNS": apns,
        "APNS_SANDBOX": given.get("APNS_SANDBOX", apns),
        "GCM": given["GCM"] if "GCM" in given else fcm_payload(text, title),
    }


def _platform_payload(platform: str, payload: Any) -> str:
    """Return a platform's payload JSON-encoded once, as SNS wants it; raise ``PermanentDeliveryError`` for one that
    is no JSON object or is over its platform's limit: refused here by name, not by SNS with a bare InvalidParameter.

    A string (rendered by an earlier version, or a metadata value standing for the whole payload) is parsed, so what
    is published is always one JSON object encoded by ``json``.
    """
    if platform in JSON_PLATFORMS and isinstance(payload, str):
        parsed = _json_object(payload)
        if isinstance(parsed, _Unreadable):
            raise PermanentDeliveryError(f"push: the {platform} payload is not a JSON object ({parsed.reason})")
        payload = parsed
    elif platform in JSON_PLATFORMS and not isinstance(payload, dict):
        # A metadata value standing for the whole payload: a number, an array, true or null is no object either.
        held = _JSON_NAMES.get(type(payload), "null")
        raise PermanentDeliveryError(f"push: the {platform} payload is not a JSON object (it holds {held})")
    encoded = _encoded(payload)
    limit = platform_limit(platform)
    if limit is not None and (size := len(encoded.encode())) > limit:
        raise PermanentDeliveryError(
            f"push: the {platform} payload takes {size} bytes as JSON, more than the {limit} its platform takes"
        )
    return encoded


def push_payload(content: Content) -> str:
    """Return the SNS ``MessageStructure=json`` message: a ``default`` text and one payload per platform.

    A rendered string becomes an alert on APNS and APNS_SANDBOX and a notification body on GCM (FCM HTTP v1,
    ``fcmV1Message``), cut to fit each platform; a rendered object is taken as given (``{"default": …, "APNS": {…},
    "GCM": {…}}``), each platform's value JSON-encoded once as SNS wants. Raise ``PermanentDeliveryError`` when a
    platform's payload is no JSON object or too large for its platform.
    """
    if isinstance(content.data, Mapping):
        structure: dict[str, str] = {}
        for key, value in content.data.items():
            platform = PLATFORM_ALIASES.get(str(key), str(key))
            structure[platform] = _platform_payload(platform, value)
        if "default" not in structure:
            structure["default"] = content.text or next(iter(structure.values()), "")
        return json.dumps(structure, separators=(",", ":"), ensure_ascii=False)
    if content.data is not None or not content.text:
        raise PermanentDeliveryError("push: content must be text or a per-platform object")
    structure = {
        key: _platform_payload(key, value) for key, value in platform_payloads(content.text, content.subject).items()
    }
    return json.dumps(structure, separators=(",", ":"), ensure_ascii=False)


class PushChannel(Channel):
    """Publishes to an SNS platform endpoint or topic; a disabled endpoint is permanent.

    No provider rate is declared: SNS's publish quota is far above what one consumer sends. Sizes are: the message is
    at most ``max_message_bytes`` (SNS's 256 KiB), each platform's payload at most its ``platform_payload_bytes``
    (text is cut to fit it, a payload given whole that is over it fails the delivery, naming it).
    """

    type: ClassVar[str] = IntegrationType.PUSH.value
    integration_model = PushIntegration
    max_message_bytes: ClassVar[int] = 256 * 1024
    platform_payload_bytes: ClassVar[Mapping[str, int]] = PLATFORM_PAYLOAD_BYTES

    @classmethod
    def render(cls, model: Any, values: Mapping[str, Any]) -> Content:
        """Render a string model into text and a per-platform object into data, values inserted as they are.

        A platform payload stored as a JSON string (saved before they were stored as objects) is rendered as the
        object it holds; one holding none is refused (``UnsendableContentError``: the publish is a 422 saying why), and
        its values never reach JSON text.
        """
        if not isinstance(model, Mapping):
            content = render_text_or_data(model, values)
        else:
            templates = {key: _payload_template(key, value) for key, value in model.items()}
            readable = {key: value for key, value in templates.items() if not isinstance(value, _Unreadable)}
            rendered = render_text_or_data(readable, values).data
            content = Content(data={key: rendered[key] if key in readable else model[key] for key in model})
        cls._check(content)
        return content

    @classmethod
    def _check(cls, content: Content) -> None:
        """Refuse what ``send`` would refuse whatever SNS answered: no text, a payload its platform refuses, a message
        over SNS's size (each was accepted, then failed every delivery)."""
        if content.data is None:
            require_text(content.text, spaces=True)
        try:
            message = push_payload(content)
        except PermanentDeliveryError as exc:
            raise UnsendableContentError(exc.reason.removeprefix("push: ")) from None
        if (size := len(message.encode())) > cls.max_message_bytes:
            raise ContentTooLongError(
                f"the push message takes {size} bytes with this metadata (its text and each platform's payload); SNS "
                f"takes at most {cls.max_message_bytes // 1024} KiB"
            )

    def rate_limits(
        self, target: Mapping[str, Any], credentials: Mapping[str, Any] | None, rate_per_second: float | None
    ) -> list[Limit]:
        """Return the integration's own rate on its endpoint or topic, or nothing when it has none."""
        where = parse_settings(PushTarget, target, "target")
        return limit_at(destination_key("push", where.endpoint_arn or where.topic_arn or ""), None, rate_per_second)

    def send(
        self,
        content: Content,
        target: Mapping[str, Any],
        credentials: Mapping[str, Any] | None,
        *,
        notification_id: str,
        delivery_key: str,
    ) -> DeliveryReceipt:
        """Publish the payload; throttling and SNS outages are retryable, ``EndpointDisabled`` permanent."""
        where = parse_settings(PushTarget, target, "target")
        message = push_payload(content)
        if len(message.encode()) > self.max_message_bytes:
            raise PermanentDeliveryError(f"push: message exceeds {self.max_message_bytes // 1024} KiB")
        destination = {"TargetArn": where.endpoint_arn} if where.endpoint_arn else {"TopicArn": where.topic_arn}
        asked_at = time.time()
        try:
            response = self._resources.aws_client("sns").publish(
                Message=message, MessageStructure="json", **destination
            )
        except ClientError as exc:
            gone = _endpoint_gone(exc)
            if where.endpoint_arn and gone is not None:
                # The device is gone (app uninstalled, token expired), or its endpoint is (deleted, with its platform
                # application): permanent, and its device is to be disabled, not sent to again at every send.
                reason = f"push: {gone}" + (_ENDPOINT_DELETED if gone == "NotFound" else "")
                raise EndpointDisabledError(reason, where.endpoint_arn, asked_at) from exc
            raise aws_failure(exc, "push") from exc
        except AWS_ERRORS as exc:  # transport errors, and an answer botocore cannot read
            raise aws_failure(exc, "push") from exc
        return DeliveryReceipt(response.get("MessageId"))
