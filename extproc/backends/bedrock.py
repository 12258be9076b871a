"""AWS Bedrock Guardrails (``guardrail: bedrock``): the ApplyGuardrail API, called with boto3.

boto3 signs with SigV4 and walks the standard credential chain (env, profile, SSO, container,
instance role), which is not code to rewrite; but it is synchronous. So every call runs on this
guardrail's own small thread pool (never the event loop), through ONE client built at startup
(importing boto3 and reading the service model take up to ~1 s) and shared by the threads
(boto3 clients are thread-safe once built).

Verdicts follow latest LiteLLM: a GUARDRAIL_INTERVENED answer blocks when some assessment entry
of any policy says BLOCKED; ANONYMIZED entries become masks. Mask spans come from each entry's
``match``: every occurrence of it in the texts is masked with Bedrock's own label ("{EMAIL}").
Only when an anonymized entry has no locatable match are the spans taken from a character diff of
the text against Bedrock's aligned ``outputs[i]`` (short texts only; otherwise the call fails).

``aws_role_name`` (LiteLLM's key) signs with a role's temporary credentials, taken from STS
(AssumeRole, or AssumeRoleWithWebIdentity with a web identity token) by the first call, never at
startup (a config must load offline), and refreshed by botocore 15 minutes before they expire.
"""

from __future__ import annotations

import asyncio
import difflib
import functools
import logging
import os
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import re2

from extproc.backends import register
from extproc.backends.remote import (
    RETRY_STATUSES,
    BackendError,
    RemoteGuardrail,
    RetryableError,
    retry_after_seconds,
)
from extproc.config.loader import ConfigError, GuardrailSpec
from extproc.config.params import derived, flag, whole_number
from extproc.vocabulary import Action, Finding, ScanContext

log = logging.getLogger(__name__)

BLOCK_MESSAGE = "Violated guardrail policy"  # LiteLLM's wording, which clients may match on
DEFAULT_REGION = "us-west-2"  # LiteLLM's fallback when nothing names a region
# What AWS SDKs treat as transient (boto3's standard retry mode): throttling and 5xx.
_RETRYABLE_CODES = frozenset({"ThrottlingException", "ServiceUnavailableException"})
_RETRYABLE_STATUSES = RETRY_STATUSES | {500, 502, 504}
DEFAULT_MAX_CONCURRENT_CALLS = 16
MAX_DIFF_CHARS = 4000  # difflib is quadratic in the worst case: only short texts are diffed
REDACTED = "[REDACTED]"

# The patterns of the ApplyGuardrail API model (botocore service-2.json), checked at startup so a
# typo is a config error rather than a ValidationException on every request.
_IDENTIFIER = re2.compile(
    r"[a-z0-9]+|arn:aws(?:-[^:]+)?:bedrock:([a-z0-9-]{1,20}):[0-9]{12}:guardrail/[a-z0-9]+"
)
_VERSION = re2.compile(r"DRAFT|[1-9][0-9]{0,7}")
_BRACED_LABEL = re2.compile(r"\{([A-Za-z0-9_-]+)\}")

# LiteLLM keys for credentials this backend cannot honour, with what to do instead.
_UNSUPPORTED = {
    "api_key": "set AWS_BEARER_TOKEN_BEDROCK in the environment (botocore reads it)",
}
# The role keys LiteLLM reads, and the environment variable it falls back to for each.
_ROLE_ENV = {
    "aws_role_name": "AWS_ROLE_NAME",
    "aws_session_name": "AWS_SESSION_NAME",
    "aws_external_id": "AWS_EXTERNAL_ID",
    "aws_sts_endpoint": "AWS_STS_ENDPOINT",
}
# STS's own patterns (AssumeRole API reference), checked at startup.
_ROLE_ARN = re2.compile(r"arn:aws[a-z-]*:iam::[0-9]{12}:role/[\w+=,.@/-]{1,512}")
_SESSION_NAME = re2.compile(r"[\w+=,.@-]{2,64}")
_EXTERNAL_ID = re2.compile(r"[\w+=,.@:/-]+")  # 2 to 1224 of them (RE2 counts to 1000)
_STS_HOST_REGION = re2.compile(r"(?:^|\.)sts(?:-fips)?\.([a-z0-9-]+)\.(?:vpce\.)?amazonaws\.com")
# The assumed session may do nothing but what this backend does (a session policy is the
# intersection with the role's own permissions, so it can only narrow them).
SESSION_POLICY = (
    '{"Version":"2012-10-17","Statement":[{"Effect":"Allow",'
    '"Action":"bedrock:ApplyGuardrail","Resource":"*"}]}'
)
_STS_RETRYABLE_CODES = frozenset({"Throttling", "ThrottlingException", "IDPCommunicationError"})


