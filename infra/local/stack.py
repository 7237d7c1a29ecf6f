"""``make run``: the whole service on this machine, in one foreground process that Ctrl-C stops cleanly."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import shutil
import signal
import subprocess
import sys
import threading
import time
import warnings
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import Any

import boto3
from botocore.config import Config

from infra.local import definition as definition_module
from infra.local import resources
from infra.local.config import ACCOUNT_ID, HOST, LOCAL_STRIPE_SECRET_KEY, ConfigError, LocalConfig
from infra.local.definition import DefinitionError, ScheduleEvent, ServiceDefinition, SnsEvent, SqsEvent
from infra.local.gateway import Gateway, GatewayServer
from infra.local.lock import RunLock, check_ports
from infra.local.logs import LogFollower
from infra.local.migrations import migrate
from infra.local.page import (
    AdminApi,
    LocalPage,
    MotoOutbox,
    find_notification,
    recent_notifications,
    recent_purchases,
)
from infra.local.peers import ReceiverServer, Records
from infra.local.pollers import ScheduleTimer, SnsPoller, SqsPoller, scheduled_event
from infra.local.postgres import PostgresError, embedded
from infra.local.schedules import Rate, ScheduleError, parse_schedule
from infra.local.seed import DEMO_PROMO_CODE, SeedError, curl_lines, seed, seed_purchases
from infra.local.snapshot import SnapshotError, Snapshots
from infra.local.websocket import DEMO_PREFIX, LocalRealtime, WebsocketApiError, start_websocket_api
from infra.local.workers import FunctionPool, function_env

_PRINT_LOCK = threading.Lock()


class StackError(Exception):
    """The stack could not start; the message is the one line the user reads."""


def say(line: str = "") -> None:
    """Print one line to the terminal, whole, whatever thread prints."""
    with _PRINT_LOCK:
        print(line, flush=True)


# What a libpq connection string holds that is secret.
_SECRET_DSN_KEYS = frozenset({"password", "sslpassword"})


def redacted(database_url: str | None) -> str | None:
    """Return what a libpq URL or DSN connects to, read by libpq itself (``key=value`` pairs), its secrets as ``***``;
    one libpq cannot read is not shown at all (libpq's error quotes the part it could not read)."""
    if database_url is None:
        return None
    from psycopg2 import ProgrammingError
    from psycopg2.extensions import parse_dsn

    try:
        parts = parse_dsn(database_url)
    except ProgrammingError:
        return "(set, but libpq cannot read it)"
    return " ".join(f"{key}={'***' if key in _SECRET_DSN_KEYS else value}" for key, value in sorted(parts.items()))


def event_line(line: str) -> None:
    """Print a timestamped line about something the stack did."""
    say(f"{datetime.now().strftime('%H:%M:%S')}  {line}")


class LocalStack:
    """Starts and stops every part of the local stack, in order."""

    def __init__(self, config: LocalConfig) -> None:
        self.config = config
        self.stop_event = threading.Event()
        self._lock = RunLock(config.state_dir / "run.lock")
        self._moto: Any = None
        self._postgres: Any = None
        self._servers: list[Any] = []
        self._postgres_thread: threading.Thread | None = None
        self._pools: dict[str, FunctionPool] = {}
        self._clients: dict[str, Any] = {}
        self._api_keys: tuple[float, dict[str, str]] = (0.0, {})
        self.database_url: str | None = config.database_url
        self.gateway: Gateway | None = None
        self.logs: LogFollower | None = None
        self._snapshots: Snapshots | None = None
        self._saver: threading.Thread | None = None
        self._realtime: LocalRealtime | None = None
        self._stripe: Any = None

    # --- helpers ---------------------------------------------------------------------------------------------------

    def client(self, service: str) -> Any:
        """Return a boto3 client of moto."""
        if service not in self._clients:
            self._clients[service] = boto3.session.Session().client(
                service,
                endpoint_url=self.config.aws_url,
                region_name=self.config.region,
                aws_access_key_id="local",
                aws_secret_access_key="local",  # noqa: S106 - moto takes any key
                config=Config(retries={"mode": "standard", "max_attempts": 2}, read_timeout=30),
            )
        return self._clients[service]

    def api_keys(self) -> dict[str, str]:
        """Return the valid API keys (value → id): ``LOCAL_API_KEY`` and the enabled keys of moto's API Gateway.

        The local key lives in the gateway because API Gateway (and moto) refuse keys under 20 characters, and the
        documented default is shorter. Keys created in moto are re-read at most every 2 s.
        """
        fetched, keys = self._api_keys
        if time.monotonic() - fetched > 2:
            items = self.client("apigateway").get_api_keys(includeValues=True, limit=500).get("items", [])
            keys = {item["value"]: item["id"] for item in items if item.get("enabled") and item.get("value")}
            self._api_keys = (time.monotonic(), keys)
        return {**keys, self.config.api_key: "local-api-key-id"}

    # --- start -----------------------------------------------------------------------------------------------------

    def _osls(self) -> Path:
        osls = self.config.root / "node_modules" / ".bin" / "osls"
        if osls.exists():
            return osls
        if not (self.config.root / "package-lock.json").is_file():
            raise StackError("package.json/package-lock.json are missing, so osls cannot be installed (npm ci)")
        say("  installing osls (npm ci)…")
        done = subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund"], cwd=self.config.root, capture_output=True, text=True, check=False
        )
        if done.returncode != 0 or not osls.exists():
            tail = (done.stderr.strip() or done.stdout.strip()).splitlines()[-1:] or ["no output"]
            raise StackError(f"npm ci failed: {tail[0]}")
        return osls

    def _start_postgres(self, result: dict[str, Any]) -> None:
        try:
            url = self._postgres.start() if self._postgres is not None else self.config.database_url
            self.database_url = url
            result["applied"] = migrate(url) if url else []
        except Exception as exc:
            result["error"] = exc

    def _start_moto(self) -> None:
        from moto.server import ThreadedMotoServer

        from infra.local.moto_dynamodb import serialize_writes
        from infra.local.moto_sqs import serialize_queues

        serialize_writes()  # the server answers on threads: a conditional write must be one step, as in DynamoDB
        serialize_queues()  # and a message in flight must go to one poller only, as in SQS
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self._moto = ThreadedMotoServer(ip_address=HOST, port=self.config.aws_port, verbose=False)
        self._moto.start()

    def _create_resources(self, service: ServiceDefinition) -> dict[str, Any]:
        from moto.cloudformation.parsing import get_model_map

        wanted: list[Any] = [spec.environment for spec in service.functions.values()]
        wanted += [event.arn for event in service.sqs] + [event.topic_arn for event in service.sns]
        wanted += [spec.on_failure for spec in service.functions.values() if spec.on_failure is not None]
        known = resources.function_values(service.template, service.region, ACCOUNT_ID)
        prepared = resources.prepare(service.template, set(get_model_map()), wanted, known)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                resolved = {
                    **known,
                    **resources.create_stack(
                        self.client("cloudformation"), f"{service.service}-{service.stage}", prepared
                    ),
                }
                created = resources.create_explicit(self.client, prepared, resolved)
            except resources.ResourceError as exc:
                raise StackError(str(exc)) from exc
        count = len(prepared.template["Resources"]) + len(created)
        say(f"  ✓ {count} resources created in moto from the CloudFormation template")
        if prepared.skipped:
            names = ", ".join(f"{name} ({kind.split('::', 1)[-1]})" for name, kind in sorted(prepared.skipped.items()))
            say(f"    left out (moto lacks them, or they refer to the API/functions played here): {names}")
        return resolved

    def _local_credentials(self, service: ServiceDefinition, envs: dict[str, dict[str, str]]) -> None:
        digest = hashlib.sha256(self.config.admin_token.encode()).hexdigest()
        for name in sorted(
            {env["ADMIN_TOKEN_HASH_PARAMETER"] for env in envs.values() if "ADMIN_TOKEN_HASH_PARAMETER" in env}
        ):
            self.client("ssm").put_parameter(Name=name, Value=digest, Type="SecureString", Overwrite=True)
        # The Stripe keys, where the functions read them as on AWS: any secret key opens the local Stripe server; the
        # webhook secret is the one the banner prints and the checkout one-liner signs with.
        stripe_secrets = {
            "STRIPE_SECRET_KEY_PARAMETER": LOCAL_STRIPE_SECRET_KEY,
            "STRIPE_WEBHOOK_SECRET_PARAMETER": self.config.stripe_webhook_secret,
        }
        for variable, value in stripe_secrets.items():
            for name in sorted({env[variable] for env in envs.values() if variable in env}):
                self.client("ssm").put_parameter(Name=name, Value=value, Type="SecureString", Overwrite=True)

    def _start_pools(self, service: ServiceDefinition, envs: dict[str, dict[str, str]]) -> None:
        extra = {"DATABASE_URL": self.database_url} if self.database_url else {}
        for key, spec in service.functions.items():
            env = function_env(
                spec, envs[key], self.config.aws_url, self.config.region, extra, log_level=self.config.log_level
            )
            log = self.config.logs_dir / f"{key}.log"
            log.write_bytes(b"")  # each run starts its function logs afresh
            self._pools[key] = FunctionPool(spec, env, self.config.root, log, self.config.max_concurrency)
        failures: dict[str, str] = {}

        def warm(key: str) -> None:
            try:
                self._pools[key].warm()
            except Exception as exc:
                failures[key] = str(exc)

        threads = [threading.Thread(target=warm, args=(key,)) for key in self._pools]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        say(f"  ✓ {len(self._pools) - len(failures)} of {len(self._pools)} functions warm, each in its own process")
        for key, error in sorted(failures.items()):
            say(f"    ✗ {error} (log: {self.config.logs_dir / f'{key}.log'})")
        # Each function log record as one readable terminal line, from here on.
        self.logs = LogFollower(self.config.logs_dir, self._pools, self.config.log_level, say)
        self.logs.start(self.stop_event)

    def _start_event_sources(self, service: ServiceDefinition, resolved: dict[str, Any]) -> list[str]:
        lines = [self._start_sqs(event, resolved) for event in service.sqs]
        lines += [self._start_sns(service, index, event, resolved) for index, event in enumerate(service.sns)]
        lines += [self._start_schedule(service, index, event) for index, event in enumerate(service.schedules)]
        return lines + [f"{item} (not played locally)" for item in service.unplayed]

    def _start_sqs(self, event: SqsEvent, resolved: dict[str, Any]) -> str:
        arn = str(resources.substitute(event.arn, resolved))
        name = arn.rsplit(":", 1)[-1]
        if not event.enabled:
            return f"{event.function} ← SQS {name} (disabled in the definition)"
        url = self.client("sqs").get_queue_url(QueueName=name)["QueueUrl"]
        pool = self._pools[event.function]
        # Lambda polls a queue with several pollers at once; up to the function's local concurrency here.
        for _ in range(max(1, self.config.max_concurrency)):
            SqsPoller(
                self.client("sqs"),
                url,
                arn,
                pool,
                event.batch_size,
                event.batching_window,
                event.report_failures,
                self.config.region,
                self.stop_event,
                event_line,
            ).start()
        failures = ", partial batch failures" if event.report_failures else ""
        return f"{event.function} ← SQS {name} (batch {event.batch_size}, window {event.batching_window:g} s{failures})"

    def _start_sns(self, service: ServiceDefinition, index: int, event: SnsEvent, resolved: dict[str, Any]) -> str:
        sqs, sns = self.client("sqs"), self.client("sns")
        topic_arn = str(resources.substitute(event.topic_arn, resolved))
        if topic_arn not in {topic["TopicArn"] for topic in sns.list_topics().get("Topics", [])}:
            sns.create_topic(Name=topic_arn.rsplit(":", 1)[-1])  # a topic from outside the service
        queue_name = f"{service.service}-{service.stage}-local-sns-{event.function}-{index}"
        queue = sqs.create_queue(QueueName=queue_name)["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        attributes = {}
        if event.filter_policy:
            attributes["FilterPolicy"] = json.dumps(event.filter_policy)
            if event.filter_policy_scope:
                attributes["FilterPolicyScope"] = event.filter_policy_scope
        subscription = sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn, Attributes=attributes)
        pool = self._pools[event.function]
        on_failure = pool.spec.on_failure
        failure_url = None
        if on_failure is not None:
            failure_name = str(resources.substitute(on_failure, resolved)).rsplit(":", 1)[-1]
            failure_url = sqs.get_queue_url(QueueName=failure_name)["QueueUrl"]
        SnsPoller(sqs, queue, subscription["SubscriptionArn"], pool, self.stop_event, event_line, failure_url).start()
        filtered = " (filtered)" if event.filter_policy else ""
        failures = f", on failure → {failure_url.rsplit('/', 1)[-1]}" if failure_url else ""
        return f"{event.function} ← SNS {topic_arn.rsplit(':', 1)[-1]}{filtered}{failures}"

    def _start_schedule(self, service: ServiceDefinition, index: int, event: ScheduleEvent) -> str:
        if not event.enabled:
            return f"{event.function} ← {event.expression} (disabled in the definition)"
        try:
            schedule = parse_schedule(event.expression)
        except ScheduleError as exc:
            raise StackError(f"{event.function}: {exc}") from exc
        played = event.expression
        if isinstance(schedule, Rate) and self.config.rate_seconds is not None:
            schedule = Rate(self.config.rate_seconds)
            played = f"{event.expression}, played every {self.config.rate_seconds} s (LOCAL_RATE_SECONDS)"
        rule_name = f"{service.service}-{service.stage}-{event.function}-schedule-{index}"
        rule = f"arn:aws:events:{self.config.region}:{ACCOUNT_ID}:rule/{rule_name}"
        region = self.config.region

        def make_event(moment: datetime) -> Any:
            if event.input is not None:
                return event.input
            return scheduled_event(rule, region, ACCOUNT_ID, moment)

        pool = self._pools[event.function]
        timer = ScheduleTimer(schedule, event.expression, pool, make_event, self.stop_event, event_line)
        timer.start()
        return f"{event.function} ← {played} (next {timer.next_firing():%Y-%m-%d %H:%M:%S} UTC)"

    def _serve(self, server: Any, name: str) -> None:
        self._servers.append(server)
        threading.Thread(target=server.serve_forever, name=name, daemon=True).start()

    def _claim(self) -> None:
        """Take the run lock, clean up after a killed run, and check the ports."""
        config = self.config
        config.state_dir.mkdir(parents=True, exist_ok=True)
        config.state_dir.chmod(0o755)
        config.logs_dir.mkdir(parents=True, exist_ok=True)
        self._lock.acquire()
        if self._lock.stale_pid:
            say(f"  (the run of PID {self._lock.stale_pid} ended without cleaning up; carrying on)")
        if config.database_url is None:
            self._postgres = embedded(config)
            try:
                self._postgres.stop_leftover()
            except PostgresError as exc:
                raise StackError(str(exc)) from exc
        if config.reset:
            self._reset()
        check_ports(config, with_postgres=config.database_url is None)

    def _reset(self) -> None:
        """Remove what earlier runs kept: the saved AWS state and the embedded PostgreSQL's data (``LOCAL_RESET=1``)."""
        config = self.config
        kept = (config.snapshot_dir, config.state_dir / "postgres", config.state_dir / "pgserver")
        removed = [path for path in kept if path.exists()]
        for path in removed:
            shutil.rmtree(path)
        names = ", ".join(str(path.relative_to(config.state_dir)) for path in removed) or "nothing was saved"
        say(f"  ✓ starting afresh (LOCAL_RESET=1): removed {names}")

    def _start_http(self, service: ServiceDefinition, envs: dict[str, dict[str, str]]) -> None:
        """Start the receiver and the gateway, with the local page on the gateway."""
        config = self.config
        records = Records()
        self._serve(ReceiverServer((HOST, config.receiver_port), records), "receiver")
        deliveries_table = next((env["DELIVERIES_TABLE"] for env in envs.values() if "DELIVERIES_TABLE" in env), None)
        purchases_table = next((env["PURCHASES_TABLE"] for env in envs.values() if "PURCHASES_TABLE" in env), None)
        assert self.logs is not None  # set by _start_pools, which runs first
        page = LocalPage(
            records,
            MotoOutbox(ACCOUNT_ID, config.region),
            (lambda: recent_notifications(self.client("dynamodb"), deliveries_table)) if deliveries_table else list,
            notification=(
                (lambda notification_id: find_notification(self.client("dynamodb"), deliveries_table, notification_id))
                if deliveries_table
                else None
            ),
            admin=AdminApi(config.api_url, config.admin_token),
            logs_for=self.logs.for_notification,
            purchases=(lambda: recent_purchases(self.client("dynamodb"), purchases_table)) if purchases_table else list,
        )
        gateway = Gateway(
            service.http,
            self._pools,
            self.api_keys,
            service.stage,
            config.region,
            ACCOUNT_ID,
            event_line,
            responses=service.gateway_responses,
        )
        gateway.local_routes["/_local/"] = page.serve
        self.gateway = gateway
        self._serve(GatewayServer((HOST, config.port), gateway), "gateway")

    def _restore_state(self) -> Snapshots:
        """Put the data of earlier runs back into the resources just created, before anything reads or writes them."""
        config = self.config
        self._snapshots = Snapshots(config.snapshot_dir, self.client, ACCOUNT_ID, config.region, event_line)
        restored = self._snapshots.restore()
        say(f"  {'✗' if self._snapshots.set_aside else '✓'} {restored}")
        return self._snapshots

    def _start_stripe(self) -> None:
        """Serve the local Stripe API the functions' Stripe SDK talks to (the stage's ``stripeApiBase``)."""
        from infra.local.stripe import StripeServerError, start_stripe_server

        try:
            self._stripe = start_stripe_server(HOST, self.config.stripe_port)
        except StripeServerError as exc:
            raise StackError(str(exc)) from exc

    def _start_realtime(self, service: ServiceDefinition) -> LocalRealtime:
        """Serve the WebSocket API and its Management API; return what the definition's references resolve to.

        After the restore, so that the signing keys of earlier runs are kept; before the functions' environments are
        resolved, since the WebSocket API's URLs are in them.
        """
        try:
            self._realtime = start_websocket_api(service, self._pools, self.config, event_line, self.client("ssm"))
        except WebsocketApiError as exc:
            raise StackError(str(exc)) from exc
        self._servers.append(self._realtime)
        return self._realtime

    def start(self) -> None:
        """Bring everything up; raise ``StackError``/``ConfigError`` with one line on failure."""
        started = time.monotonic()
        config = self.config
        self._claim()
        say("notify · local stack")
        postgres: dict[str, Any] = {}
        postgres_thread = threading.Thread(target=self._start_postgres, args=(postgres,), name="postgres", daemon=True)
        self._postgres_thread = postgres_thread
        postgres_thread.start()
        try:
            directory, ran = definition_module.package(config, self._osls())
            service = definition_module.load(directory, ACCOUNT_ID)
        except DefinitionError as exc:
            raise StackError(str(exc)) from exc
        cached = "" if ran else ", unchanged since last run"
        say(f"  ✓ definition packaged (osls package --stage {config.stage}{cached})")
        self._start_moto()
        say(f"  ✓ AWS (moto) on {config.aws_url}")
        self._start_stripe()
        say(f"  ✓ Stripe API (local) on {config.stripe_url}")
        resolved = self._create_resources(service)
        snapshots = self._restore_state()
        realtime = self._start_realtime(service)
        resolved.update(realtime.resolved)
        envs = {
            key: {name: str(value) for name, value in resources.substitute(spec.environment, resolved).items()}
            for key, spec in service.functions.items()
        }
        self._local_credentials(service, envs)
        postgres_thread.join()
        if "error" in postgres:
            error = postgres["error"]
            raise StackError(str(error) if isinstance(error, PostgresError) else f"PostgreSQL: {error}")
        applied = postgres.get("applied") or []
        where = "DATABASE_URL" if config.database_url else f"embedded, data in {config.state_dir / 'postgres'}"
        say(f"  ✓ PostgreSQL ({where}); migrations applied: {', '.join(applied) if applied else 'none pending'}")
        self._start_pools(service, envs)
        self._start_http(service, envs)
        sources = self._start_event_sources(service, resolved) + realtime.banner
        assert self.gateway is not None
        if realtime.demo is not None:
            self.gateway.local_routes[DEMO_PREFIX] = realtime.demo.serve
        self.gateway.set_serving()  # the routes answer; health says `starting` until the demo topic is there too
        demo_lines = self._seed() if config.seed else []
        self._saver = snapshots.run_periodic(self.stop_event)
        self._banner(service, sources, demo_lines, time.monotonic() - started)
        self.gateway.set_ready()  # after "Ready in": health answers 200 only once the banner is out

    def _seed(self) -> list[str]:
        """Create the demo topic, the purchase topic and the demo promotion; return the demo's curl lines."""
        try:
            lines = curl_lines(self.config, seed(self.config, self.client))
        except SeedError as exc:
            lines = [f"# the demo topic could not be created: {exc}"]
        try:
            seed_purchases(self.config)
        except SeedError as exc:
            lines.append(f"# the purchase topic or the demo promotion could not be created: {exc}")
        return lines

    def _banner(self, service: ServiceDefinition, sources: list[str], demo: list[str], took: float) -> None:
        config = self.config
        width = max(
            (len(route.event.path) for route in Gateway(service.http, {}, dict, "", "", "", say).table.routes),
            default=10,
        )
        say("")
        say(f"API           {config.api_url}   (PORT)")
        for event in service.http:
            guard = "API key" if event.private else ""
            if event.authorizer is not None:
                guard = f"authorizer {event.authorizer.function}" + (" + API key" if event.private else "")
            say(f"  {event.method:<7}{event.path:<{width}}  → {event.function:<16}{guard}".rstrip())
        say("events")
        for line in sources or ["(none)"]:
            say(f"  {line}")
        say(f"local keys    x-api-key: {config.api_key}   (LOCAL_API_KEY)")
        say(f"              Authorization: Bearer {config.admin_token}   (LOCAL_ADMIN_TOKEN)")
        say(f"local page    {config.api_url}/_local/")
        say(
            f"receiver      {config.receiver_url}  (/slack/…, /telegram/bot…/sendMessage, /webhook/…;"
            " ?status=500,200, ?rate=2, ?down=60 script its answers)"
        )
        say(
            f"Stripe        {config.stripe_url}  (LOCAL_STRIPE_PORT; any sk_ key)  webhook secret"
            f" {config.stripe_webhook_secret}  (LOCAL_STRIPE_WEBHOOK_SECRET)"
        )
        say(f"AWS (moto)    AWS_ENDPOINT_URL={config.aws_url}")
        shown = redacted(self.database_url) if config.database_url else self.database_url
        say(f"PostgreSQL    {shown}")
        say(f"logs          {config.logs_dir}/<function>.log")
        say(
            f"saved state   {config.snapshot_dir}: topics, ledger, queues, credentials kept across restarts"
            " (LOCAL_RESET=1 or make reset: start empty)"
        )
        if demo:
            say("")
            say("Try the demo topic (email, Slack, Telegram, webhook and push, all delivered locally):")
            for line in demo:
                say(f"  {line}")
        if config.seed:
            say("")
            say(
                f"Play a checkout (a PaymentIntent with promo code {DEMO_PROMO_CODE} and its signed webhook; then"
                " a balance credit and a notification on purchases/completed):"
            )
            say(f"  .venv/bin/python -m infra.local.checkout --promo {DEMO_PROMO_CODE}")
        say("")
        say(f"Ready in {took:.1f} s. Ctrl-C stops everything.")

    # --- stop ------------------------------------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop everything this run started, in reverse order; safe to call twice."""
        self.stop_event.set()
        for server in self._servers:
            with contextlib.suppress(Exception):
                server.shutdown()
                server.server_close()
        self._servers.clear()
        pools, self._pools = self._pools, {}
        for pool in pools.values():
            pool.close()
        # Nothing writes to moto any more: the last save, while moto still runs.
        if self._saver is not None:
            self._saver.join(30)
        if self._snapshots is not None and self._moto is not None:
            try:
                self._snapshots.save()
            except Exception as exc:  # the servers below must stop whatever the save raised
                reason = str(exc) if isinstance(exc, SnapshotError) else type(exc).__name__
                say(f"  ✗ the local AWS state was not saved: {reason}")
        if self._stripe is not None:
            with contextlib.suppress(Exception):
                self._stripe.stop()
            self._stripe = None
        if self._moto is not None:
            with contextlib.suppress(Exception):
                self._moto.stop()
            self._moto = None
        if self._postgres_thread is not None:
            self._postgres_thread.join(60)  # a server still starting must be up before it can be stopped
        if self._postgres is not None:
            with contextlib.suppress(Exception):
                self._postgres.stop()
            self._postgres = None
        self._lock.release()


