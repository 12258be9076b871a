"""``guardrail: litellm_content_filter``: LiteLLM's in-process filter, on our detectors.

A migrating config keeps its ``patterns`` (prebuilt by LiteLLM's names, or custom regex),
``blocked_words`` / ``blocked_words_file``, ``categories`` (prompt injection), MASK/BLOCK actions
and redaction formats. Prebuilt names are served by the ``pii`` and ``secrets`` detectors (checksums
and validity rules included, which LiteLLM's plain regexes lack). A prebuilt name or category we
do not implement is a startup error, never a silently missing check.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import re2
import yaml

from extproc.backends import register
from extproc.backends.base import INPUT, Capabilities, Guardrail, ScanContext, new_finding
from extproc.backends.patterns import PatternGuardrail
from extproc.config.loader import ConfigError, GuardrailSpec
from extproc.text.normalize import normalize, shared_normalization
from extproc.text.offsets import byte_spans_to_chars, utf8
from extproc.text.prefixes import TailHold, Unsupported, normalized_hold
from extproc.text.re2_raw import UNANCHORED, raw_match
from extproc.vocabulary import Action, Finding

_FIND = PatternGuardrail.find
DEFAULT_PATTERN_FORMAT = "[{pattern_name}_REDACTED]"
DEFAULT_KEYWORD_TAG = "[KEYWORD_REDACTED]"


def _card_brand(prefixes: tuple[str, ...]) -> Callable[[str], bool]:
    def accepts(value: str) -> bool:
        digits = "".join(c for c in value if c.isdigit())
        return digits.startswith(prefixes)

    return accepts


# LiteLLM prebuilt pattern name -> (our backend, entity / rule name, optional extra check).
PREBUILT: Mapping[str, tuple[str, str, Callable[[str], bool] | None]] = {
    "email": ("pii", "EMAIL", None),
    "us_ssn": ("pii", "SSN", None),
    "us_ssn_no_dash": ("pii", "SSN", None),
    "us_phone": ("pii", "PHONE", None),
    "credit_card": ("pii", "CREDIT_CARD", None),
    "visa": ("pii", "CREDIT_CARD", _card_brand(("4",))),
    "mastercard": ("pii", "CREDIT_CARD", _card_brand(("51", "52", "53", "54", "55", "22", "23",
                                                       "24", "25", "26", "27"))),
    "amex": ("pii", "CREDIT_CARD", _card_brand(("34", "37"))),
    "discover": ("pii", "CREDIT_CARD", _card_brand(("6011", "65", "644", "645", "646", "647",
                                                     "648", "649"))),
    "ipv4": ("pii", "IP_ADDRESS", lambda value: ":" not in value),
    "ipv6": ("pii", "IP_ADDRESS", lambda value: ":" in value),
    "iban": ("pii", "IBAN", None),
    "eu_iban_enhanced": ("pii", "IBAN", None),
    "aws_access_key": ("secrets", "AWS_ACCESS_KEY", None),
    "aws_secret_key": ("secrets", "AWS_SECRET_KEY", None),
    "github_token": ("secrets", "GITHUB_TOKEN", None),
    "slack_token": ("secrets", "SLACK_TOKEN", None),
    "generic_api_key": ("secrets", "GENERIC_SECRET", None),
}  # fmt: skip
# Prebuilt patterns that are plain regexes here too.
REGEX_PREBUILT = {"url": r"\bhttps?://[^\s<>\"'`]+"}
# Categories served by the prompt_injection model; LiteLLM's severity_threshold -> sensitivity.
INJECTION_CATEGORIES = ("prompt_injection_jailbreak", "prompt_injection_system_prompt")
SEVERITY_TO_SENSITIVITY = {"low": "high", "medium": "medium", "high": "low"}


@dataclass(frozen=True, slots=True)
class _Rule:
    """One configured pattern, keyword list or category: what it is called and what it does."""

    name: str  # LiteLLM's name, upper-cased: the finding's subtype and the mask's {pattern_name}
    action: Action
    label: str | None
    accepts: Callable[[str], bool] | None = None


def _action(value: object, where: str) -> Action:
    action = Action.parse(value if value is not None else "block", where)
    if action is Action.LOG:
        raise ConfigError(f"{where}: litellm_content_filter actions are BLOCK or MASK")
    return action


def _list(params: Mapping[str, Any], key: str, where: str) -> list[Any]:
    value = params.get(key) or []
    if not isinstance(value, list):
        raise ConfigError(f"{where}.{key} must be a list")
    return value


@register("litellm_content_filter")
class ContentFilterGuardrail(Guardrail):
    # Pure (a function of the texts alone): may run in a scan worker process. Streamed answers:
    # released as soon as ``hold_from`` allows (it holds only what could still begin a
    # finding), each push one small scan.
    capabilities = Capabilities(pure=True, stream_stride=1)

    def __init__(self, spec: GuardrailSpec) -> None:
        super().__init__(spec)
        where = f"guardrail {spec.name!r}: litellm_params"
        params = spec.params
        pattern_format = params.get("pattern_redaction_format", DEFAULT_PATTERN_FORMAT)
        if not isinstance(pattern_format, str) or "{pattern_name}" not in pattern_format:
            raise ConfigError(f"{where}.pattern_redaction_format must contain {{pattern_name}}")
        keyword_tag = params.get("keyword_redaction_tag", DEFAULT_KEYWORD_TAG)
        if not isinstance(keyword_tag, str) or not keyword_tag:
            raise ConfigError(f"{where}.keyword_redaction_tag must be a non-empty string")
        self._format = pattern_format
        # Sub-detectors and how their findings map back to the configured rules.
        self._by_entity: dict[tuple[str, str], list[_Rule]] = {}
        self._regexes: list[tuple[Any, _Rule]] = []
        self._detectors: list[Guardrail] = []
        self._keywords: Any = None
        self._keyword_rules: dict[str, _Rule] = {}
        self._injection: _Rule | None = None
        self._load_patterns(_list(params, "patterns", where), f"{where}.patterns")
        self._load_keywords(params, keyword_tag, where)
        self._load_categories(_list(params, "categories", where), f"{where}.categories")
        if not (self._by_entity or self._regexes or self._keywords or self._injection):
            raise ConfigError(f"{where}: no patterns, blocked_words or categories configured")
        self._build_detectors(spec)
        # (type, subtype) of a sub-detector's finding -> the rule ``_map`` gives it whatever its
        # value: the first rule of a PII type or secret subtype, when it has no value check.
        self._plain_rules: dict[tuple[str, str | None], _Rule] = {}
        for (backend, entity), rules in self._by_entity.items():
            if rules[0].accepts is None and backend == "secrets":
                self._plain_rules[("SECRET", entity)] = rules[0]
            elif rules[0].accepts is None:
                self._plain_rules[(entity, None)] = rules[0]
        # What ``_map`` does to the pii detector's findings, as its labels (see find_all).
        self._pii_labels = {
            (entity, None): [(r.accepts, r.action, r.name, r.label) for r in rules]
            for (backend, entity), rules in self._by_entity.items()
            if backend == "pii"
        }
        self._tail, self._window_hold = self._build_tail()
        # The sub-detectors' look-behind is the filter's too.
        looks_back = max((d.capabilities.max_match_chars for d in self._detectors), default=0)
        if looks_back > self.capabilities.max_match_chars:
            self.capabilities = replace(self.capabilities, max_match_chars=looks_back)

    def _build_tail(self) -> tuple[TailHold | None, bool]:
        """The viable-prefix search over the filter's own regexes and keywords (None when there
        are none), and whether the fixed window applies instead (a custom regex whose syntax
        ``prefixes`` does not rewrite)."""
        patterns = [regex.pattern for regex, _ in self._regexes]
        if self._keywords is not None:
            patterns.append(self._keywords.pattern)
        if not patterns:
            return None, False
        try:
            return TailHold(patterns), False
        except (Unsupported, re2.error):
            return None, True

    # -- config -----------------------------------------------------------------------------

    def _label(self, name: str, action: Action) -> str | None:
        return self._format.format(pattern_name=name) if action is Action.MASK else None

    def _load_patterns(self, patterns: list[Any], where: str) -> None:
        for i, item in enumerate(patterns):
            here = f"{where}[{i}]"
            if not isinstance(item, dict):
                raise ConfigError(f"{here} must be a mapping with pattern_type")
            action = _action(item.get("action"), f"{here}.action")
            kind = item.get("pattern_type", "prebuilt")
            if kind == "prebuilt":
                self._load_prebuilt(item.get("pattern_name"), action, here)
            elif kind == "regex":
                name = item.get("name") or item.get("pattern_name")
                if not isinstance(name, str) or not name:
                    raise ConfigError(f"{here}.name is required for a regex pattern")
                self._add_regex(item.get("pattern"), name.upper(), action, f"{here}.pattern")
            else:
                raise ConfigError(f"{here}.pattern_type must be prebuilt or regex, got {kind!r}")

    def _load_prebuilt(self, name: object, action: Action, where: str) -> None:
        if name in REGEX_PREBUILT:
            self._add_regex(REGEX_PREBUILT[name], str(name).upper(), action, where)
            return
        if name not in PREBUILT:
            known = ", ".join(sorted([*PREBUILT, *REGEX_PREBUILT]))
            raise ConfigError(
                f"{where}.pattern_name: prebuilt pattern {name!r} is not available here "
                f"(available: {known}); use a regex pattern instead"
            )
        backend, entity, accepts = PREBUILT[name]
        upper = str(name).upper()
        rule = _Rule(upper, action, self._label(upper, action), accepts)
        self._by_entity.setdefault((backend, entity), []).append(rule)

    def _add_regex(self, pattern: object, name: str, action: Action, where: str) -> None:
        if not isinstance(pattern, str) or not pattern:
            raise ConfigError(f"{where} must be a non-empty regular expression")
        try:
            compiled = re2.compile(pattern)
        except re2.error as error:
            raise ConfigError(f"{where}: not a valid RE2 expression ({error})") from None
        self._regexes.append((compiled, _Rule(name, action, self._label(name, action))))

    def _load_keywords(self, params: Mapping[str, Any], tag: str, where: str) -> None:
        entries = list(_list(params, "blocked_words", where))
        path = params.get("blocked_words_file")
        if path is not None:
            entries += _read_keyword_file(path, f"{where}.blocked_words_file")
        for i, entry in enumerate(entries):
            here = f"{where}.blocked_words[{i}]"
            if isinstance(entry, str):
                entry = {"keyword": entry}
            keyword = entry.get("keyword") if isinstance(entry, dict) else None
            if not isinstance(keyword, str) or not keyword.strip():
                raise ConfigError(f"{here} must be a keyword or a mapping with keyword")
            action = _action(entry.get("action"), f"{here}.action")
            label = tag if action is Action.MASK else None
            self._keyword_rules[keyword.strip().lower()] = _Rule("BLOCKED_WORD", action, label)
        if self._keyword_rules:
            words = sorted(self._keyword_rules, key=len, reverse=True)
            alternation = "|".join(re.escape(w) for w in words)
            self._keywords = re2.compile(rf"(?i)(?:^|\b)(?:{alternation})(?:\b|$)")

    def _load_categories(self, categories: list[Any], where: str) -> None:
        for i, item in enumerate(categories):
            here = f"{where}[{i}]"
            if not isinstance(item, dict) or not isinstance(item.get("category"), str):
                raise ConfigError(f"{here} must be a mapping with category")
            if item.get("enabled", True) is False:
                continue
            category = item["category"]
            if category not in INJECTION_CATEGORIES:
                raise ConfigError(
                    f"{here}.category {category!r} is not available here (available: "
                    f"{', '.join(INJECTION_CATEGORIES)}); {_instead(category, item)}"
                )
            severity = str(item.get("severity_threshold", "medium")).lower()
            if severity not in SEVERITY_TO_SENSITIVITY:
                raise ConfigError(f"{here}.severity_threshold must be low, medium or high")
            action = _action(item.get("action"), f"{here}.action")
            if action is Action.MASK:
                raise ConfigError(f"{here}.action: a category can only BLOCK")
            self._injection = _Rule("PROMPT_INJECTION", action, None)
            self._sensitivity = SEVERITY_TO_SENSITIVITY[severity]

    def _build_detectors(self, spec: GuardrailSpec) -> None:
        from extproc.backends import build  # the registry, at build time (no import cycle)

        def sub(backend: str, **params: Any) -> Guardrail:
            sub_spec = replace(
                spec,
                name=f"{spec.name}/{backend}",
                guardrail=backend,
                params={"guardrail": backend, **params},
            )
            return build(sub_spec)

        pii = sorted({entity for backend, entity in self._by_entity if backend == "pii"})
        if pii:
            self._detectors.append(sub("pii", entities=pii, action="mask"))
        secrets = sorted({entity for backend, entity in self._by_entity if backend == "secrets"})
        if secrets:
            self._detectors.append(sub("secrets", rules=secrets, action="mask"))
        if self._injection is not None:
            self._detectors.append(sub("prompt_injection", sensitivity=self._sensitivity))

    # -- scanning ---------------------------------------------------------------------------

    def hold_from(self, text: str, start: int) -> int:
        """The earliest hold of the sub-detectors and of the filter's own patterns."""
        holds = [d.hold_from(text, start) for d in self._detectors]
        if self._window_hold:
            holds.append(super().hold_from(text, start))
        elif (tail := self._tail) is not None:
            hold = normalized_hold(text, lambda data, _ascii, pos: tail.start(data, pos), start)
            holds.append(max(start, hold or 0))
        return min(holds, default=len(text))

    async def check(self, texts: Sequence[str], context: ScanContext = INPUT) -> list[Finding]:
        # The sub-detectors and the patterns below all match the normalised texts: rewrite each
        # text once, not once per detector.
        with shared_normalization():
            return await self._scan(texts)

    async def _scan(self, texts: Sequence[str]) -> list[Finding]:
        findings: list[Finding] = []
        plain = self._plain_rules
        for detector in self._detectors:
            if isinstance(detector, PatternGuardrail) and type(detector).find is _FIND:
                # The pii detector gives its findings the rules' labels itself (value checks
                # included: ipv4 / ipv6): each finding is built once, and is final.
                findings.extend(detector.find_all(texts, self._pii_labels))
                continue
            for finding in await detector.check(texts):
                # The common case inline (text dense with findings has one every ~15 bytes): a
                # finding type whose first rule has no value check takes that rule.
                rule = plain.get((finding.type, finding.subtype))
                if rule is not None:
                    findings.append(
                        new_finding(
                            finding.index,
                            finding.start,
                            finding.end,
                            finding.type,
                            rule.action,
                            rule.name,
                            rule.label,
                        )
                    )
                    continue
                mapped = self._map(finding, texts[finding.index])
                if mapped is not None:
                    findings.append(mapped)
        if not self._regexes and self._keywords is None:
            return findings
        for index, text in enumerate(texts):
            # Matched as the model reads the text (the shared normalisation), masked on the
            # original: "bl\u200bocked" is the blocked word.
            normalized = normalize(text)
            seen = normalized.text
            data = utf8(seen)
            ascii_only = len(data) == len(seen)
            hits: list[tuple[int, int, _Rule | None]] = []
            for regex, rule in self._regexes:
                hits.extend((start, end, rule) for start, end in _spans(regex, data))
            if self._keywords is not None:
                hits.extend((start, end, None) for start, end in _spans(self._keywords, data))
            if not ascii_only:
                hits = byte_spans_to_chars(data, hits)
            keyword_rules, span = self._keyword_rules, normalized.span
            mapped = not normalized.one_to_one
            by_text: dict[str, _Rule] = {}  # a keyword's rule by its matched text (repeats)
            for start, end, rule in hits:
                if rule is None:  # a keyword: the rule of the word it is
                    matched = seen[start:end]
                    rule = by_text.get(matched)
                    if rule is None:
                        word = matched.lower()
                        rule = keyword_rules.get(word) or next(iter(keyword_rules.values()))
                        by_text[matched] = rule
                first, last = span(start, end) if mapped else (start, end)
                findings.append(
                    new_finding(index, first, last, rule.name, rule.action, rule.name, rule.label)
                )
        return findings

    def _map(self, finding: Finding, text: str) -> Finding | None:
        if finding.type == "PROMPT_INJECTION":
            rule = self._injection
        else:
            key = ("secrets", finding.subtype or "") if finding.type == "SECRET" else None
            rules = self._by_entity.get(key or ("pii", finding.type), [])
            if rules and rules[0].accepts is None:  # the common case: no value check
                rule = rules[0]
            else:
                value = text[finding.start : finding.end]
                rule = None
                for candidate in rules:  # the first whose check accepts the value
                    if candidate.accepts is None or candidate.accepts(value):
                        rule = candidate
                        break
        if rule is None:
            return None
        return self._finding(finding.index, finding.start, finding.end, rule, finding.type)

    @staticmethod
    def _finding(index: int, start: int, end: int, rule: _Rule, kind: str | None = None) -> Finding:
        return new_finding(index, start, end, kind or rule.name, rule.action, rule.name, rule.label)