@dataclass(frozen=True, slots=True)
class RoleSettings:
    """How to get the role's credentials: LiteLLM's ``aws_role_name`` and its companions."""

    arn: str
    session_name: str
    external_id: str | None
    tags: tuple[tuple[str, str], ...]
    web_identity_token: str | None  # the token itself (``os.environ/NAME`` in the config)
    web_identity_token_file: str | None  # or a file, read again at every refresh
    sts_endpoint: str | None
    sts_region: str

    @property
    def web_identity(self) -> bool:
        return bool(self.web_identity_token or self.web_identity_token_file)


@dataclass(frozen=True, slots=True)
class _Entry:
    """One assessment entry: which policy and list it came from, and the entry itself."""

    policy: str  # e.g. "sensitiveInformationPolicy"
    group: str  # e.g. "piiEntities"
    fields: Mapping[str, Any]

    @property
    def action(self) -> object:
        return self.fields.get("action")

    @property
    def type(self) -> str:
        """A stable upper-case type for logs and the error body's ``detected`` list."""
        if self.group == "topics":
            return "DENIED_TOPIC"
        if self.group == "customWords":
            return "CUSTOM_WORD"
        if self.group == "regexes":
            return "REGEX"
        return str(self.fields.get("type") or self.group).upper()

    @property
    def subtype(self) -> str | None:
        if self.group in ("topics", "regexes"):
            name = self.fields.get("name")
            return str(name) if name else None
        return None

    @property
    def label(self) -> str:
        """Bedrock's mask text: "{EMAIL}" for a PII type, "{name}" for a named regex."""
        name = self.fields.get("name") if self.group == "regexes" else self.fields.get("type")
        return "{" + str(name or self.type) + "}"


