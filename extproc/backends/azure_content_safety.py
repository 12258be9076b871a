"""Azure AI Content Safety: ``azure/text_moderations`` (``text:analyze``) and
``azure/prompt_shield`` (``text:shieldPrompt``), as LiteLLM names them.

Both post to ``{api_base}/contentsafety/<action>?api-version=<api_version>`` with the
``Ocp-Apim-Subscription-Key`` header. Texts over 10,000 characters (the service's limit) are
cut at a whitespace into chunks, each chunk its own call (at most MAX_PARALLEL_CALLS at once).
Verdicts cover whole texts: neither API returns spans, so neither can mask.

Differences from LiteLLM, on purpose: every text is judged (LiteLLM: the last user message
only); a category without an entry in ``severity_threshold_by_category`` falls back to
``severity_threshold``, then to 2 (LiteLLM then skips it); a blocklist match blocks (LiteLLM
ignores ``blocklistsMatch``).

Prompt Shields: user texts (and texts of unknown role) go as ``userPrompt``; texts whose role
is in ``document_roles`` (default ``tool`` and ``function``: tool results, the usual carrier of
indirect injection) go as ``documents``, at most 5 per call and 10,000 characters in total.
System, developer and assistant texts are not sent: they are the operator's or the model's.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import replace
from typing import Any
from urllib.parse import quote

from extproc.backends import register
from extproc.backends.remote import BackendError, RemoteGuardrail, gather_limited
from extproc.config.loader import ConfigError, GuardrailSpec
from extproc.config.params import flag
from extproc.vocabulary import Action, Finding, ScanContext

DEFAULT_API_VERSION = "2024-09-01"
MAX_TEXT_CHARS = 10_000
MAX_DOCUMENTS_PER_CALL = 5
MAX_PARALLEL_CALLS = 8
TEXT_CATEGORIES = ("Hate", "SelfHarm", "Sexual", "Violence")
OUTPUT_TYPES = ("FourSeverityLevels", "EightSeverityLevels")
DEFAULT_SEVERITY_THRESHOLD = 2
SHIELD_MESSAGE = "Violated Azure Prompt Shield guardrail policy"


class _ContentSafety(RemoteGuardrail):
    """What both Azure guardrails share: endpoint, key header, api-version, bounded calls."""

    api_base_env = "AZURE_CONTENT_SAFETY_ENDPOINT"
    api_key_env = "AZURE_CONTENT_SAFETY_KEY"

    def __init__(self, spec: GuardrailSpec) -> None:
        super().__init__(spec)
        self.where = f"guardrail {spec.name!r}: litellm_params"
        version = spec.params.get("api_version", DEFAULT_API_VERSION)
        if not isinstance(version, str) or not version:
            raise ConfigError(f"{self.where}.api_version must be a string such as 2024-09-01")
        self.api_version = version

    def auth_headers(self) -> dict[str, str]:
        return {"ocp-apim-subscription-key": self.api_key} if self.api_key else {}

    def post_action(self, action: str, body: dict[str, Any]) -> Awaitable[Any]:
        query = quote(self.api_version, safe="")
        return self.post_json(f"/contentsafety/{action}?api-version={query}", body)


@register("azure/text_moderations")
class AzureTextModerationGuardrail(_ContentSafety):
    def __init__(self, spec: GuardrailSpec) -> None:
        super().__init__(spec)
        params, where = spec.params, self.where
        categories = params.get("categories", list(TEXT_CATEGORIES))
        if not isinstance(categories, list) or not categories:
            raise ConfigError(f"{where}.categories must be a non-empty list")
        for name in categories:
            if name not in TEXT_CATEGORIES:
                known = ", ".join(TEXT_CATEGORIES)
                raise ConfigError(f"{where}.categories: unknown category {name!r} ({known})")
        output_type = params.get("outputType", "FourSeverityLevels")
        if output_type not in OUTPUT_TYPES:
            raise ConfigError(f"{where}.outputType must be one of {', '.join(OUTPUT_TYPES)}")
        self.body_options: dict[str, Any] = {"categories": categories, "outputType": output_type}
        blocklists = params.get("blocklistNames")
        if blocklists:
            if not isinstance(blocklists, list) or not all(isinstance(b, str) for b in blocklists):
                raise ConfigError(f"{where}.blocklistNames must be a list of blocklist names")
            self.body_options["blocklistNames"] = blocklists
            halt = flag(params, "haltOnBlocklistHit", False, where)
            self.body_options["haltOnBlocklistHit"] = halt
        default = params.get("severity_threshold")
        self.default_threshold = (
            DEFAULT_SEVERITY_THRESHOLD
            if default is None
            else _severity(default, f"{where}.severity_threshold")
        )
        by_category = params.get("severity_threshold_by_category") or {}
        if not isinstance(by_category, dict):
            raise ConfigError(f"{where}.severity_threshold_by_category must map categories")
        self.thresholds: dict[str, int] = {}
        for name, value in by_category.items():
            if name not in TEXT_CATEGORIES:
                known = ", ".join(TEXT_CATEGORIES)
                raise ConfigError(
                    f"{where}.severity_threshold_by_category: unknown category {name!r} ({known})"
                )
            self.thresholds[name] = _severity(
                value, f"{where}.severity_threshold_by_category.{name}"
            )

    async def call(self, texts: Sequence[str], context: ScanContext) -> list[Finding]:
        pieces = [(i, chunk) for i, text in enumerate(texts) for chunk in chunks(text)]
        answers = await gather_limited(
            [
                lambda c=chunk: self.post_action("text:analyze", {"text": c, **self.body_options})
                for _, chunk in pieces
            ],
            MAX_PARALLEL_CALLS,
        )
        findings: list[Finding] = []
        judged: set[int] = set()
        for (index, _), answer in zip(pieces, answers, strict=True):
            found = self._verdict(index, len(texts[index]), answer)
            if found and index not in judged:  # one block per text, from its first bad chunk
                judged.add(index)
                findings += found
        return findings

    def _verdict(self, index: int, length: int, answer: Any) -> list[Finding]:
        analysis, matches = _read_analysis(answer)
        findings = []
        for item in analysis:
            category, severity = item["category"], item["severity"]
            threshold = self.thresholds.get(category, self.default_threshold)
            if severity >= threshold:
                message = (
                    f"Azure Content Safety Guardrail: {category} crossed severity {threshold}, "
                    f"Got severity: {severity}"
                )
                findings.append((category, message))
        for match in matches:
            name = match.get("blocklistName")
            findings.append(
                ("Blocklist", f"Azure Content Safety Guardrail: blocklist {name} matched")
            )
        if not findings:
            return []
        details = {
            "azure_content_safety_response": {
                "categoriesAnalysis": analysis,
                # The matched item's text is the client's own words: only which list matched.
                "blocklistsMatch": [
                    {k: m.get(k) for k in ("blocklistName", "blocklistItemId")} for m in matches
                ],
            }
        }
        message = findings[0][1]
        return [
            Finding(index, 0, length, "CONTENT_SAFETY", Action.BLOCK, kind, None, message, details)
            for kind, _ in findings
        ]


@register("azure/prompt_shield")
class AzurePromptShieldGuardrail(_ContentSafety):
    # Prompt Shields judges what goes into a model, not what comes out (LiteLLM: the same).
    capabilities = replace(
        _ContentSafety.capabilities, modes=frozenset({"pre_call", "during_call", "logging_only"})
    )

    def __init__(self, spec: GuardrailSpec) -> None:
        super().__init__(spec)
        roles = spec.params.get("document_roles", ["tool", "function"])
        if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
            raise ConfigError(f"{self.where}.document_roles must be a list of roles")
        self.document_roles = frozenset(roles)

    async def call(self, texts: Sequence[str], context: ScanContext) -> list[Finding]:
        prompts: list[tuple[int, str]] = []
        documents: list[tuple[int, str]] = []
        for index, text in enumerate(texts):
            role = _role(context, index)
            if role in self.document_roles:
                documents += [(index, chunk) for chunk in chunks(text)]
            elif role in (None, "user"):
                prompts += [(index, chunk) for chunk in chunks(text)]
        groups = _document_groups(documents)
        calls = [
            (prompts[n] if n < len(prompts) else None, groups[n] if n < len(groups) else [])
            for n in range(max(len(prompts), len(groups)))
        ]
        answers = await gather_limited(
            [lambda p=prompt, d=docs: self._shield(p, d) for prompt, docs in calls],
            MAX_PARALLEL_CALLS,
        )
        attacked: dict[int, str] = {}  # text index -> which analysis found the attack
        for (prompt, docs), answer in zip(calls, answers, strict=True):
            user, per_document = _read_shield(answer, len(docs))
            if prompt is not None and user.get("attackDetected") is True:
                attacked.setdefault(prompt[0], repr(user))
            for (index, _), analysis in zip(docs, per_document, strict=True):
                if analysis.get("attackDetected") is True:
                    attacked.setdefault(index, repr(analysis))
        return [
            Finding(
                index,
                0,
                len(texts[index]),
                "PROMPT_ATTACK",
                Action.BLOCK,
                "DOCUMENT_ATTACK"
                if _role(context, index) in self.document_roles
                else "USER_PROMPT_ATTACK",
                None,
                SHIELD_MESSAGE,
                {"detection_message": f"Attack detected: {analysis}"},
            )
            for index, analysis in sorted(attacked.items())
        ]

    def _shield(
        self, prompt: tuple[int, str] | None, documents: list[tuple[int, str]]
    ) -> Awaitable[Any]:
        body: dict[str, Any] = {"documents": [chunk for _, chunk in documents]}
        if prompt is not None:
            body["userPrompt"] = prompt[1]
        return self.post_action("text:shieldPrompt", body)


def _attack_kind(is_document: bool) -> str:
    return "DOCUMENT_ATTACK" if is_document else "USER_PROMPT_ATTACK"


def _role(context: ScanContext, index: int) -> str | None:
    return context.roles[index] if index < len(context.roles) else None


def chunks(text: str, limit: int = MAX_TEXT_CHARS) -> list[str]:
    """``text`` in pieces of at most ``limit`` characters, cut after the last whitespace of
    each piece when there is one (a word is not split across two verdicts); blank: none."""
    if not text.strip():
        return []
    pieces = []
    start = 0
    while len(text) - start > limit:
        window = text[start : start + limit]
        cut = max(window.rfind(" "), window.rfind("\n"), window.rfind("\t"))
        end = start + (cut + 1 if cut > 0 else limit)
        pieces.append(text[start:end])
        start = end
    pieces.append(text[start:])
    return pieces


def _document_groups(documents: list[tuple[int, str]]) -> list[list[tuple[int, str]]]:
    """Pack document chunks into calls: at most 5 and 10,000 characters per call."""
    groups: list[list[tuple[int, str]]] = []
    size = 0
    for document in documents:
        length = len(document[1])
        if (
            not groups
            or len(groups[-1]) >= MAX_DOCUMENTS_PER_CALL
            or size + length > MAX_TEXT_CHARS
        ):
            groups.append([])
            size = 0
        groups[-1].append(document)
        size += length
    return groups


def _severity(value: object, where: str) -> int:
    # 0 would block every text (0 is "safe"); LiteLLM reads 0 as unset: say so rather than guess.
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 7:
        raise ConfigError(f"{where} must be a severity from 1 to 7, got {value!r}")
    return value


def _read_analysis(answer: Any) -> tuple[list[dict[str, Any]], list[Mapping[str, Any]]]:
    if not isinstance(answer, dict):
        raise BackendError("azure/text_moderations answered something that is not an object")
    analysis = answer.get("categoriesAnalysis") or []
    matches = answer.get("blocklistsMatch") or []
    if not isinstance(analysis, list) or not isinstance(matches, list):
        raise BackendError("azure/text_moderations answered lists that are not lists")
    for item in analysis:
        if not (
            isinstance(item, dict)
            and isinstance(item.get("category"), str)
            and isinstance(item.setdefault("severity", 0), int)  # optional: absent is 0
        ):
            raise BackendError("azure/text_moderations answered a category without a severity")
    if not all(isinstance(m, dict) for m in matches):
        raise BackendError("azure/text_moderations answered a blocklist match not an object")
    return analysis, matches


def _read_shield(answer: Any, documents: int) -> tuple[Mapping[str, Any], list[Mapping[str, Any]]]:
    if not isinstance(answer, dict):
        raise BackendError("azure/prompt_shield answered something that is not an object")
    user = answer.get("userPromptAnalysis") or {}
    per_document = answer.get("documentsAnalysis") or []
    if not isinstance(user, dict) or not isinstance(per_document, list):
        raise BackendError("azure/prompt_shield answered analyses of the wrong shape")
    if len(per_document) != documents or not all(isinstance(d, dict) for d in per_document):
        raise BackendError("azure/prompt_shield answered without one analysis per document")
    return user, per_document