def _spans(regex: Any, data: bytes) -> list[tuple[int, int]]:
    """Non-empty (start, end) byte spans of ``regex``'s matches in ``data``, left to right, as
    ``finditer`` finds them, through the extension object (no Match object per hit)."""
    match = raw_match(regex)
    spans: list[tuple[int, int]] = []
    pos, size = 0, len(data)
    while pos <= size:
        start, end = match(UNANCHORED, data, pos, size)[0]
        if start < 0:
            break
        if end > start:
            spans.append((start, end))
            pos = end
        else:  # an empty match: step over one character (not into a UTF-8 sequence)
            pos = start + 1
            while pos < size and data[pos] & 0xC0 == 0x80:
                pos += 1
    return spans


def _read_keyword_file(path: object, where: str) -> list[Any]:
    """LiteLLM's YAML (``blocked_words: [{keyword, action}]``) or one keyword per line."""
    if not isinstance(path, str) or not path:
        raise ConfigError(f"{where} must be a file path")
    try:
        text = Path(path).read_text()
    except OSError as error:
        raise ConfigError(f"{where}: cannot read {path}: {error.strerror}") from None
    if path.endswith((".yaml", ".yml")):
        try:
            document = yaml.safe_load(text) or {}
        except yaml.YAMLError as error:
            raise ConfigError(f"{where}: {path} is not valid YAML: {error}") from None
        words = document.get("blocked_words") if isinstance(document, dict) else document
        if not isinstance(words, list):
            raise ConfigError(f"{where}: {path} must hold a blocked_words list")
        return words
    return [line.strip() for line in text.splitlines() if line.strip() and line[0] != "#"]


def _instead(category: str, item: Mapping[str, Any]) -> str:
    """The closest working setting for a LiteLLM category we do not ship."""
    if "category_file" in item:
        return "put the file's keywords in blocked_words_file (LiteLLM's YAML, or one per line)"
    if category.startswith(("harmful_", "bias_")):
        return (
            "for harmful-content categories use a moderation service (guardrail: "
            "openai_moderation, azure/text_moderations or bedrock), or blocked_words / "
            "blocked_words_file with your own list"
        )
    return "the prompt_injection guardrail covers injection and jailbreaks"