@register("bedrock")
class BedrockGuardrail(RemoteGuardrail):
    """Bedrock ApplyGuardrail: source INPUT for the request, OUTPUT for the answer."""

    key_required: ClassVar[bool] = False
    # Bedrock judges the content blocks together (its assessments name no block), so a verdict
    # belongs to the call, not to one text: only texts of a clean call are cached.
    per_text_verdicts: ClassVar[bool] = False

    def __init__(self, spec: GuardrailSpec) -> None:
        params = spec.params
        where = f"guardrail {spec.name!r}: litellm_params"
        for key, instead in _UNSUPPORTED.items():
            if params.get(key):
                raise ConfigError(f"{where}.{key} is not supported by bedrock; {instead}")
        self.identifier = _identifier(params.get("guardrailIdentifier"), where)
        self.version = _version(params.get("guardrailVersion"), where)
        self.region = _region(params, self.identifier, where)
        self.endpoint = _endpoint(params, where)
        self.credentials = _credentials(params, where)
        self.profile = _optional_str(params.get("aws_profile_name"), f"{where}.aws_profile_name")
        self.role = _role(params, self.region, bool(self.credentials), where)
        self.max_concurrent_calls = whole_number(
            params, "max_concurrent_calls", DEFAULT_MAX_CONCURRENT_CALLS, where, 1, 256
        )
        for key in ("mask_request_content", "mask_response_content"):
            flag(params, key, False, where)  # accepted for LiteLLM configs; see the docstring
        # The base class wants an api_base; ours is the endpoint boto3 will use (informational
        # when None: boto3 resolves the regional, FIPS or partition endpoint itself).
        api_base = self.endpoint or f"https://bedrock-runtime.{self.region}.amazonaws.com"
        super().__init__(replace(spec, params=derived(params, {"api_base": api_base})))
        self._client: Any = None
        self._client_lock = threading.Lock()
        self._sts: Any = None
        self.role_credentials: Any = None
        if self.role is not None:
            from botocore.credentials import DeferredRefreshableCredentials

            # No STS call here: the first signing asks for them (in a worker thread), and
            # botocore refreshes them, single-flight, before they expire.
            self.role_credentials = DeferredRefreshableCredentials(
                refresh_using=self._assume_role, method="assume-role"
            )
        _cap_botocore_logging()
        self._executor = ThreadPoolExecutor(
            max_workers=self.max_concurrent_calls, thread_name_prefix=f"bedrock-{spec.name}"
        )
        self._build_client_now(where)

    # -- the call ------------------------------------------------------------------------------

    async def call(self, texts: Sequence[str], context: ScanContext) -> list[Finding]:
        sent = [i for i, text in enumerate(texts) if text.strip()]  # Bedrock rejects empty text
        if not sent:
            return []
        request = {
            "guardrailIdentifier": self.identifier,
            "guardrailVersion": self.version,
            "source": "OUTPUT" if context.direction == "output" else "INPUT",
            "content": [{"text": {"text": texts[i]}} for i in sent],
        }
        loop = asyncio.get_running_loop()
        answer = await loop.run_in_executor(self._executor, self._apply, request)
        return self.findings(texts, sent, context, answer)

    def _apply(self, request: dict[str, Any]) -> dict[str, Any]:
        """In a worker thread: one ApplyGuardrail call, botocore failures as key-free errors."""
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
            ConnectionClosedError,
            ConnectTimeoutError,
            EndpointConnectionError,
            IncompleteReadError,
            NoCredentialsError,
            ReadTimeoutError,
            ResponseStreamingError,
        )

        try:
            return self.boto_client().apply_guardrail(**request)
        except ClientError as error:
            code = str(error.response.get("Error", {}).get("Code") or "")
            status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            # The AWS error code (ThrottlingException, ...), never its message: a validation
            # message may quote the content.
            named = f"{code} " if code and code != str(status) else ""
            message = f"bedrock answered {named}(HTTP {status})"
            if status in _RETRYABLE_STATUSES or code in _RETRYABLE_CODES:
                headers = error.response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
                wait = retry_after_seconds(headers.get("retry-after"))
                raise RetryableError(message, wait) from None
            raise BackendError(message) from None
        except (ConnectTimeoutError, ReadTimeoutError):
            raise BackendError(f"bedrock timed out after {self.timeout:g}s") from None
        except (
            EndpointConnectionError,
            ConnectionClosedError,
            ResponseStreamingError,
            IncompleteReadError,
        ) as error:
            why = type(error).__name__  # refused, or cut mid-answer: worth another try
            raise RetryableError(f"bedrock unreachable ({why})") from None
        except NoCredentialsError:
            raise BackendError(
                "bedrock: no AWS credentials found (config, env, profile, role)"
            ) from None
        except BotoCoreError as error:  # unreachable endpoint, unreadable answer, ...
            raise BackendError(f"bedrock call failed ({type(error).__name__})") from None

    def boto_client(self) -> Any:
        """The one ``bedrock-runtime`` client (built at startup; if that failed, by the first
        thread that needs it, under the lock)."""
        client = self._client
        if client is None:
            with self._client_lock:
                if self._client is None:
                    self._client = self._new_client()
                client = self._client
        return client

    def _build_client_now(self, where: str) -> None:
        """Build the client at startup: importing boto3 and building it take ~1 s cold, which
        the first request must not spend out of its timeout. A failure other than a missing
        profile is logged and retried on the first call (which then reports it)."""
        from botocore.exceptions import ProfileNotFound

        try:
            if self.role is not None and self.profile:
                self._source_session().get_scoped_config()  # files only: no STS call yet
            self.boto_client()
        except ProfileNotFound:
            raise ConfigError(f"{where}.aws_profile_name: no such AWS profile") from None
        except Exception as error:
            log.warning(
                "guardrail %s: bedrock client not built (%s)", self.name, type(error).__name__
            )

    def _new_client(self) -> Any:
        import boto3  # ~0.5-1 s to import: only configs that use Bedrock pay it (at startup)
        import botocore.session
        from botocore.config import Config
        from botocore.credentials import CredentialResolver

        if self.role_credentials is None:
            core = self._source_session()
            session = boto3.session.Session(
                botocore_session=core, region_name=self.region, **self.credentials
            )
        else:  # sign with the role's credentials only (the source ones go to STS)
            core = botocore.session.Session()
            core.register_component("data_loader", _shared_loader())
            core.register_component(
                "credential_provider", CredentialResolver([_Given(self.role_credentials)])
            )
            session = boto3.session.Session(botocore_session=core, region_name=self.region)
        config = Config(
            # One attempt per call: RemoteGuardrail retries throttling, 503 and broken
            # connections itself (jittered, within the timeout, counted), as for every backend.
            retries={"mode": "standard", "total_max_attempts": 1},
            connect_timeout=self.timeout,
            read_timeout=self.timeout,
            max_pool_connections=self.max_concurrent_calls,
            user_agent_extra="guardrails-extproc",
        )
        return session.client("bedrock-runtime", endpoint_url=self.endpoint, config=config)

    def _source_session(self) -> Any:
        """The botocore session of the configured profile (or the default chain)."""
        import botocore.session

        core = botocore.session.Session(profile=self.profile)
        core.register_component("data_loader", _shared_loader())
        return core

    # -- the role (STS) ------------------------------------------------------------------------

    @property
    def auth_summary(self) -> str:
        """For ``validate-config``: whose credentials sign, so a role config shows it is one."""
        role = self.role
        if role is None:
            return ""
        how = "web identity" if role.web_identity else "AssumeRole"
        return f"signs as role {role.arn} ({how}, at the first call, refreshed before expiry)"

    def _assume_role(self) -> dict[str, str]:
        """botocore's refresh callback, in the worker thread that signs: one STS call. Failures
        are key-free BackendErrors (the call fails, on_error applies); botocore logs a failed
        early refresh and keeps the current credentials until the mandatory window."""
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
            ConnectionClosedError,
            ConnectTimeoutError,
            EndpointConnectionError,
            NoCredentialsError,
            ReadTimeoutError,
        )

        role = self.role
        assert role is not None
        what = f"bedrock: assuming role {role.arn}"
        try:
            answer = self._call_sts(role)
        except ClientError as error:
            code = str(error.response.get("Error", {}).get("Code") or "")
            status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            # The STS error code, never its message (it may describe the token's claims).
            message = f"{what} failed: STS answered {code or 'an error'} (HTTP {status})"
            if code in _STS_RETRYABLE_CODES or (isinstance(status, int) and status >= 500):
                raise RetryableError(message) from None
            raise BackendError(message) from None
        except (ConnectTimeoutError, ReadTimeoutError):
            raise BackendError(f"{what} failed: STS timed out after {self.timeout:g}s") from None
        except (EndpointConnectionError, ConnectionClosedError) as error:
            raise RetryableError(
                f"{what} failed: STS unreachable ({type(error).__name__})"
            ) from None
        except NoCredentialsError:
            raise BackendError(f"{what} failed: no AWS credentials to call STS with") from None
        except BotoCoreError as error:
            raise BackendError(f"{what} failed ({type(error).__name__})") from None
        except OSError as error:
            raise BackendError(
                f"{what} failed: cannot read aws_web_identity_token_file ({error.strerror})"
            ) from None
        try:
            keys = answer["Credentials"]
            expiry = keys["Expiration"]
            issued = {
                "access_key": str(keys["AccessKeyId"]),
                "secret_key": str(keys["SecretAccessKey"]),
                "token": str(keys["SessionToken"]),
                "expiry_time": expiry.isoformat(),
            }
        except (KeyError, TypeError, AttributeError):
            raise BackendError(f"{what} failed: STS answered without credentials") from None
        log.info(
            "guardrail %s: assumed role %s (session %s) until %s",
            self.name,
            role.arn,
            role.session_name,
            issued["expiry_time"],
        )
        return issued

    def _call_sts(self, role: RoleSettings) -> Mapping[str, Any]:
        sts = self._sts
        if sts is None:  # under botocore's refresh lock: one thread at a time
            sts = self._sts = self._new_sts_client(role)
        request: dict[str, Any] = {
            "RoleArn": role.arn,
            "RoleSessionName": role.session_name,
            "Policy": SESSION_POLICY,
        }
        if role.web_identity:
            token = role.web_identity_token
            if token is None:
                with open(role.web_identity_token_file or "", encoding="utf-8") as file:
                    token = file.read().strip()  # rotated by its issuer: read at each refresh
            return sts.assume_role_with_web_identity(WebIdentityToken=token, **request)
        if role.external_id:
            request["ExternalId"] = role.external_id
        if role.tags:
            request["Tags"] = [{"Key": key, "Value": value} for key, value in role.tags]
        return sts.assume_role(**request)

    def _new_sts_client(self, role: RoleSettings) -> Any:
        """AssumeRole is signed with the source credentials (config keys, the profile, or the
        default chain); AssumeRoleWithWebIdentity is not signed (the token is the proof)."""
        import boto3
        import botocore
        from botocore.config import Config

        config = Config(
            retries={"mode": "standard", "total_max_attempts": 1},  # retried like the call
            connect_timeout=self.timeout,
            read_timeout=self.timeout,
            user_agent_extra="guardrails-extproc",
        )
        if role.web_identity:
            config = config.merge(Config(signature_version=botocore.UNSIGNED))
            session = boto3.session.Session(botocore_session=self._source_session())
        else:
            session = boto3.session.Session(
                botocore_session=self._source_session(), **self.credentials
            )
        return session.client(
            "sts", region_name=role.sts_region, endpoint_url=role.sts_endpoint, config=config
        )

    # -- reading the answer --------------------------------------------------------------------

    def findings(
        self,
        texts: Sequence[str],
        sent: Sequence[int],
        context: ScanContext,
        answer: Mapping[str, Any],
    ) -> list[Finding]:
        """Block, masks or nothing, from an ApplyGuardrail answer to ``texts[i] for i in sent``."""
        action = answer.get("action")
        if action not in ("NONE", "GUARDRAIL_INTERVENED"):
            raise BackendError("bedrock answered without a valid action")
        if action == "NONE":  # detect-only findings (action NONE) do not act, as in LiteLLM
            return []
        entries = list(_entries(answer.get("assessments")))
        blocked = [e for e in entries if e.action == "BLOCKED"]
        if blocked:
            return self._block(texts, sent, context, answer, blocked)
        anonymized = [e for e in entries if e.action == "ANONYMIZED"]
        return _masks(texts, sent, _outputs(answer), anonymized)

    def _block(
        self,
        texts: Sequence[str],
        sent: Sequence[int],
        context: ScanContext,
        answer: Mapping[str, Any],
        blocked: Sequence[_Entry],
    ) -> list[Finding]:
        """One BLOCK finding per blocked type, on the text the verdict is about (Bedrock
        judges the content as a whole: the last user text of a request, the last answer)."""
        index = _verdict_text(sent, context)
        said = "".join(text for text in _outputs(answer) if text)
        # disable_exception_on_block answers with the block message as the assistant's text:
        # LiteLLM shows the guardrail's own configured message (outputs) there.
        message = said if said and self.spec.params.get("disable_exception_on_block") else None
        details = {
            "error": BLOCK_MESSAGE,
            "bedrock_guardrail_response": said,
            "guardrailIdentifier": self.identifier,
            "guardrailVersion": self.version,
            "assessments": _blocked_assessments(blocked),
        }
        kinds = dict.fromkeys((e.type, e.subtype) for e in blocked)
        return [
            Finding(
                index,
                0,
                len(texts[index]),
                kind,
                Action.BLOCK,
                subtype,
                message=message or BLOCK_MESSAGE,
                details=details,
            )
            for kind, subtype in kinds
        ]

    def close(self) -> None:
        """Let worker threads end (tests and tools that build many guardrails)."""
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def aclose(self) -> None:
        """A replaced config's Bedrock guardrail: its threads end and boto3's connection pool
        is closed (the executor first, so no call is still using the client)."""
        await super().aclose()
        self.close()
        client, self._client = self._client, None
        if client is not None:
            await asyncio.to_thread(client.close)


