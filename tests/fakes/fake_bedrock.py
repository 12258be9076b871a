"""A fake AWS Bedrock ApplyGuardrail service (``bedrock-runtime``) on 127.0.0.1.

It speaks the real wire protocol boto3 uses: ``POST /guardrail/{id}/version/{v}/apply`` (an ARN
identifier arrives percent-encoded; FakeService decodes the path), rest-json bodies, and errors
as status + ``x-amzn-ErrorType`` + ``{"message"}``. boto3 does not check enums client-side, so
this fake does. Signatures are not checked (any dummy credentials work), but the request keeps
its headers, so tests can assert the SigV4 scope (key id, region, service ``bedrock``).

Each configured guardrail (id, version) has a small deterministic policy: blocked words (word
policy), violent phrases (content filter), PII types to anonymize or block, and named regexes.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import re2

from tests.fakes.http_fake import FakeService, Reply, Seen

# The service's declared errors and their statuses (botocore service-2.json).
ERRORS = {
    "ValidationException": 400,
    "ServiceQuotaExceededException": 400,
    "AccessDeniedException": 403,
    "ResourceNotFoundException": 404,
    "ThrottlingException": 429,
    "InternalServerException": 500,
    "ServiceUnavailableException": 503,
}
_PATH = re2.compile(r"/guardrail/(.+)/version/([^/]+)/apply")
_IDENTIFIER = re2.compile(
    r"[a-z0-9]+|arn:aws(-[^:]+)?:bedrock:[a-z0-9-]{1,20}:[0-9]{12}:guardrail/[a-z0-9]+"
)
_VERSION = re2.compile(r"DRAFT|[1-9][0-9]{0,7}")
_SOURCES = {"INPUT", "OUTPUT"}
_QUALIFIERS = {"grounding_source", "query", "guard_content"}
_SCOPES = {"INTERVENTIONS", "FULL"}
_BODY_KEYS = {"source", "content", "outputScope"}

PII_PATTERNS = {
    "EMAIL": r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}",
    "US_SOCIAL_SECURITY_NUMBER": r"\b[0-9]{3}-[0-9]{2}-[0-9]{4}\b",
    "PHONE": r"\b[0-9]{3}[ -][0-9]{3}-[0-9]{4}\b",
}


@dataclass
class FakePolicy:
    """What one fake guardrail version does."""

    blocked_words: tuple[str, ...] = ("forbidden-topic",)
    violent_phrases: tuple[str, ...] = ("build a bomb",)
    detect_only_words: tuple[str, ...] = ("heads-up",)  # detected, action NONE: no intervention
    anonymize: tuple[str, ...] = ("EMAIL", "PHONE")
    block_pii: tuple[str, ...] = ("US_SOCIAL_SECURITY_NUMBER",)
    regexes: tuple[tuple[str, str, str], ...] = (("employee_id", r"EMP-[0-9]{6}", "ANONYMIZED"),)
    blocked_input_message: str = "Sorry, I cannot help with that request."
    blocked_output_message: str = "Sorry, the answer was withheld."


@dataclass
class _Scan:
    """What the policy found in one request."""

    words: list[dict[str, Any]] = field(default_factory=list)
    filters: list[dict[str, Any]] = field(default_factory=list)
    pii: list[dict[str, Any]] = field(default_factory=list)
    regexes: list[dict[str, Any]] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)  # each text with its ANONYMIZED spans replaced

    def entries(self) -> list[dict[str, Any]]:
        return self.words + self.filters + self.pii + self.regexes


class FakeBedrock(FakeService):
    """``with FakeBedrock() as fake: fake.guardrails[("gr1", "1")] = FakePolicy()``.

    ``errors``: error names answered (one each) before normal answers, e.g.
    ``["ThrottlingException"]``. ``omit_matches``: leave ``match`` out of ANONYMIZED entries (so
    the client has to derive spans from ``outputs``)."""

    def __init__(self) -> None:
        super().__init__()
        self.guardrails: dict[tuple[str, str], FakePolicy] = {}
        self.errors: list[str] = []
        self.omit_matches = False
        self.route_prefix("POST", "/guardrail/", self._apply)

    def applied(self) -> list[Seen]:
        """The ApplyGuardrail requests received (every attempt, retries included)."""
        return [seen for seen in self.seen() if seen.path.startswith("/guardrail/")]

    # -- the operation ------------------------------------------------------------------------

    def _apply(self, seen: Seen) -> Reply:
        path = _PATH.fullmatch(seen.path)
        if path is None:
            return error("ValidationException", "Invalid request path")
        identifier, version = path.group(1), path.group(2)
        if not _IDENTIFIER.fullmatch(identifier) or not _VERSION.fullmatch(version):
            return error("ValidationException", "1 validation error detected: guardrail")
        if self.errors:
            name = self.errors.pop(0)
            return error(name, f"injected {name}")
        problem = _invalid_body(seen.body)
        if problem:
            return error("ValidationException", problem)
        policy = self.guardrails.get((identifier.rsplit("/", 1)[-1], version))
        if policy is None:
            return error("ResourceNotFoundException", "The guardrail was not found")
        return Reply(200, self._answer(policy, seen.body), {"x-amzn-RequestId": str(uuid.uuid4())})

    def _answer(self, policy: FakePolicy, body: dict[str, Any]) -> dict[str, Any]:
        texts = [block["text"]["text"] for block in body["content"] if "text" in block]
        scan = _scan(policy, texts, self.omit_matches)
        entries = scan.entries()
        acted = [e for e in entries if e["action"] in ("BLOCKED", "ANONYMIZED")]
        blocked = any(e["action"] == "BLOCKED" for e in entries)
        if blocked:
            said = (
                policy.blocked_input_message
                if body["source"] == "INPUT"
                else policy.blocked_output_message
            )
            outputs = [{"text": said}]
        elif acted:
            outputs = [{"text": text} for text in scan.outputs]
        else:
            outputs = []
        assessment: dict[str, Any] = {}
        if scan.words:
            assessment["wordPolicy"] = {"customWords": scan.words, "managedWordLists": []}
        if scan.filters:
            assessment["contentPolicy"] = {"filters": scan.filters}
        if scan.pii or scan.regexes:
            assessment["sensitiveInformationPolicy"] = {
                "piiEntities": scan.pii,
                "regexes": scan.regexes,
            }
        total = sum(len(t) for t in texts)
        return {
            "usage": {
                "topicPolicyUnits": 1,
                "contentPolicyUnits": 1,
                "wordPolicyUnits": 1,
                "sensitiveInformationPolicyUnits": 1,
                "sensitiveInformationPolicyFreeUnits": 0,
                "contextualGroundingPolicyUnits": 0,
            },
            "action": "GUARDRAIL_INTERVENED" if acted else "NONE",
            "actionReason": "Guardrail blocked." if blocked else "",
            "outputs": outputs,
            "assessments": [assessment],
            "guardrailCoverage": {"textCharacters": {"guarded": total, "total": total}},
        }


def error(name: str, message: str) -> Reply:
    """An AWS error as it goes over the wire (AWS may append a namespace to the type)."""
    kind = f"{name}:http://internal.amazon.com/coral/com.amazon.bedrock/"
    return Reply(ERRORS[name], {"message": message}, {"x-amzn-ErrorType": kind})


def _invalid_body(body: object) -> str | None:
    """The enum and shape checks boto3 leaves to the service."""
    if not isinstance(body, dict):
        return "body must be a JSON object"
    unknown = set(body) - _BODY_KEYS
    if unknown:
        return f"unknown field {sorted(unknown)[0]}"
    if body.get("source") not in _SOURCES:
        return "source must be INPUT or OUTPUT"
    if body.get("outputScope", "INTERVENTIONS") not in _SCOPES:
        return "outputScope must be INTERVENTIONS or FULL"
    content = body.get("content")
    if not isinstance(content, list) or not content:
        return "content must be a non-empty list"
    for block in content:
        if not isinstance(block, dict) or len(block) != 1 or set(block) - {"text", "image"}:
            return "each content block holds exactly one of text, image"
        text = block.get("text")
        if text is not None:
            if not isinstance(text, dict) or not isinstance(text.get("text"), str):
                return "text block needs a text string"
            if not text["text"]:
                return "text must not be empty"
            if set(text.get("qualifiers", [])) - _QUALIFIERS:
                return "unknown qualifier"
    return None


def _scan(policy: FakePolicy, texts: list[str], omit_matches: bool) -> _Scan:
    scan = _Scan()
    for text in texts:
        lowered = text.lower()
        for word in policy.blocked_words:
            if word in lowered:
                scan.words.append({"match": word, "action": "BLOCKED", "detected": True})
        for word in policy.detect_only_words:
            if word in lowered:
                scan.words.append({"match": word, "action": "NONE", "detected": True})
        for phrase in policy.violent_phrases:
            if phrase in lowered:
                scan.filters.append(
                    {
                        "type": "VIOLENCE",
                        "confidence": "HIGH",
                        "filterStrength": "HIGH",
                        "action": "BLOCKED",
                        "detected": True,
                    }
                )
        masked = text
        for kind, pattern in PII_PATTERNS.items():
            action = (
                "ANONYMIZED"
                if kind in policy.anonymize
                else "BLOCKED"
                if kind in policy.block_pii
                else None
            )
            if action is None:
                continue
            for value in re2.findall(pattern, text):
                entry = {"match": value, "type": kind, "action": action, "detected": True}
                if omit_matches and action == "ANONYMIZED":
                    del entry["match"]
                scan.pii.append(entry)
                if action == "ANONYMIZED":
                    masked = masked.replace(value, "{" + kind + "}")
        for name, pattern, action in policy.regexes:
            for value in re2.findall(pattern, text):
                entry = {"name": name, "match": value, "regex": pattern, "action": action}
                scan.regexes.append(entry)
                if action == "ANONYMIZED":
                    masked = masked.replace(value, "{" + name + "}")
        scan.outputs.append(masked)
    return scan
