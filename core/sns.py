"""Amazon SNS HTTPS deliveries: the message, its signature (versions 1 and 2), and the SNS URLs it points to.

SNS signs a canonical string of a message's fields with the key of a certificate it serves at ``SigningCertURL``.
That certificate is trusted for where it comes from: it is fetched only over HTTPS from SNS's regional endpoint of the
topic's own region (``TRUSTED_HOST``, the region of ``TopicArn``), so TLS vouches for it, and it must be issued to
``sns.amazonaws.com``, as AWS's own SDKs verify. A host merely starting with ``sns.`` is not enough: S3 serves any
bucket, one named ``sns`` too, at ``sns.s3.amazonaws.com``. ``SubscribeURL`` is followed only on that host too.
``cryptography`` is imported on the first verification, so the publish route never pays for it.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections import OrderedDict
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal
from urllib.parse import parse_qs, urlsplit

from pydantic import BaseModel, ConfigDict, Field, StrictStr

from core.errors import BlockedTargetError, SnsEndpointError, SnsMessageError, SnsSignatureError
from core.http import RouteDoc
from core.models import PublishResponse

if TYPE_CHECKING:
    import requests
    from cryptography.x509 import Certificate

# SNS's regional endpoints (``sns.eu-west-1.amazonaws.com``, ``sns.us-gov-west-1.amazonaws.com``,
# ``sns.cn-north-1.amazonaws.com.cn``): the only hosts a signing certificate is fetched from and a subscription is
# confirmed on. The label must be shaped as a region: ``sns.s3.amazonaws.com`` is an S3 bucket named ``sns``.
TRUSTED_HOST = re.compile(r"sns\.(?P<region>[a-z]{2}(?:-gov|-iso[a-z]?)?-[a-z]+-\d)\.amazonaws\.com(?:\.cn)?")
# ``arn:<partition>:sns:<region>:<account>:<topic>``
_TOPIC_ARN = re.compile(r"arn:[a-z-]+:sns:(?P<region>[a-z0-9-]+):\d{12}:[A-Za-z0-9_.-]+")
# The subject of SNS's signing certificates, whatever the region.
CERTIFICATE_NAME = "sns.amazonaws.com"
# A URL is checked as written: printable ASCII, no spaces nor backslashes, which parsers split differently.
_PLAIN_URL = re.compile(r"[!-\[\]-~]+")
# The signed fields of each message type, in the order of the canonical string (AWS: "Verifying the signatures of
# Amazon SNS messages"); ``Subject`` is signed only when the message has one.
SIGNED_FIELDS: Mapping[str, tuple[str, ...]] = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
    "UnsubscribeConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
}
OPTIONAL_FIELDS = frozenset({"Subject"})
# SignatureVersion "1" signs with SHA1withRSA, "2" with SHA256withRSA (RSA PKCS#1 v1.5).
SIGNATURE_VERSIONS = ("1", "2")
MAX_FETCH_BYTES = 64 * 1024
FETCH_TIMEOUT = (3.05, 5.0)
CERTIFICATE_CACHE_SIZE = 16

Fetch = Callable[[str], bytes]
Clock = Callable[[], datetime]


class SnsMessage(BaseModel):
    """An SNS HTTPS delivery's body: a notification, or a subscription's confirmation (un)subscribing."""

    model_config = ConfigDict(frozen=True, defer_build=True, extra="ignore")

    type: Literal["Notification", "SubscriptionConfirmation", "UnsubscribeConfirmation"] = Field(alias="Type")
    message_id: StrictStr = Field(alias="MessageId", min_length=1)
    topic_arn: StrictStr = Field(alias="TopicArn", min_length=1)
    message: StrictStr = Field(alias="Message")
    timestamp: StrictStr = Field(alias="Timestamp", min_length=1)
    signature_version: StrictStr = Field(alias="SignatureVersion")
    signature: StrictStr = Field(alias="Signature", min_length=1)
    signing_cert_url: StrictStr = Field(alias="SigningCertURL", min_length=1)
    subject: StrictStr | None = Field(default=None, alias="Subject")
    token: StrictStr | None = Field(default=None, alias="Token")
    subscribe_url: StrictStr | None = Field(default=None, alias="SubscribeURL")


def canonical_string(message: SnsMessage) -> bytes:
    """Return the bytes SNS signed: ``name\\nvalue\\n`` for each signed field of the message's type, in order."""
    fields = message.model_dump(by_alias=True)
    lines: list[str] = []
    for name in SIGNED_FIELDS[message.type]:
        value = fields.get(name)
        if value is None:
            if name in OPTIONAL_FIELDS:
                continue
            raise SnsMessageError(f"{name} is required in a {message.type} message")
        lines += [name, value]
    return "".join(f"{line}\n" for line in lines).encode()