class _Given:
    """A botocore credential provider that hands out one credentials object (the role's)."""

    METHOD = "assume-role"

    def __init__(self, credentials: Any) -> None:
        self.credentials = credentials

    def load(self) -> Any:
        return self.credentials


def _cap_botocore_logging() -> None:
    """botocore's DEBUG lines print request and answer bodies: the texts judged, a web identity
    token, the assumed role's secret key. ``--log-level DEBUG`` must not print them."""
    logger = logging.getLogger("botocore")
    if logger.level < logging.INFO:
        logger.setLevel(logging.INFO)


@functools.cache
def _shared_loader() -> Any:
    """One botocore data loader for every Bedrock guardrail: the service model is parsed once
    (~150 ms saved per further client)."""
    import botocore.loaders

    return botocore.loaders.create_loader()


# -- answers -> findings (pure) ----------------------------------------------------------------


def _entries(assessments: object) -> Iterator[_Entry]:
    """Every entry with an ``action`` in every policy of every assessment, whatever the policy:
    a policy Bedrock adds later still blocks when it says BLOCKED."""
    if assessments is None:
        return
    if not isinstance(assessments, list):
        raise BackendError("bedrock answered assessments that are not a list")
    for assessment in assessments:
        if not isinstance(assessment, dict):
            raise BackendError("bedrock answered an assessment that is not an object")
        for policy, body in assessment.items():
            if not isinstance(body, dict):
                continue
            for group, items in body.items():
                if isinstance(items, list):
                    for item in items:
                        if isinstance(item, dict) and "action" in item:
                            yield _Entry(policy, group, item)


