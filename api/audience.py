"""Lambda adapter of the audience routes (DESIGN.md "Audience", and the apps of "Administration"): users, their
devices and subscriptions, segments, and the mobile apps devices register with.

A function of its own, so that psycopg2 ships only here; it loads when the first query connects
(``core/audience/connection.py``), never at import.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from pydantic import Field

from core.audience.devices import delete_app, delete_user, register_device, unregister_device
from core.audience.models import (
    MAX_USER_ID_BYTES,
    App,
    AppRequest,
    AudienceRequest,
    Device,
    DeviceRequest,
    Platform,
    Segment,
    User,
    UserRequest,
)
from core.audience.ports import AudienceRepositoryPort, ScheduleStorePort, SendStorePort
from core.audience.schedules import Schedule, ScheduleList, cancel_schedule, get_schedule, list_schedules
from core.audience.segments import compile_where, parse_where
from core.audience.sends import SendAccepted, SendRequest, accept_send
from core.audience.settings import AudienceSettings
from core.clients import (
    get_audience_repository,
    get_database,
    get_expansion_queue,
    get_ledger,
    get_push_endpoints,
)
from core.errors import InvalidRequestError
from core.http import (
    IDEMPOTENCY_KEY_HEADER,
    Request,
    Response,
    RouteDoc,
    Router,
    caller_id,
    checked_idempotency_key,
    json_response,
    parse_body,
)
from core.ids import idempotent_notification_id, new_notification_id
from core.observability import logger, metrics, remaining_time, tracer
from core.settings import load_settings
from core.validation import LONE_SURROGATE, NAME_PATTERN, NAME_RULE, Reply

app = Router()
# The routes of /v1/apps/{app} take a parameter named as the contract names it, which hides ``app`` in them.
_ROUTER = app

# The repository's rule for a user id (users_id_check, and no NUL: PostgreSQL text cannot hold one), and no character a
# delivery message cannot carry (core.validation.UNSENDABLE): the id is in each of the user's delivery keys, so it is
# bounded in UTF-8 bytes too (``MAX_USER_ID_BYTES``, checked by ``check``: a pattern counts characters). A lone
# surrogate (no UTF-8 at all) is refused by ``check`` before any pattern.
USER_ID_PATTERN = r"^[^\x00\ufffe\uffff]{1,256}$"
USER_ID_RULE = (
    f"must be 1 to 256 characters and at most {MAX_USER_ID_BYTES} bytes of UTF-8, without NUL, U+FFFE, U+FFFF or "
    "lone surrogates (U+D800-U+DFFF)"
)
DEVICE_ID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
DEVICE_ID_RULE = "is not a device id (a UUID as registration returned it)"
# POST /v1/segments/count is a resource of its own in API Gateway: a segment of that name could never be read.
RESERVED_SEGMENT_NAMES = frozenset({"count"})
_PATTERNS = {
    "user_id": (re.compile(USER_ID_PATTERN), USER_ID_RULE),
    "device_id": (re.compile(DEVICE_ID_PATTERN), DEVICE_ID_RULE),
    "channel": (re.compile(NAME_PATTERN), f"is not a valid name: {NAME_RULE}"),
    "topic": (re.compile(NAME_PATTERN), f"is not a valid name: {NAME_RULE}"),
    "name": (re.compile(NAME_PATTERN), f"is not a valid name: {NAME_RULE}"),
    "app": (re.compile(NAME_PATTERN), f"is not a valid name: {NAME_RULE}"),
}
USER = {"user_id": USER_ID_PATTERN}
DEVICE = {**USER, "device_id": DEVICE_ID_PATTERN}
SUBSCRIPTION = {**USER, "channel": NAME_PATTERN, "topic": NAME_PATTERN}
SEGMENT = {"name": NAME_PATTERN}
APP = {"app": NAME_PATTERN}
# Every route may fail on the database (502); an API key route is refused by API Gateway with 403.
KEY_ERRORS = (403, 502)
ADMIN_ERRORS = (401, 403, 502)
BODY_ERRORS = (400, 413, 422)


class DeviceResponse(Reply):
    """A device as the routes show it: the push token and its SNS endpoint stay inside the service."""

    device_id: str
    app: str
    platform: Platform
    enabled: bool = Field(description="False once SNS said the endpoint is disabled; registering again enables it.")
    last_seen: datetime
    created_at: datetime


class DeviceListResponse(Reply):
    """A user's devices, oldest first."""

    devices: list[DeviceResponse]


