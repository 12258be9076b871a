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
"""

from __future__ import annotations

import asyncio
import difflib
import functools
import logging
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import re2

from extproc.backends import register
from extproc.backends.base import Action, Finding, ScanContext
from extproc.backends.remote import (
    RETRY_STATUSES,
    BackendError,
    RemoteGuardrail,
    RetryableError,
    retry_after_seconds,
)
from extproc.config.loader import ConfigError, GuardrailSpec
from extproc.config.params import derived, flag, whole_number

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
    "aws_role_name": "put role_arn/source_profile in an AWS profile and set aws_profile_name",
    "aws_web_identity_token": "set AWS_WEB_IDENTITY_TOKEN_FILE and AWS_ROLE_ARN (boto3 reads them)",
    "api_key": "set AWS_BEARER_TOKEN_BEDROCK in the environment (botocore reads it)",
}


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
    returns_spans: ClassVar[bool] = True
    # Bedrock judges the content blocks together (its assessments name no block), so a verdict
    # belongs to the call, not to one text: only texts of a clean call are cached.
    per_text_verdicts: ClassVar[bool] = False
    supported_modes: ClassVar[frozenset[str]] = frozenset(
        {"pre_call", "during_call", "post_call", "logging_only"}
    )

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

        core = botocore.session.Session(profile=self.profile)
        core.register_component("data_loader", _shared_loader())
        session = boto3.session.Session(
            botocore_session=core, region_name=self.region, **self.credentials
        )
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


def _optional_str(value: object, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where} must be a non-empty string")
    return value
