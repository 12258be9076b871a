"""A fake Presidio analyzer (``POST /analyze``, ``GET /health``) and anonymizer
(``POST /anonymize``), see guardrail-backends.md §4.

Its recognizers are tiny and fixed, so tests know the results:
EMAIL_ADDRESS (score 1.0), PERSON for the names in ``NAMES`` (0.85), US_SSN ``ddd-dd-dddd``
(0.5), PHONE_NUMBER ``ddd-ddd-dddd`` (0.4), plus the request's ``ad_hoc_recognizers`` (patterns
and deny lists). ``entities`` filters as Presidio does; ``text`` may be a list (a batch).
Errors are Presidio's: JSON ``{"error": ...}``, 500 for a missing text or language or an
unsupported language, 400 for a body that is not a JSON object. Answers have sorted keys.
"""

from __future__ import annotations

import json
from typing import Any

import re2

from tests.fakes.http_fake import FakeService, Reply, Seen

NAMES = ("Jane Doe", "John", "Smith")
LANGUAGES = frozenset({"en"})
BUILT_IN = (
    ("EMAIL_ADDRESS", re2.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+"), 1.0),
    ("US_SSN", re2.compile(r"\b[0-9]{3}-[0-9]{2}-[0-9]{4}\b"), 0.5),
    ("PHONE_NUMBER", re2.compile(r"\b[0-9]{3}-[0-9]{3}-[0-9]{4}\b"), 0.4),
)


class FakePresidio(FakeService):
    def __init__(self) -> None:
        super().__init__()
        self.route("POST", "/analyze", self._analyze)
        self.route("POST", "/anonymize", self._anonymize)
        self.route("GET", "/health", self._health)

    def _health(self, seen: Seen) -> Reply:
        return Reply(200, b"Presidio Analyzer service is up", {"content-type": "text/plain"})

    def _analyze(self, seen: Seen) -> Reply:
        body = seen.body
        if not isinstance(body, dict):
            return Reply(400, {"error": "Failed to parse /analyze request"})
        text = body.get("text")
        if not text:
            return Reply(500, {"error": "No text provided"})
        language = body.get("language")
        if not language:
            return Reply(500, {"error": "No language provided"})
        if language not in LANGUAGES:
            return Reply(500, {"error": f"No matching recognizers were found for {language}"})
        entities = body.get("entities")
        adhoc = body.get("ad_hoc_recognizers") or []
        if isinstance(text, list):
            return Reply(200, _sorted([analyze(t, entities, adhoc) for t in text]))
        return Reply(200, _sorted(analyze(text, entities, adhoc)))

    def _anonymize(self, seen: Seen) -> Reply:
        body = seen.body
        if not isinstance(body, dict) or not body:
            return Reply(400, {"error": "Invalid request json"})
        text = body["text"]
        items = []
        for result in sorted(body.get("analyzer_results", []), key=lambda r: -r["start"]):
            label = f"<{result['entity_type']}>"
            text = text[: result["start"]] + label + text[result["end"] :]
            items.append({"entity_type": result["entity_type"], "operator": "replace"})
        return Reply(200, {"text": text, "items": items})


def _sorted(document: Any) -> bytes:
    return json.dumps(document, sort_keys=True).encode()


def analyze(
    text: str, entities: list[str] | None, adhoc: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Presidio-shaped results for ``text``."""
    found: list[tuple[str, int, int, float]] = []
    for kind, pattern, score in BUILT_IN:
        found += [(kind, *m.span(), score) for m in pattern.finditer(text)]
    for name in NAMES:
        start = text.find(name)
        while start != -1:
            found.append(("PERSON", start, start + len(name), 0.85))
            start = text.find(name, start + len(name))
    for recognizer in adhoc:
        found += _adhoc(text, recognizer)
    return [
        {
            "analysis_explanation": None,
            "end": end,
            "entity_type": kind,
            "score": score,
            "start": start,
        }
        for kind, start, end, score in sorted(found, key=lambda f: (f[1], f[2]))
        if not entities or kind in entities
    ]


def _adhoc(text: str, recognizer: dict[str, Any]) -> list[tuple[str, int, int, float]]:
    kind = recognizer["supported_entity"]
    found = []
    for pattern in recognizer.get("patterns", []):
        compiled = re2.compile(pattern["regex"])
        found += [(kind, *m.span(), float(pattern["score"])) for m in compiled.finditer(text)]
    for word in recognizer.get("deny_list", []):
        start = text.find(word)
        if start != -1:
            found.append((kind, start, start + len(word), 1.0))
    return found