class SubscriptionResponse(Reply):
    """A channel/topic a user is subscribed to: a publish there reaches the user's devices too."""

    channel: str
    topic: str
    created_at: datetime


class SubscriptionListResponse(Reply):
    """A user's subscriptions, by channel and topic."""

    subscriptions: list[SubscriptionResponse]


class UserResponse(Reply):
    """A user; read alone (``GET``), with its devices and subscriptions."""

    user_id: str
    timezone: str
    email: str | None
    telegram_chat_id: str | None
    data: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    devices: list[DeviceResponse]
    subscriptions: list[SubscriptionResponse]


class AppDeletionResponse(Reply):
    """An app whose devices a call could not all delete in its time: how many it deleted; the app is still there."""

    devices_deleted: int
    message: str


class AppListResponse(Reply):
    """Every app, by name."""

    apps: list[App]


class SegmentRequest(AudienceRequest):
    """The body of ``PUT /v1/segments/{name}`` and ``POST /v1/segments/count``: a condition on users."""

    where: Any = Field(
        description='A condition `{"field": "<data path>", "<op>": value}` (op: eq, ne, in, gt, gte, lt, lte, '
        'exists; `timezone` is a field too), or `{"and": […]}`, `{"or": […]}`, `{"not": …}`.'
    )


class SegmentResponse(Reply):
    """A named segment and its condition."""

    name: str
    where: Any
    created_at: datetime
    updated_at: datetime


class CountResponse(Reply):
    """How many users a condition matches now."""

    count: int


def settings() -> AudienceSettings:
    """Return this function's settings, parsed at the container's first invocation; a missing variable fails it."""
    return load_settings(AudienceSettings)


def repository() -> AudienceRepositoryPort:
    """Return the audience repository on this container's database connection."""
    return get_audience_repository(settings())


def sends() -> SendStorePort:
    """Return the sends' store: the audience repository on this container's database connection."""
    return get_audience_repository(settings())


def schedules() -> ScheduleStorePort:
    """Return the schedules store: the audience repository on this container's database connection."""
    return get_audience_repository(settings())


def check(**parameters: str) -> None:
    """Raise naming the first path parameter that does not have its form."""
    for field, value in parameters.items():
        pattern, rule = _PATTERNS[field]
        if LONE_SURROGATE.search(value) or not pattern.fullmatch(value):
            raise InvalidRequestError(field, rule)
        if field == "user_id" and len(value.encode()) > MAX_USER_ID_BYTES:
            raise InvalidRequestError(field, rule)


def device_view(device: Device) -> dict[str, Any]:
    """Return a device as the routes show it."""
    return DeviceResponse.model_validate(device, from_attributes=True).model_dump(mode="json")


def user_view(user: User) -> dict[str, Any]:
    """Return a user as the routes show it, with its devices and subscriptions."""
    body = user.model_dump(mode="json", exclude={"devices", "subscriptions"})
    body["devices"] = [device_view(device) for device in user.devices]
    body["subscriptions"] = [
        SubscriptionResponse.model_validate(item, from_attributes=True).model_dump(mode="json")
        for item in user.subscriptions
    ]
    return body


def segment_view(segment: Segment) -> dict[str, Any]:
    """Return a segment as the routes show it."""
    return SegmentResponse(
        name=segment.name,
        where=segment.definition.get("where"),
        created_at=segment.created_at,
        updated_at=segment.updated_at,
    ).model_dump(mode="json")


# Users


@app.put(
    "/v1/users/<user_id>",
    RouteDoc(
        {200: UserResponse, 201: UserResponse},
        errors=(*BODY_ERRORS, *KEY_ERRORS),
        security="api_key",
        request=UserRequest,
        patterns=USER,
    ),
)
def put_user(user_id: str) -> Response:
    """Create (201) or replace (200) a user: time zone, addresses, and the data segments match on."""
    check(user_id=user_id)
    request = parse_body(app.current_event.decoded_body, UserRequest)
    user, created = repository().put_user(user_id, request)
    if not created:
        # A replaced user keeps its devices and subscriptions: the response shows them.
        user = repository().get_user(user_id)
    return json_response(201 if created else 200, user_view(user))