def _outputs(answer: Mapping[str, Any]) -> list[str | None]:
    outputs = answer.get("outputs") or []
    if not isinstance(outputs, list):
        raise BackendError("bedrock answered outputs that are not a list")
    return [o.get("text") if isinstance(o, dict) else None for o in outputs]


def _verdict_text(sent: Sequence[int], context: ScanContext) -> int:
    if context.direction == "input" and context.roles:
        users = [i for i in sent if i < len(context.roles) and context.roles[i] == "user"]
        if users:
            return users[-1]
    return sent[-1]


def _blocked_assessments(blocked: Sequence[_Entry]) -> list[dict[str, Any]]:
    """Latest LiteLLM's error detail: the BLOCKED entries by policy, matched values redacted
    (they are the client's own words, e.g. a blocked SSN)."""
    by_policy: dict[str, list[dict[str, Any]]] = {}
    for entry in blocked:
        shown = {k: (REDACTED if k in ("match", "regex") else v) for k, v in entry.fields.items()}
        by_policy.setdefault(entry.policy, []).append(shown)
    return [{"policy": policy, "matches": matches} for policy, matches in by_policy.items()]


def _masks(
    texts: Sequence[str],
    sent: Sequence[int],
    outputs: Sequence[str | None],
    anonymized: Sequence[_Entry],
) -> list[Finding]:
    """MASK findings at every occurrence of each anonymized ``match``; a diff against the aligned
    output for what cannot be located that way."""
    findings: list[Finding] = []
    unlocated = False
    done: set[tuple[str, str]] = set()  # Bedrock lists a value once per occurrence
    for entry in anonymized:
        match = entry.fields.get("match")
        if isinstance(match, str) and (match, entry.label) in done:
            continue
        found = _occurrences(texts, sent, match, entry) if isinstance(match, str) else []
        unlocated = unlocated or not found
        findings += found
        if found:
            done.add((match, entry.label))
    if not unlocated:
        return findings
    if len(outputs) != len(sent):
        raise BackendError("bedrock anonymized text it did not locate, outputs not aligned")
    for position, index in enumerate(sent):
        masked = outputs[position]
        if masked is not None and masked != texts[index]:
            findings = [f for f in findings if f.index != index]
            findings += _diff_findings(index, texts[index], masked)
    return findings