def topic_region(topic_arn: str) -> str:
    """Return the region of an SNS topic's ARN; raise ``SnsSignatureError`` naming ``TopicArn`` for anything else."""
    match = _TOPIC_ARN.fullmatch(topic_arn)
    if match is None:
        raise SnsSignatureError("TopicArn must be an SNS topic ARN")
    return match["region"]


def check_sns_url(url: str, field: str, trusted_host: re.Pattern[str] = TRUSTED_HOST, region: str | None = None) -> str:
    """Return ``url`` if it is ``https://<SNS host>/…`` as written (no user, no port); else raise naming ``field``.

    With ``region``, the host must be that region's (when ``trusted_host`` names a ``region`` group, as SNS's own
    hosts do). The refusal never quotes the URL: a SubscribeURL carries its subscription's token.
    """
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        host = None
    if not _PLAIN_URL.fullmatch(url) or host is None or parts.scheme != "https":
        raise SnsSignatureError(f"{field} must be an https URL")
    match = trusted_host.fullmatch(host) if parts.netloc == host else None
    if match is None:
        raise SnsSignatureError(f"{field} must be on an SNS host (sns.<region>.amazonaws.com)")
    if region is not None and match.groupdict().get("region", region) != region:
        raise SnsSignatureError(f"{field} must be on the SNS host of the topic's region")
    return url


class HttpsFetcher:
    """GETs an SNS URL through the outbound session: no redirect, timeouts, at most ``max_bytes`` of answer.

    An answer SNS refuses the request with (a 4xx but 429) is the message's fault (``SnsMessageError``); a 5xx, a 429
    or no answer is SNS's (``SnsEndpointError``), so that SNS retries. Errors never quote the URL.
    """

    def __init__(
        self,
        session: requests.Session,
        max_bytes: int = MAX_FETCH_BYTES,
        timeout: tuple[float, float] = FETCH_TIMEOUT,
    ) -> None:
        self._session = session
        self._max_bytes = max_bytes
        self._timeout = timeout

    def __call__(self, url: str) -> bytes:
        """Return the body of a 200 answer to GET ``url``."""
        import requests

        body = b""
        try:
            with self._session.get(url, timeout=self._timeout, stream=True, allow_redirects=False) as response:
                status = response.status_code
                for chunk in response.iter_content(chunk_size=8192):
                    body += chunk
                    if len(body) > self._max_bytes:
                        raise SnsMessageError(f"SNS answered more than {self._max_bytes // 1024} KiB")
        except BlockedTargetError as exc:
            raise SnsMessageError(f"the SNS host was refused ({exc})") from None
        except requests.RequestException as exc:
            raise SnsEndpointError(f"SNS could not be reached ({type(exc).__name__})") from None
        if status == 200:
            return body
        if 400 <= status < 500 and status != 429:
            raise SnsMessageError(f"SNS refused the request (HTTP {status})")
        raise SnsEndpointError(f"SNS answered HTTP {status}")


def _utc_now() -> datetime:
    return datetime.now(UTC)