@app.get(
    "/v1/users/<user_id>",
    RouteDoc({200: UserResponse}, errors=(404, 422, *KEY_ERRORS), security="api_key", patterns=USER),
)
def get_user(user_id: str) -> Response:
    """Show a user with its devices and subscriptions."""
    check(user_id=user_id)
    return json_response(200, user_view(repository().get_user(user_id)))


@app.delete(
    "/v1/users/<user_id>",
    RouteDoc({204: None}, errors=(404, 422, *KEY_ERRORS), security="api_key", patterns=USER),
)
def delete_user_route(user_id: str) -> Response:
    """Delete a user with its devices (their SNS endpoints too) and subscriptions; deliveries to them already queued
    are not sent."""
    check(user_id=user_id)
    config = settings()
    delete_user(user_id, repository(), get_push_endpoints(config.aws_region), get_ledger(config))
    return Response(status_code=204)


# Devices


@app.post(
    "/v1/users/<user_id>/devices",
    RouteDoc(
        {200: DeviceResponse, 201: DeviceResponse},
        errors=(404, *BODY_ERRORS, *KEY_ERRORS),
        security="api_key",
        request=DeviceRequest,
        patterns=USER,
    ),
)
def post_device(user_id: str) -> Response:
    """Register an app's push token for a user (201); the same token again is the same device (200), moved to this
    user if it was another's. A user keeps its 100 most recently seen devices (disabled ones go first)."""
    check(user_id=user_id)
    request = parse_body(app.current_event.decoded_body, DeviceRequest)
    registration = register_device(user_id, request, repository(), get_push_endpoints(settings().aws_region))
    return json_response(201 if registration.created else 200, device_view(registration.device))


@app.get(
    "/v1/users/<user_id>/devices",
    RouteDoc({200: DeviceListResponse}, errors=(404, 422, *KEY_ERRORS), security="api_key", patterns=USER),
)
def list_devices(user_id: str) -> Response:
    """List a user's devices, oldest first."""
    check(user_id=user_id)
    return json_response(200, {"devices": [device_view(device) for device in repository().list_devices(user_id)]})


@app.delete(
    "/v1/users/<user_id>/devices/<device_id>",
    RouteDoc({204: None}, errors=(404, 422, *KEY_ERRORS), security="api_key", patterns=DEVICE),
)
def delete_device(user_id: str, device_id: str) -> Response:
    """Unregister a device: it is deleted with its SNS endpoint."""
    check(user_id=user_id, device_id=device_id)
    unregister_device(user_id, device_id, repository(), get_push_endpoints(settings().aws_region))
    return Response(status_code=204)


# Subscriptions


@app.put(
    "/v1/users/<user_id>/subscriptions/<channel>/<topic>",
    RouteDoc({204: None}, errors=(404, 409, 422, *KEY_ERRORS), security="api_key", patterns=SUBSCRIPTION),
)
def put_subscription(user_id: str, channel: str, topic: str) -> Response:
    """Subscribe a user to a channel/topic (subscribing twice is one subscription); a user has at most 2,000 (409)."""
    check(user_id=user_id, channel=channel, topic=topic)
    repository().put_subscription(user_id, channel, topic)
    return Response(status_code=204)


@app.delete(
    "/v1/users/<user_id>/subscriptions/<channel>/<topic>",
    RouteDoc({204: None}, errors=(404, 422, *KEY_ERRORS), security="api_key", patterns=SUBSCRIPTION),
)
def delete_subscription(user_id: str, channel: str, topic: str) -> Response:
    """Unsubscribe a user from a channel/topic."""
    check(user_id=user_id, channel=channel, topic=topic)
    repository().delete_subscription(user_id, channel, topic)
    return Response(status_code=204)