def _occurrences(
    texts: Sequence[str], sent: Sequence[int], match: str, entry: _Entry
) -> list[Finding]:
    if not match:
        return []
    found = []
    for index in sent:
        text = texts[index]
        start = text.find(match)
        while start >= 0:
            end = start + len(match)
            found.append(
                Finding(
                    index, start, end, entry.type, Action.MASK, entry.subtype, label=entry.label
                )
            )
            start = text.find(match, end)
    return found


def _diff_findings(index: int, original: str, masked: str) -> list[Finding]:
    """Spans of ``original`` that Bedrock replaced in ``masked``, labelled with what it wrote."""
    if max(len(original), len(masked)) > MAX_DIFF_CHARS:
        raise BackendError("bedrock anonymized a long text without locatable matches")
    matcher = difflib.SequenceMatcher(None, original, masked, autojunk=False)
    found = []
    for op, start, end, new_start, new_end in matcher.get_opcodes():
        if op in ("replace", "delete") and end > start:
            label = masked[new_start:new_end]
            braced = _BRACED_LABEL.fullmatch(label)
            kind = braced.group(1).upper() if braced else "PII"
            found.append(Finding(index, start, end, kind, Action.MASK, label=label or None))
    return found


# -- configuration (startup) -------------------------------------------------------------------


