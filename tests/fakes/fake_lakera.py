"""A fake Lakera Guard v2 API: ``POST /v2/guard`` (see guardrail-backends.md §3).

Its "policy" is tiny and fixed, so tests know the verdicts:
- "ignore all previous instructions" in any message: ``prompt_attack`` (no spans);
- an e-mail address: ``pii/email``; 16 digits in a row: ``pii/credit_card`` (spans);
- the word "darn": ``moderated_content/profanity`` (spans; so ``on_flagged: mask`` can mask it).
It checks what Lakera checks: ``Authorization: Bearer <key>`` (401 without) and the body's shape
(422: messages not a list of ``{role, content: str}``, unknown role, non-bool flags), accepting
``null`` for ``project_id``/``metadata`` as LiteLLM sends them. ``payload``, ``breakdown`` and
``dev_info`` are in the answer only when asked for, as the real API does.
"""

from __future__ import annotations

import uuid
from typing import Any

import re2

from tests.fakes.http_fake import FakeService, Reply, Seen

PROMPT_ATTACK = "ignore all previous instructions"
EMAIL = re2.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
CARD = re2.compile(r"\b[0-9]{16}\b")
PROFANITY = re2.compile(r"\bdarn\b")
ROLES = frozenset({"system", "developer", "user", "assistant", "tool"})
SPAN_DETECTORS = (("pii/email", EMAIL), ("pii/credit_card", CARD))
SPAN_DETECTORS += (("moderated_content/profanity", PROFANITY),)


class FakeLakera(FakeService):
    def __init__(self, key: str = "lakera-test-key") -> None:
        super().__init__()
        self.key = key
        self.route("POST", "/v2/guard", self._guard)

    def _guard(self, seen: Seen) -> Reply:
        if seen.headers.get("authorization") != f"Bearer {self.key}":
            return Reply(401, {"detail": "Invalid API key"})
        body = seen.body
        if not _valid(body):
            return Reply(422, {"detail": [{"msg": "validation error"}]})
        return Reply(200, verdict(body))


def _valid(body: Any) -> bool:
    if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
        return False
    for message in body["messages"]:
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            return False
        if not isinstance(message.get("content"), str):
            return False
    flags_ok = all(body.get(k) is None or isinstance(body[k], bool) for k in _FLAGS)
    project_ok = body.get("project_id") is None or isinstance(body["project_id"], str)
    metadata_ok = body.get("metadata") is None or isinstance(body["metadata"], dict)
    return flags_ok and project_ok and metadata_ok


_FLAGS = ("payload", "breakdown", "dev_info")


def verdict(body: dict[str, Any]) -> dict[str, Any]:
    """What Lakera answers for ``body`` under the fake's fixed policy."""
    payload: list[dict[str, Any]] = []
    fired: dict[str, int] = {}  # detector type -> first message it fired on
    for message_id, message in enumerate(body["messages"]):
        content = message["content"]
        if PROMPT_ATTACK in content.lower():
            fired.setdefault("prompt_attack", message_id)
        for detector, pattern in SPAN_DETECTORS:
            for match in pattern.finditer(content):
                fired.setdefault(detector, message_id)
                start, end = match.span()
                payload.append(
                    {
                        "start": start,
                        "end": end,
                        "text": match.group(0),
                        "detector_type": detector,
                        "labels": [],
                        "message_id": message_id,
                    }
                )
    project = body.get("project_id") or "project-default"
    detectors = ["prompt_attack", *(d for d, _ in SPAN_DETECTORS)]
    answer: dict[str, Any] = {
        "flagged": bool(fired),
        "metadata": {"request_uuid": str(uuid.uuid4())},
    }
    if body.get("payload"):
        answer["payload"] = payload
    if body.get("breakdown"):
        answer["breakdown"] = [
            {
                "project_id": project,
                "policy_id": "policy-1",
                "detector_id": f"detector-{i}",
                "detector_type": detector,
                "detected": detector in fired,
                "message_id": fired.get(detector),
            }
            for i, detector in enumerate(detectors)
        ]
    if body.get("dev_info"):
        answer["dev_info"] = {
            "git_revision": "abc1234",
            "git_timestamp": "2025-01-01T00:00:00Z",
            "model_version": "fake",
            "version": "2.0.0",
        }
    return answer