def wait_for_stop(stop: threading.Event, slice_seconds: float = 0.5) -> None:
    """Wait until ``stop`` is set, in short slices: a signal the kernel hands to another of the process's threads only
    flags it, and Python runs its handler (which sets ``stop``) when the main thread next wakes; a wait with no timeout
    may never wake, and SIGTERM then stopped nothing."""
    while not stop.wait(slice_seconds):
        pass


class _Interrupted(Exception):
    """Ctrl-C or SIGTERM arrived while the stack was still starting."""


def main() -> int:
    """Run the local stack in the foreground until SIGINT/SIGTERM."""
    try:
        config = LocalConfig.from_env()
    except ConfigError as exc:
        say(f"make run: {exc}")
        return 2
    stack = LocalStack(config)
    starting = True

    def on_signal(number: int, _frame: FrameType | None) -> None:
        stack.stop_event.set()
        if starting:
            raise _Interrupted

    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, on_signal)
    try:
        stack.start()
        starting = False
    except (StackError, ConfigError) as exc:
        say(f"make run: {exc}")
        stack.stop()
        return 1
    except _Interrupted:
        say("\ninterrupted while starting; stopping what started…")
        stack.stop()
        say("stopped.")
        return 130
    except BaseException:
        stack.stop()
        raise
    try:
        wait_for_stop(stack.stop_event)
        say("\nstopping…")
    finally:
        stack.stop()
    say("stopped.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