def _identifier(value: object, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where}.guardrailIdentifier is required (a guardrail id or ARN)")
    if not _IDENTIFIER.fullmatch(value):
        raise ConfigError(
            f"{where}.guardrailIdentifier must be a guardrail id such as 'ff6ujrregl1q' or a "
            f"guardrail ARN, got {value!r}"
        )
    return value


def _version(value: object, where: str) -> str:
    if isinstance(value, bool) or value is None:
        raise ConfigError(f"{where}.guardrailVersion is required ('DRAFT' or a version number)")
    text = str(value)
    if not _VERSION.fullmatch(text):
        raise ConfigError(f"{where}.guardrailVersion must be 'DRAFT' or 1-99999999, got {text!r}")
    return text


def _region(params: Mapping[str, Any], identifier: str, where: str) -> str:
    """LiteLLM's order (config, AWS_REGION_NAME, AWS_REGION, us-west-2), with the region of a
    guardrail ARN and AWS_DEFAULT_REGION before the fallback."""
    for key in ("aws_region_name", "region"):
        if params.get(key):
            return _optional_str(params[key], f"{where}.{key}") or ""
    arn = _IDENTIFIER.fullmatch(identifier)
    if arn is not None and arn.group(1):
        return arn.group(1)
    for name in ("AWS_REGION_NAME", "AWS_REGION", "AWS_DEFAULT_REGION"):
        if os.environ.get(name):
            return os.environ[name]
    log.warning("bedrock guardrail: no region configured; using %s", DEFAULT_REGION)
    return DEFAULT_REGION


def _endpoint(params: Mapping[str, Any], where: str) -> str | None:
    for key in ("aws_bedrock_runtime_endpoint", "api_base"):
        if params.get(key):
            value = params[key]
            if not isinstance(value, str) or not value.startswith(("http://", "https://")):
                raise ConfigError(f"{where}.{key} must start with http:// or https://")
            return value.rstrip("/")
    return os.environ.get("AWS_BEDROCK_RUNTIME_ENDPOINT") or None


def _credentials(params: Mapping[str, Any], where: str) -> dict[str, str]:
    """Keys from the config (LiteLLM's names), or {} for the standard credential chain."""
    key_id = params.get("aws_access_key_id")
    secret = params.get("aws_secret_access_key")
    token = params.get("aws_session_token")
    if bool(key_id) != bool(secret):
        missing = "aws_secret_access_key" if key_id else "aws_access_key_id"
        raise ConfigError(f"{where}.{missing} is required with the other AWS key")
    if token and not key_id:
        raise ConfigError(f"{where}.aws_session_token needs aws_access_key_id and the secret")
    if not key_id:
        return {}
    keys = {"aws_access_key_id": str(key_id), "aws_secret_access_key": str(secret)}
    if token:
        keys["aws_session_token"] = str(token)
    return keys