class SnsVerifier:
    """Verifies SNS message signatures with certificates fetched only from trusted SNS hosts, cached per URL.

    Parameters
    ----------
    fetch:
        GETs a checked URL and returns its body (``HttpsFetcher`` in production).
    trusted_host:
        The hosts certificates and confirmations may come from; SNS's regional endpoints by default.
    cache_size:
        How many certificates this warm container keeps, least recently used dropped first.
    clock:
        The time a certificate's validity is checked at, injectable for tests.
    """

    def __init__(
        self,
        fetch: Fetch,
        trusted_host: re.Pattern[str] = TRUSTED_HOST,
        cache_size: int = CERTIFICATE_CACHE_SIZE,
        clock: Clock = _utc_now,
    ) -> None:
        self._fetch = fetch
        self._trusted_host = trusted_host
        self._cache_size = cache_size
        self._clock = clock
        self._certificates: OrderedDict[str, Certificate] = OrderedDict()

    def verify(self, message: SnsMessage) -> None:
        """Raise ``SnsSignatureError`` unless SNS signed the message, ``SnsMessageError`` if it lacks a signed field."""
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding, rsa

        # SHA1 is what SignatureVersion 1 is, and SNS's default: verifying it is reading SNS's choice, not making one.
        algorithms: dict[str, hashes.HashAlgorithm] = {"1": hashes.SHA1(), "2": hashes.SHA256()}  # noqa: S303
        algorithm = algorithms.get(message.signature_version)
        if algorithm is None:
            raise SnsSignatureError(f"SignatureVersion must be one of: {', '.join(SIGNATURE_VERSIONS)}")
        signed = canonical_string(message)
        try:
            signature = base64.b64decode(message.signature, validate=True)
        except binascii.Error:
            raise SnsSignatureError("Signature is not base64") from None
        key = self._certificate(message.signing_cert_url, topic_region(message.topic_arn)).public_key()
        if not isinstance(key, rsa.RSAPublicKey):
            raise SnsSignatureError("the signing certificate does not hold an RSA key")
        try:
            key.verify(signature, signed, padding.PKCS1v15(), algorithm)
        except InvalidSignature:
            raise SnsSignatureError("Signature does not match the message") from None

    def subscribe_url(self, message: SnsMessage) -> str:
        """Return the message's ``SubscribeURL`` once checked: https, an SNS host, a ``ConfirmSubscription`` call."""
        region = topic_region(message.topic_arn)
        url = check_sns_url(message.subscribe_url or "", "SubscribeURL", self._trusted_host, region)
        if parse_qs(urlsplit(url).query).get("Action") != ["ConfirmSubscription"]:
            raise SnsSignatureError("SubscribeURL must call ConfirmSubscription")
        return url

    def _certificate(self, url: str, region: str) -> Certificate:
        from cryptography import x509
        from cryptography.x509.oid import NameOID

        # Checked before the cache: a certificate cached for one topic's region is not another region's.
        check_sns_url(url, "SigningCertURL", self._trusted_host, region)
        certificate = self._certificates.get(url)
        if certificate is None:
            parts = urlsplit(url)
            if not parts.path.endswith(".pem") or parts.query or parts.fragment:
                raise SnsSignatureError("SigningCertURL must name a .pem certificate")
            try:
                pem = self._fetch(url)
            except SnsEndpointError as exc:
                raise SnsEndpointError(f"fetching the signing certificate failed: {exc}") from None
            except SnsMessageError as exc:
                raise SnsSignatureError(f"SigningCertURL: {exc}") from None
            try:
                certificate = x509.load_pem_x509_certificate(pem)
            except ValueError:
                raise SnsSignatureError("SigningCertURL does not serve a PEM certificate") from None
            names = [attribute.value for attribute in certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
            if names != [CERTIFICATE_NAME]:
                raise SnsSignatureError(f"the signing certificate is not issued to {CERTIFICATE_NAME}")
            self._certificates[url] = certificate
            while len(self._certificates) > self._cache_size:
                self._certificates.popitem(last=False)
        self._certificates.move_to_end(url)
        now = self._clock()
        if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
            raise SnsSignatureError("the signing certificate is expired or not yet valid")
        return certificate


def confirm_subscription(message: SnsMessage, verifier: SnsVerifier, fetch: Fetch) -> None:
    """Confirm a verified ``SubscriptionConfirmation`` by GETting its checked ``SubscribeURL``."""
    url = verifier.subscribe_url(message)
    try:
        fetch(url)
    except SnsEndpointError as exc:
        raise SnsEndpointError(f"confirming the subscription failed: {exc}") from None
    except SnsMessageError as exc:
        raise SnsMessageError(f"SubscribeURL: {exc}") from None


# The route is served by the publish function and described by the management API's OpenAPI document; its
# declaration lives here so that neither function imports the other (as ``core.http`` declares the publish route).
SNS_PATH = "/v1/notifications/<channel>/<topic>/sns"
SNS_DOC = RouteDoc(
    {200: PublishResponse},
    errors=(400, 403, 404, 409, 413, 422, 502),
    request=SnsMessage,
    query=("hash",),
    summary=(
        "Take an SNS HTTPS subscription's deliveries: the signature is verified, a subscription confirmed, and a "
        "notification published with $data (and a JSON message's fields) as variables; a confirmation answers {}."
    ),
    operation_id="receive_sns_delivery",
)
