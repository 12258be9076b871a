"""A fake AWS STS on 127.0.0.1 that speaks STS's real wire protocol (the AWS query protocol).

boto3 posts ``Action=AssumeRole&Version=2011-06-15&RoleArn=...`` form-encoded to ``/`` and reads
an XML answer (``<AssumeRoleResponse><AssumeRoleResult><Credentials>...``); errors are an HTTP
status with ``<ErrorResponse><Error><Type/><Code/><Message/></Error>``. AssumeRole must be signed
(the fake records the signing key id); AssumeRoleWithWebIdentity must not be, and its token has
to be one the fake was told to accept. Each call issues fresh keys (``ASIAFAKE0001``, ...) that
expire ``lifetime`` seconds later, so a test can see a refresh as a new key id at the service.
"""

from __future__ import annotations

import datetime
import itertools
import threading
import uuid
from dataclasses import dataclass
from urllib.parse import parse_qsl
from xml.sax.saxutils import escape

import re2

from tests.fakes.http_fake import FakeService, Reply, Seen

NAMESPACE = "https://sts.amazonaws.com/doc/2011-06-15/"
_ROLE_ARN = re2.compile(r"arn:aws[a-z-]*:iam::([0-9]{12}):role/([\w+=,.@/-]+)")
_SESSION_NAME = re2.compile(r"[\w+=,.@-]{2,64}")
_KEY_ID = re2.compile(r"Credential=([A-Z0-9]+)/")
ERRORS = {  # code -> (status, fault type)
    "AccessDenied": (403, "Sender"),
    "InvalidIdentityToken": (400, "Sender"),
    "ExpiredTokenException": (400, "Sender"),
    "ValidationError": (400, "Sender"),
    "MissingAuthenticationToken": (403, "Sender"),
    "Throttling": (400, "Sender"),
    "InternalFailure": (500, "Receiver"),
}


@dataclass(frozen=True)
class Issued:
    """One set of credentials the fake handed out, and the call that asked for it."""

    action: str
    params: dict[str, str]
    signed_by: str | None  # the key id of the caller's signature (None: unsigned)
    access_key: str
    secret_key: str
    token: str


class FakeSTS(FakeService):
    """``with FakeSTS() as sts: sts.tokens.add("jwt")``; ``sts.errors.append("AccessDenied")``
    answers that error once; ``sts.issued`` lists every set of keys handed out."""

    def __init__(self, lifetime: float = 3600.0) -> None:
        super().__init__()
        self.lifetime = lifetime
        self.tokens: set[str] = set()
        self.external_id: str | None = None  # required ExternalId, when set
        self.errors: list[str] = []
        self.issued: list[Issued] = []
        self._serial = itertools.count(1)
        self._issue_lock = threading.Lock()
        self.route("POST", "/", self._handle)

    def _handle(self, seen: Seen) -> Reply:
        raw = seen.body if isinstance(seen.body, bytes) else b""
        if not seen.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            return error("ValidationError", "expected a form-encoded query request")
        params = dict(parse_qsl(raw.decode()))
        action = params.pop("Action", "")
        if params.pop("Version", "") != "2011-06-15":
            return error("ValidationError", "unsupported Version")
        if self.errors:
            code = self.errors.pop(0)
            return error(code, f"injected {code}")
        signed = _KEY_ID.search(seen.headers.get("authorization", ""))
        signed_by = signed.group(1) if signed else None
        if action == "AssumeRole":
            if signed_by is None:
                return error("MissingAuthenticationToken", "Request is missing Authentication")
            if self.external_id is not None and params.get("ExternalId") != self.external_id:
                return error("AccessDenied", "not authorized to perform: sts:AssumeRole")
        elif action == "AssumeRoleWithWebIdentity":
            if signed_by is not None:
                return error("ValidationError", "AssumeRoleWithWebIdentity is not signed")
            if params.get("WebIdentityToken") not in self.tokens:
                return error("InvalidIdentityToken", "Couldn't retrieve verification key")
        else:
            return error("ValidationError", f"unknown Action {action!r}")
        arn = _ROLE_ARN.fullmatch(params.get("RoleArn", ""))
        session = params.get("RoleSessionName", "")
        if arn is None or not _SESSION_NAME.fullmatch(session):
            return error("ValidationError", "1 validation error detected: RoleArn")
        return Reply(
            200,
            self._answer(action, params, signed_by, arn.group(1), arn.group(2), session).encode(),
            {"content-type": "text/xml"},
        )

    def _answer(
        self,
        action: str,
        params: dict[str, str],
        signed_by: str | None,
        account: str,
        role: str,
        session: str,
    ) -> str:
        with self._issue_lock:
            n = next(self._serial)
            issued = Issued(
                action,
                params,
                signed_by,
                f"ASIAFAKE{n:08d}",
                f"fake-secret-{uuid.uuid4().hex}",
                f"fake-session-token-{uuid.uuid4().hex}",
            )
            self.issued.append(issued)
        expires = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=self.lifetime)
        extra = (
            "<SubjectFromWebIdentityToken>system:serviceaccount:fake</SubjectFromWebIdentityToken>"
            "<Audience>sts.amazonaws.com</Audience><Provider>fake-oidc</Provider>"
            if action == "AssumeRoleWithWebIdentity"
            else ""
        )
        return (
            f'<{action}Response xmlns="{NAMESPACE}"><{action}Result>'
            f"<Credentials><AccessKeyId>{issued.access_key}</AccessKeyId>"
            f"<SecretAccessKey>{issued.secret_key}</SecretAccessKey>"
            f"<SessionToken>{issued.token}</SessionToken>"
            f"<Expiration>{expires.strftime('%Y-%m-%dT%H:%M:%S.%fZ')}</Expiration></Credentials>"
            f"<AssumedRoleUser><AssumedRoleId>AROAFAKE:{escape(session)}</AssumedRoleId>"
            f"<Arn>arn:aws:sts::{account}:assumed-role/{escape(role)}/{escape(session)}</Arn>"
            f"</AssumedRoleUser><PackedPolicySize>6</PackedPolicySize>{extra}"
            f"</{action}Result><ResponseMetadata><RequestId>{uuid.uuid4()}</RequestId>"
            f"</ResponseMetadata></{action}Response>"
        )


def error(code: str, message: str) -> Reply:
    status, fault = ERRORS[code]
    body = (
        f'<ErrorResponse xmlns="{NAMESPACE}"><Error><Type>{fault}</Type><Code>{code}</Code>'
        f"<Message>{escape(message)}</Message></Error><RequestId>{uuid.uuid4()}</RequestId>"
        "</ErrorResponse>"
    )
    return Reply(status, body.encode(), {"content-type": "text/xml"})
