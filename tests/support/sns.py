"""SNS as the tests play it: a CA and signing certificates made with ``cryptography``, messages signed as SNS signs
them (SignatureVersion 1: SHA1withRSA, 2: SHA256withRSA), a fetcher that serves the certificates, and the SNS
deliveries of ``tests/events/`` signed at runtime.

The canonical string is written here from AWS's documentation, not taken from ``core.sns``, so that a mistake there
makes signatures disagree.
"""

from __future__ import annotations

import base64
import copy
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from core.errors import SnsMessageError
from core.sns import SnsVerifier
from tests.support.events import load_event

CERT_URL = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-6aad65c2f9911b05cd53efda11f913f9.pem"
NOTIFICATION_KEYS = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
CONFIRMATION_KEYS = ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type")


@dataclass(frozen=True)
class SigningIdentity:
    """A key and the certificate a test CA issued for it, as SNS's signing certificate."""

    key: rsa.RSAPrivateKey
    certificate: x509.Certificate

    @property
    def pem(self) -> bytes:
        """The certificate as SigningCertURL serves it."""
        return self.certificate.public_bytes(serialization.Encoding.PEM)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _key() -> rsa.RSAPrivateKey:
    # 1024 bits keeps key generation to milliseconds; the verifier takes any RSA key size.
    return rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505


@cache
def _ca() -> tuple[rsa.RSAPrivateKey, x509.Name]:
    return _key(), _name("Test Amazon RSA CA")


def issue(
    common_name: str = "sns.amazonaws.com", not_before: datetime | None = None, not_after: datetime | None = None
) -> SigningIdentity:
    """Return a new key with a certificate the test CA issued, valid from a day ago for a year unless told."""
    ca_key, ca_name = _ca()
    key = _key()
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or now - timedelta(days=1))
        .not_valid_after(not_after or now + timedelta(days=365))
        .sign(ca_key, hashes.SHA256())
    )
    return SigningIdentity(key, certificate)


@cache
def signing_identity() -> SigningIdentity:
    """The one signing identity most tests share (keys take a moment to make)."""
    return issue()


def canonical(fields: dict[str, Any]) -> bytes:
    """Return the string SNS signs, per AWS's documentation."""
    keys = NOTIFICATION_KEYS if fields["Type"] == "Notification" else CONFIRMATION_KEYS
    return "".join(f"{key}\n{fields[key]}\n" for key in keys if fields.get(key) is not None).encode()


def sign(fields: dict[str, Any], version: str = "1", identity: SigningIdentity | None = None) -> dict[str, Any]:
    """Return the message with ``SignatureVersion`` and its ``Signature`` made with ``identity``'s key."""
    signed = {**fields, "SignatureVersion": version}
    algorithm = hashes.SHA1() if version == "1" else hashes.SHA256()  # noqa: S303
    key = (identity or signing_identity()).key
    signed["Signature"] = base64.b64encode(key.sign(canonical(signed), padding.PKCS1v15(), algorithm)).decode()
    return signed


@dataclass
class FakeSnsFetcher:
    """Serves certificates and confirmation answers by URL, as SNS's hosts would, and records every URL asked."""

    documents: dict[str, bytes] = field(default_factory=dict)
    asked: list[str] = field(default_factory=list)

    def __call__(self, url: str) -> bytes:
        """Return what the URL serves; an unknown URL is SNS's 404."""
        self.asked.append(url)
        if url not in self.documents:
            raise SnsMessageError("SNS refused the request (HTTP 404)")
        return self.documents[url]


CONFIRMED = b"<ConfirmSubscriptionResponse><ConfirmSubscriptionResult/></ConfirmSubscriptionResponse>"


def fetcher(identity: SigningIdentity | None = None, url: str = CERT_URL) -> FakeSnsFetcher:
    """Return a fetcher serving ``identity``'s certificate (the shared one by default) at ``url``, and SNS's answer
    to the sample confirmation's SubscribeURL."""
    subscribe_url = sample("sns_subscription_confirmation.json")["SubscribeURL"]
    return FakeSnsFetcher({url: (identity or signing_identity()).pem, subscribe_url: CONFIRMED})


def verifier(fetch: FakeSnsFetcher | None = None) -> SnsVerifier:
    """Return a verifier that trusts the test CA's certificate through the fetcher that serves it."""
    return SnsVerifier(fetch or fetcher())


def sample(name: str) -> dict[str, Any]:
    """Return the SNS message of a sample delivery (``sns_notification.json``…), unsigned."""
    message: dict[str, Any] = json.loads(load_event(name)["body"])
    return message


def sns_event(
    name: str, topic_hash: str | None, version: str = "1", changes: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Return a sample SNS delivery signed with ``changes`` applied first, for the topic's ``?hash=``."""
    event = copy.deepcopy(load_event(name))
    fields = {**json.loads(event["body"]), **(changes or {})}
    event["body"] = json.dumps(sign(fields, version), indent=2, separators=(",", " : "), ensure_ascii=False)
    event["queryStringParameters"] = {"hash": topic_hash} if topic_hash is not None else None
    event["multiValueQueryStringParameters"] = {"hash": [topic_hash]} if topic_hash is not None else None
    return event
