"""A fake OpenAI moderation endpoint (``POST /v1/moderations``) on a :class:`FakeService`.

Real shapes: Bearer auth with OpenAI's 401 error envelope, ``input`` as a string or a list of
strings (one result per item), every omni-moderation category in ``categories``,
``category_scores`` and ``category_applied_input_types``. Scores come from trigger words;
a category is flagged at 0.5 and above.
"""

from __future__ import annotations

from typing import Any

import re2

from tests.fakes.http_fake import FakeService, Reply, Seen

CATEGORIES = (
    "harassment",
    "harassment/threatening",
    "hate",
    "hate/threatening",
    "illicit",
    "illicit/violent",
    "self-harm",
    "self-harm/instructions",
    "self-harm/intent",
    "sexual",
    "sexual/minors",
    "violence",
    "violence/graphic",
)
# trigger -> scores it raises
TRIGGERS: list[tuple[Any, dict[str, float]]] = [
    (re2.compile(r"(?i)\bhurt\b"), {"violence": 0.93, "harassment/threatening": 0.61}),
    (re2.compile(r"(?i)\bpunch\b"), {"violence": 0.42}),  # under OpenAI's flag, over 0.4
    (re2.compile(r"(?i)\bvermin\b"), {"hate": 0.81, "harassment": 0.7}),
]
BASELINE = 0.0004
FLAG_AT = 0.5


def result_for(text: str) -> dict[str, Any]:
    scores = dict.fromkeys(CATEGORIES, BASELINE)
    for pattern, raised in TRIGGERS:
        if pattern.search(text):
            for category, score in raised.items():
                scores[category] = max(scores[category], score)
    categories = {c: s >= FLAG_AT for c, s in scores.items()}
    return {
        "flagged": any(categories.values()),
        "categories": categories,
        "category_scores": scores,
        "category_applied_input_types": {c: ["text"] for c in CATEGORIES},
    }


def _error(status: int, message: str, code: str | None, kind: str) -> Reply:
    return Reply(status, {"error": {"message": message, "type": kind, "param": None, "code": code}})


def install(fake: FakeService, key: str, path: str = "/v1/moderations") -> FakeService:
    """Serve the moderations route on ``fake``; ``key``: the API key it accepts."""

    def moderate(seen: Seen) -> Reply:
        if seen.headers.get("authorization") != f"Bearer {key}":
            return _error(
                401, "Incorrect API key provided.", "invalid_api_key", "invalid_request_error"
            )
        body = seen.body if isinstance(seen.body, dict) else {}
        items = body.get("input")
        if isinstance(items, str):
            items = [items]
        if not isinstance(items, list) or not items or not all(isinstance(i, str) for i in items):
            return _error(400, "Invalid value for 'input'.", None, "invalid_request_error")
        model = body.get("model", "omni-moderation-latest")
        return Reply(
            200,
            {"id": "modr-fake", "model": model, "results": [result_for(i) for i in items]},
        )

    fake.route("POST", path, moderate)
    return fake
