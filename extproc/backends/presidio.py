"""Microsoft Presidio's analyzer over REST, as LiteLLM's ``presidio`` guardrail.

One ``POST {presidio_analyzer_api_base}/analyze`` per non-blank text, all concurrently. The
analyzer's spans become findings: ``pii_entities_config`` says per entity ``MASK`` (the default
for anything found) or ``BLOCK``; ``presidio_score_thresholds`` and ``presidio_entities_deny_list``
filter locally before that, as LiteLLM does.

Masks are labelled ``<ENTITY_TYPE>``, exactly what Presidio's anonymizer writes with LiteLLM's
request (it sends no ``anonymizers``, so the default ``replace`` operator applies). We write that
label from the analyzer's spans ourselves and skip ``/anonymize``: the result is the same text
without a second round trip (and a second failure point) per text. Like the anonymizer, we merge
same-type spans that overlap or are separated only by whitespace. With ``output_parse_pii`` the
labels are numbered (``<PERSON_1>``, the same value keeps its number within a request) so the
engine can restore the originals in the answer.

No authentication (Presidio has none); a failing analyzer (non-2xx, not JSON, not a list) raises
``BackendError`` and the guardrail's ``on_error`` decides.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from extproc.backends import register
from extproc.backends.remote import BackendError, RemoteGuardrail
from extproc.config.loader import ConfigError, GuardrailSpec
from extproc.config.params import derived, flag
from extproc.vocabulary import Action, Finding, ScanContext

NUMBERED_PLACEHOLDER = "<{type}_{n}>"
ANALYZER_ENV = "PRESIDIO_ANALYZER_API_BASE"
SYSTEM_ROLES = ("system", "developer")
# presidio_filter_scope (or LiteLLM's older presidio_run_on): which side the guardrail checks.
SCOPES = ("input", "output", "both")
REQUEST_MODES = ("pre_call", "during_call")
_ACTIONS = {"MASK": Action.MASK, "BLOCK": Action.BLOCK}


@register("presidio")
class PresidioGuardrail(RemoteGuardrail):
    """PII spans from a Presidio analyzer, masked as ``<ENTITY_TYPE>`` or blocked per entity."""

    api_base_env = ANALYZER_ENV
    key_required = False
    # Spans of short entities: a streamed answer is analysed window by window with overlap.
    capabilities = replace(RemoteGuardrail.capabilities, checks_streamed_output=True)

    def __init__(self, spec: GuardrailSpec) -> None:
        spec = _as_remote_spec(spec)
        super().__init__(spec)
        params = spec.params
        where = f"guardrail {spec.name!r}: litellm_params"
        self.language = params.get("presidio_language") or "en"
        if not isinstance(self.language, str):
            raise ConfigError(f"{where}.presidio_language must be a string such as 'en'")
        self.entity_actions = _entity_actions(params.get("pii_entities_config"), where)
        self.thresholds = _thresholds(params.get("presidio_score_thresholds"), where)
        self.deny = _names(params.get("presidio_entities_deny_list"), where)
        self.allowed = _phrases(params.get("presidio_phrase_allow_list"), where)
        self.skip_system = flag(params, "presidio_skip_system_developer_message", False, where)
        self.request_options: dict[str, Any] = {}
        if self.entity_actions:
            self.request_options["entities"] = list(self.entity_actions)
        recognizers = params.get("presidio_ad_hoc_recognizers")
        if recognizers is not None:
            self.request_options["ad_hoc_recognizers"] = _load_recognizers(recognizers, where)
        if flag(params, "output_parse_pii", False, where):
            # Numbered, restorable labels (the engine keeps label -> original per request).
            self.capabilities = replace(self.capabilities, default_placeholder=NUMBERED_PLACEHOLDER)

    async def call(self, texts: Sequence[str], context: ScanContext) -> list[Finding]:
        roles = list(context.roles) if len(context.roles) == len(texts) else [None] * len(texts)
        skipped = SYSTEM_ROLES if self.skip_system else ()
        indexes = [i for i, text in enumerate(texts) if text.strip() and roles[i] not in skipped]
        answers = await asyncio.gather(*(self._analyze(texts[i]) for i in indexes))
        findings: list[Finding] = []
        for index, results in zip(indexes, answers, strict=True):
            findings += self._findings(index, texts[index], results)
        return findings

    async def _analyze(self, text: str) -> list[dict[str, Any]]:
        body = {"text": text, "language": self.language, **self.request_options}
        answer = await self.post_json("/analyze", body, {"accept": "application/json"})
        return _results(answer, len(text))

    def _findings(self, index: int, text: str, results: list[dict[str, Any]]) -> list[Finding]:
        kept = [r for r in results if self._kept(r) and not self._allowed(text, r)]
        findings = []
        for start, end, kind in _merged(text, kept):
            action = self.entity_actions.get(kind, Action.MASK)
            findings.append(
                Finding(
                    index,
                    start,
                    end,
                    kind,
                    action,
                    label=f"<{kind}>",
                    message=_block_message(kind, self.name) if action is Action.BLOCK else None,
                )
            )
        return findings

    def _kept(self, result: dict[str, Any]) -> bool:
        """LiteLLM's local filter: the deny list drops a type, a threshold (the entity's, else
        ``ALL``) drops lower scores."""
        kind = result["entity_type"]
        if kind in self.deny:
            return False
        threshold = self.thresholds.get(kind, self.thresholds.get("ALL"))
        return threshold is None or result["score"] >= threshold

    def _allowed(self, text: str, result: dict[str, Any]) -> bool:
        """``presidio_phrase_allow_list``: a span that is one of these phrases (any case) stays."""
        return bool(self.allowed) and text[result["start"] : result["end"]].lower() in self.allowed


def _phrases(config: object, where: str) -> frozenset[str]:
    if config is None:
        return frozenset()
    if not isinstance(config, list) or not all(isinstance(p, str) and p for p in config):
        raise ConfigError(f"{where}.presidio_phrase_allow_list must be a list of phrases")
    return frozenset(p.lower() for p in config)


def _block_message(entity: str, guardrail: str) -> str:
    return (
        f"Blocked entity detected: {entity} by Guardrail: {guardrail}. "
        "This entity is not allowed to be used in this request."
    )


# -- configuration -------------------------------------------------------------------------


def _as_remote_spec(spec: GuardrailSpec) -> GuardrailSpec:
    """LiteLLM's keys onto the remote base's: the analyzer base (``api_base`` also works)
    becomes ``api_base``, a bare host getting ``http://`` as LiteLLM adds; ``apply_to_output``
    adds post_call and ``logging_only: true`` makes it a logging_only guardrail."""
    given = spec.params
    base = given.get("presidio_analyzer_api_base") or given.get("api_base")
    base = base or os.environ.get(ANALYZER_ENV)
    if not base:
        raise ConfigError(
            f"guardrail {spec.name!r}: litellm_params.presidio_analyzer_api_base is required "
            f"(or set {ANALYZER_ENV})"
        )
    if not isinstance(base, str):
        raise ConfigError(
            f"guardrail {spec.name!r}: litellm_params.presidio_analyzer_api_base must be a URL"
        )
    url = base if base.startswith(("http://", "https://")) else f"http://{base}"
    params = derived(given, {"api_base": url})
    modes = spec.modes
    if given.get("logging_only") is True:
        modes = ("logging_only",)
    elif given.get("apply_to_output") is True and "post_call" not in modes:
        modes = (*modes, "post_call")
    modes = _scoped(modes, given, f"guardrail {spec.name!r}: litellm_params")
    return replace(spec, modes=modes, params=params)


def _scoped(modes: tuple[str, ...], params: Any, where: str) -> tuple[str, ...]:
    """``presidio_filter_scope``: ``input`` checks requests only, ``output`` answers only,
    ``both`` both (the request in the configured request mode, else pre_call)."""
    key = "presidio_filter_scope" if "presidio_filter_scope" in params else "presidio_run_on"
    scope = params.get(key)
    if scope is None or "logging_only" in modes:
        return modes
    if scope not in SCOPES:
        raise ConfigError(f"{where}.{key} must be one of {', '.join(SCOPES)}, got {scope!r}")
    request = tuple(m for m in modes if m in REQUEST_MODES) or ("pre_call",)
    if scope == "input":
        return request
    if scope == "output":
        return ("post_call",)
    return (*request, "post_call")


def _entity_actions(config: object, where: str) -> dict[str, Action]:
    if config is None:
        return {}
    if not isinstance(config, Mapping) or not config:
        raise ConfigError(f"{where}.pii_entities_config must be a mapping {{US_SSN: BLOCK}}")
    actions = {}
    for entity, action in config.items():
        chosen = _ACTIONS.get(str(action).upper())
        if not isinstance(entity, str) or chosen is None:
            raise ConfigError(
                f"{where}.pii_entities_config.{entity}: action must be MASK or BLOCK, "
                f"got {action!r}"
            )
        actions[entity] = chosen
    return actions


def _thresholds(config: object, where: str) -> dict[str, float]:
    if config is None:
        return {}
    if not isinstance(config, Mapping):
        raise ConfigError(f"{where}.presidio_score_thresholds must be a mapping {{ENTITY: 0.5}}")
    thresholds = {}
    for entity, value in config.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
            raise ConfigError(
                f"{where}.presidio_score_thresholds.{entity} must be a number from 0 to 1, "
                f"got {value!r}"
            )
        thresholds[str(entity)] = float(value)
    return thresholds


def _names(config: object, where: str) -> frozenset[str]:
    if config is None:
        return frozenset()
    if not isinstance(config, list) or not all(isinstance(n, str) for n in config):
        raise ConfigError(f"{where}.presidio_entities_deny_list must be a list of entity names")
    return frozenset(config)


def _load_recognizers(path: object, where: str) -> list[Any]:
    """LiteLLM's ``presidio_ad_hoc_recognizers``: a JSON file holding the analyzer's
    ``ad_hoc_recognizers`` list, read once at startup (relative to the working directory)."""
    key = f"{where}.presidio_ad_hoc_recognizers"
    if not isinstance(path, str):
        raise ConfigError(f"{key} must be the path of a JSON file")
    try:
        recognizers = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as error:
        raise ConfigError(f"{key}: cannot read {path!r} ({error.strerror or error})") from None
    except ValueError as error:
        raise ConfigError(f"{key}: {path!r} is not valid JSON ({error})") from None
    if not isinstance(recognizers, list) or not all(isinstance(r, dict) for r in recognizers):
        raise ConfigError(f"{key}: {path!r} must hold a JSON list of recognizer objects")
    return recognizers


# -- the analyzer's answer -----------------------------------------------------------------


def _results(answer: object, length: int) -> list[dict[str, Any]]:
    """The analyzer's list, each entry checked: a span outside the text would mask a guess."""
    if not isinstance(answer, list):
        raise BackendError("presidio analyzer answered with something other than a list")
    results = []
    for item in answer:
        if not isinstance(item, dict):
            raise BackendError("presidio analyzer answered with an entry that is not an object")
        start, end = item.get("start"), item.get("end")
        kind, score = item.get("entity_type"), item.get("score")
        if type(start) is not int or type(end) is not int or not isinstance(kind, str) or not kind:
            raise BackendError("presidio analyzer answered with an entry without start/end/type")
        if not 0 <= start < end <= length:
            raise BackendError("presidio analyzer answered with a span outside the text")
        if isinstance(score, bool) or not isinstance(score, int | float):
            score = 0.0
        results.append({"start": start, "end": end, "entity_type": kind, "score": float(score)})
    return results


def _merged(text: str, results: list[dict[str, Any]]) -> list[tuple[int, int, str]]:
    """(start, end, type) with same-type spans merged where they overlap or only whitespace
    separates them, as Presidio's anonymizer does; other overlaps are left to the engine."""
    spans: list[list[Any]] = []
    last_of_type: dict[str, list[Any]] = {}
    for result in sorted(results, key=lambda r: (r["start"], -r["end"])):
        start, end, kind = result["start"], result["end"], result["entity_type"]
        previous = last_of_type.get(kind)
        if previous is not None and (start <= previous[1] or not text[previous[1] : start].strip()):
            previous[1] = max(previous[1], end)
            continue
        span = [start, end, kind]
        spans.append(span)
        last_of_type[kind] = span
    return [(start, end, kind) for start, end, kind in spans]