@app.get(
    "/v1/users/<user_id>/subscriptions",
    RouteDoc({200: SubscriptionListResponse}, errors=(404, 422, *KEY_ERRORS), security="api_key", patterns=USER),
)
def list_subscriptions(user_id: str) -> Response:
    """List a user's subscriptions, by channel and topic."""
    check(user_id=user_id)
    subscriptions = repository().list_subscriptions(user_id)
    return json_response(
        200,
        {
            "subscriptions": [
                SubscriptionResponse.model_validate(item, from_attributes=True).model_dump(mode="json")
                for item in subscriptions
            ]
        },
    )


# Segments


@app.post(
    "/v1/segments/count",
    RouteDoc({200: CountResponse}, errors=(*BODY_ERRORS, *KEY_ERRORS), security="api_key", request=SegmentRequest),
)
def count_segment() -> Response:
    """Count the users a condition matches now: a segment's preview."""
    request = parse_body(app.current_event.decoded_body, SegmentRequest)
    condition = compile_where(parse_where(request.where, "where"))
    return json_response(200, {"count": repository().count_users(condition)})


@app.put(
    "/v1/segments/<name>",
    RouteDoc(
        {200: SegmentResponse, 201: SegmentResponse},
        errors=(*BODY_ERRORS, *KEY_ERRORS),
        security="api_key",
        request=SegmentRequest,
        patterns=SEGMENT,
    ),
)
def put_segment(name: str) -> Response:
    """Create (201) or replace (200) a named segment; its condition is checked before it is stored."""
    check(name=name)
    if name in RESERVED_SEGMENT_NAMES:
        raise InvalidRequestError("name", f"{name!r} is reserved (POST /v1/segments/count)")
    request = parse_body(app.current_event.decoded_body, SegmentRequest)
    parse_where(request.where, "where")
    segment, created = repository().put_segment(name, {"where": request.where})
    return json_response(201 if created else 200, segment_view(segment))


@app.get(
    "/v1/segments/<name>",
    RouteDoc({200: SegmentResponse}, errors=(404, 422, *KEY_ERRORS), security="api_key", patterns=SEGMENT),
)
def get_segment(name: str) -> Response:
    """Show a named segment."""
    check(name=name)
    return json_response(200, segment_view(repository().get_segment(name)))


@app.delete(
    "/v1/segments/<name>",
    RouteDoc({204: None}, errors=(404, 409, 422, *KEY_ERRORS), security="api_key", patterns=SEGMENT),
)
def delete_segment(name: str) -> Response:
    """Delete a named segment; 409 while a send to it has not ended."""
    check(name=name)
    repository().delete_segment(name)
    return Response(status_code=204)


# Apps (admin)


@app.put(
    "/v1/apps/<app>",
    RouteDoc(
        {200: App, 201: App},
        errors=(*BODY_ERRORS, 409, *ADMIN_ERRORS),
        security="admin",
        request=AppRequest,
        patterns=APP,
    ),
)
def put_app(app: str) -> Response:
    """Create (201) or replace (200) a mobile app: the SNS platform application its devices' endpoints go on."""
    check(app=app)
    request = parse_body(_ROUTER.current_event.decoded_body, AppRequest)
    get_push_endpoints(settings().aws_region).check_application(request.platform_application_arn)
    stored, created = repository().put_app(app, request)
    return json_response(201 if created else 200, stored.model_dump(mode="json"))


@app.get("/v1/apps/<app>", RouteDoc({200: App}, errors=(404, 422, *ADMIN_ERRORS), security="admin", patterns=APP))
def get_app(app: str) -> Response:
    """Show a mobile app."""
    check(app=app)
    return json_response(200, repository().get_app(app).model_dump(mode="json"))


@app.delete(
    "/v1/apps/<app>",
    RouteDoc({204: None, 202: AppDeletionResponse}, errors=(404, 422, *ADMIN_ERRORS), security="admin", patterns=APP),
)
def delete_app_route(app: str) -> Response:
    """Delete a mobile app and its devices, with their SNS endpoints (the platform application itself stays): 204
    once done; 202 when the call's time ran out first, the app and its other devices still there (DELETE again)."""
    check(app=app)
    deletion = delete_app(app, repository(), get_push_endpoints(settings().aws_region), _ROUTER.time_left())
    if deletion.done:
        return Response(status_code=204)
    message = f"{deletion.devices} devices deleted; the app has more: DELETE it again to go on"
    return json_response(202, {"devices_deleted": deletion.devices, "message": message})


