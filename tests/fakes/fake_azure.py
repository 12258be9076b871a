"""A fake Azure AI Content Safety resource on a :class:`FakeService`.

Real shapes: ``POST /contentsafety/text:analyze`` and ``/contentsafety/text:shieldPrompt``
with ``api-version`` in the query and the ``Ocp-Apim-Subscription-Key`` header; Azure's
``{"error": {"code", "message"}}`` envelope for a wrong key (401), a missing api-version (404)
and over-long input (400 InvalidRequestBody: text over 10,000 characters; Prompt Shields: a
user prompt over 10,000, more than 5 documents or documents over 10,000 in total).
Severities and attacks come from trigger words; ``banned-terms`` is a blocklist holding
"frobnicate".
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

import re2

from tests.fakes.http_fake import FakeService, Reply, Seen

LIMIT = 10_000
CATEGORIES = ("Hate", "SelfHarm", "Sexual", "Violence")
# trigger -> (category, severity on the four-level scale)
TRIGGERS = [
    (re2.compile(r"(?i)\bi hate you\b"), "Hate", 2),
    (re2.compile(r"(?i)\bvermin\b"), "Hate", 4),
    (re2.compile(r"(?i)\bhurt\b"), "Violence", 4),
    (re2.compile(r"(?i)\bslap\b"), "Violence", 2),
]
BLOCKLISTS = {"banned-terms": [("item-1", "frobnicate")]}
ATTACK = re2.compile(r"(?i)ignore (?:all )?(?:prior|previous) (?:rules|instructions)")


def _error(status: int, code: str, message: str) -> Reply:
    return Reply(status, {"error": {"code": code, "message": message}})


def _check_request(seen: Seen, key: str) -> Reply | None:
    if seen.headers.get("ocp-apim-subscription-key") != key:
        return _error(
            401,
            "401",
            "Access denied due to invalid subscription key or wrong API endpoint.",
        )
    if not parse_qs(seen.query).get("api-version"):
        return _error(404, "ResourceNotFound", "The api-version query parameter is missing.")
    if not isinstance(seen.body, dict):
        return _error(400, "InvalidRequestBody", "The request body is not JSON.")
    return None


def _analyze(body: dict[str, Any]) -> Reply:
    text = body.get("text")
    if not isinstance(text, str) or not text or len(text) > LIMIT:
        return _error(400, "InvalidRequestBody", "Text must be 1 to 10000 characters long.")
    wanted = body.get("categories") or list(CATEGORIES)
    eight = body.get("outputType") == "EightSeverityLevels"
    severity = dict.fromkeys(CATEGORIES, 0)
    for pattern, category, level in TRIGGERS:
        if pattern.search(text):
            severity[category] = max(severity[category], level + (1 if eight else 0))
    matches = [
        {"blocklistName": name, "blocklistItemId": item, "blocklistItemText": term}
        for name in body.get("blocklistNames") or []
        for item, term in BLOCKLISTS.get(name, [])
        if term in text.lower()
    ]
    if matches and body.get("haltOnBlocklistHit"):
        return Reply(200, {"blocklistsMatch": matches, "categoriesAnalysis": []})
    analysis = [{"category": c, "severity": severity[c]} for c in CATEGORIES if c in wanted]
    return Reply(200, {"blocklistsMatch": matches, "categoriesAnalysis": analysis})


def _shield(body: dict[str, Any]) -> Reply:
    prompt = body.get("userPrompt", "")
    documents = body.get("documents") or []
    if not isinstance(prompt, str) or len(prompt) > LIMIT:
        return _error(400, "InvalidRequestBody", "userPrompt is over 10000 characters.")
    if len(documents) > 5 or sum(len(d) for d in documents) > LIMIT:
        return _error(400, "InvalidRequestBody", "Too many documents or documents too long.")
    return Reply(
        200,
        {
            "userPromptAnalysis": {"attackDetected": bool(ATTACK.search(prompt))},
            "documentsAnalysis": [{"attackDetected": bool(ATTACK.search(d))} for d in documents],
        },
    )


def install(fake: FakeService, key: str) -> FakeService:
    """Serve both Content Safety actions on ``fake``; ``key``: the subscription key."""

    def serve(action: Any) -> Any:
        return lambda seen: _check_request(seen, key) or action(seen.body)

    fake.route("POST", "/contentsafety/text:analyze", serve(_analyze))
    fake.route("POST", "/contentsafety/text:shieldPrompt", serve(_shield))
    return fake