def _role(
    params: Mapping[str, Any], region: str, has_keys: bool, where: str
) -> RoleSettings | None:
    """LiteLLM's role keys (each falling back to LiteLLM's environment variable), checked
    against STS's patterns; None when no role is named."""
    values: dict[str, str | None] = {}
    for key, env in _ROLE_ENV.items():
        value = params.get(key)
        if value is None and os.environ.get(env):
            value = os.environ[env]
        values[key] = _optional_str(value, f"{where}.{key}")
    token = _optional_str(params.get("aws_web_identity_token"), f"{where}.aws_web_identity_token")
    token_file = _optional_str(
        params.get("aws_web_identity_token_file"), f"{where}.aws_web_identity_token_file"
    )
    tags = _session_tags(params.get("aws_session_tags"), f"{where}.aws_session_tags")
    arn = values["aws_role_name"]
    if arn is None:
        for key, given in (
            ("aws_session_name", params.get("aws_session_name")),
            ("aws_external_id", params.get("aws_external_id")),
            ("aws_sts_endpoint", params.get("aws_sts_endpoint")),
            ("aws_web_identity_token", token),
            ("aws_web_identity_token_file", token_file),
            ("aws_session_tags", tags or None),
        ):
            if given:
                raise ConfigError(f"{where}.{key} needs aws_role_name (the role to assume)")
        return None
    if not _ROLE_ARN.fullmatch(arn):
        raise ConfigError(
            f"{where}.aws_role_name must be a role ARN such as "
            f"'arn:aws:iam::123456789012:role/guardrails', got {arn!r}"
        )
    session = values["aws_session_name"] or f"guardrails-extproc-{int(time.time())}"
    if not _SESSION_NAME.fullmatch(session):
        raise ConfigError(
            f"{where}.aws_session_name must be 2-64 characters of letters, digits and +=,.@_-"
        )
    external_id = values["aws_external_id"]
    if external_id is not None and not (
        2 <= len(external_id) <= 1224 and _EXTERNAL_ID.fullmatch(external_id)
    ):
        raise ConfigError(  # never echoed: some treat it as a shared secret
            f"{where}.aws_external_id must be 2-1224 characters of letters, digits and +=,.@:/_-"
        )
    if token and token_file:
        raise ConfigError(
            f"{where}: give aws_web_identity_token or aws_web_identity_token_file, not both"
        )
    if token and not 4 <= len(token) <= 20000:  # STS's bounds; never echoed
        raise ConfigError(f"{where}.aws_web_identity_token must be 4 to 20000 characters (a JWT)")
    if token and token.startswith("oidc/"):
        raise ConfigError(
            f"{where}.aws_web_identity_token: LiteLLM's oidc/ token providers are not run "
            "here; write the token to a file and set aws_web_identity_token_file, or give "
            "it as os.environ/NAME"
        )
    web_identity = bool(token or token_file)
    if web_identity and (external_id or tags):
        key = "aws_external_id" if external_id else "aws_session_tags"
        raise ConfigError(
            f"{where}.{key} cannot be sent with a web identity token "
            "(AssumeRoleWithWebIdentity takes neither: the token carries them)"
        )
    if web_identity and has_keys:
        raise ConfigError(
            f"{where}: aws_access_key_id cannot be used with a web identity token (the token "
            "is the proof of identity); drop one of them"
        )
    endpoint = values["aws_sts_endpoint"]
    if endpoint is not None and not endpoint.startswith(("http://", "https://")):
        raise ConfigError(f"{where}.aws_sts_endpoint must start with http:// or https://")
    if (
        not has_keys
        and not web_identity
        and os.environ.get("AWS_WEB_IDENTITY_TOKEN_FILE")
        and os.environ.get("AWS_ROLE_ARN") == arn
    ):
        # EKS (IRSA) already runs as this role: boto3's chain assumes it from the token file
        # (and refreshes it); assuming it again would need the role to trust itself. LiteLLM
        # does the same.
        log.info(
            "%s: already running as %s (AWS_ROLE_ARN): boto3's credentials are used", where, arn
        )
        return None
    host_region = _STS_HOST_REGION.search(endpoint or "")
    return RoleSettings(
        arn=arn,
        session_name=session,
        external_id=external_id,
        tags=tags,
        web_identity_token=token,
        web_identity_token_file=token_file,
        sts_endpoint=endpoint.rstrip("/") if endpoint else None,
        sts_region=host_region.group(1) if host_region else region,
    )


def _session_tags(value: object, where: str) -> tuple[tuple[str, str], ...]:
    """LiteLLM's ``aws_session_tags: [{Key, Value}, ...]`` (STS allows 50)."""
    if value is None:
        return ()
    problem = f"{where} must be a list of {{Key: ..., Value: ...}} (at most 50)"
    if not isinstance(value, list) or len(value) > 50:
        raise ConfigError(problem)
    tags = []
    for tag in value:
        if not isinstance(tag, dict) or set(tag) != {"Key", "Value"}:
            raise ConfigError(problem)
        if not all(isinstance(tag[k], str) and tag[k] for k in ("Key", "Value")):
            raise ConfigError(problem)
        tags.append((tag["Key"], tag["Value"]))
    return tuple(sorted(tags))


def _optional_str(value: object, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where} must be a non-empty string")
    return value