@app.get("/v1/apps", RouteDoc({200: AppListResponse}, errors=ADMIN_ERRORS, security="admin"))
def list_apps() -> Response:
    """List every mobile app, by name."""
    return json_response(200, {"apps": [item.model_dump(mode="json") for item in repository().list_apps()]})


# Sends

# The route's declaration: registered on ``app`` (``@app.post(SENDS_PATH, SENDS_DOC)`` on a one-line route calling
# ``send_response(app.current_event)``) together with its ``http`` event in serverless.yml, which tests/unit/
# test_routes.py keeps equal to the served routes.
SENDS_PATH = "/v1/sends"
SENDS_DOC = RouteDoc(
    {202: SendAccepted},
    errors=(409, *BODY_ERRORS, *KEY_ERRORS),
    security="api_key",
    request=SendRequest,
    headers=(IDEMPOTENCY_KEY_HEADER,),
)


def send_response(event: Request) -> Response:
    """``POST /v1/sends`` (202): the send recorded and handed to the expansion worker, or scheduled with ``at``."""
    request = parse_body(event.decoded_body, SendRequest)
    caller = caller_id(event.identity)
    key = checked_idempotency_key(event.headers.get("idempotency-key"))
    # The same key from the same caller names the same notification: its send is recorded once.
    notification_id = idempotent_notification_id(["send", caller, key]) if key else new_notification_id()
    accepted = accept_send(
        request,
        sends(),
        get_expansion_queue(settings()),
        datetime.now(UTC),
        notification_id,
        caller=caller,
        ledger=get_ledger(settings()),
    )
    # A scheduled send's notification exists only once it fires: until then, its schedule is what there is to see.
    location = (
        f"/v1/schedules/{accepted.schedule_id}"
        if accepted.schedule_id is not None
        else f"/v1/notifications/{accepted.notification_id}"
    )
    return json_response(
        202,
        accepted.model_dump(mode="json", exclude_none=True),
        {"Location": location, "X-Notification-Id": accepted.notification_id},
    )


@app.post(SENDS_PATH, SENDS_DOC)
def post_send() -> Response:
    """Accept a send (202): recorded and handed to the expansion worker, or scheduled with ``at``."""
    return send_response(app.current_event)


# Schedules


@app.get(
    "/v1/schedules",
    RouteDoc({200: ScheduleList}, errors=(422, *KEY_ERRORS), security="api_key", query=("status", "cursor")),
)
def list_schedules_route() -> Response:
    """List scheduled sends, newest first, optionally of one status; ``next`` pages on."""
    query = app.current_event.query_string_parameters or {}
    caller = caller_id(app.current_event.identity)
    page = list_schedules(schedules(), query.get("status"), query.get("cursor"), caller=caller)
    return json_response(200, page.model_dump(mode="json"))


@app.get(
    "/v1/schedules/<schedule_id>",
    RouteDoc({200: Schedule}, errors=(404, *KEY_ERRORS), security="api_key"),
)
def get_schedule_route(schedule_id: str) -> Response:
    """Show a scheduled send: its next firing, the zones done, attempts and last error (404: another key's)."""
    schedule = get_schedule(schedules(), schedule_id, caller_id(app.current_event.identity))
    return json_response(200, schedule.model_dump(mode="json"))


@app.delete(
    "/v1/schedules/<schedule_id>",
    RouteDoc({204: None}, errors=(404, 409, *KEY_ERRORS), security="api_key"),
)
def cancel_schedule_route(schedule_id: str) -> Response:
    """Cancel a scheduled send (204): it is never sent; 409 once it was sent or while a run sends it; 404: another
    key's."""
    cancel_schedule(schedules(), schedule_id, caller_id(app.current_event.identity))
    return Response(status_code=204)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Entry point of the audience function."""
    get_database(settings()).bound_to(remaining_time(context) if context is not None else None)
    return app.resolve(event, context)
