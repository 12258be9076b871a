"""A fake in-house guardrail service speaking both contracts of extproc/backends/webhook.py.

Rules (per text, so verdicts do not depend on the texts around them): a text containing
``forbidden`` is blocked; e-mail addresses are masked. ``webhook`` answers with spans on
``POST /check``; ``generic_guardrail_api`` with LiteLLM's actions on
``POST /beta/litellm_basic_guardrail_api`` (replacement texts for masks).
"""

from __future__ import annotations

import re2

from tests.fakes.http_fake import FakeService, Reply, Seen

WEBHOOK_PATH = "/check"
GENERIC_PATH = "/beta/litellm_basic_guardrail_api"
BLOCK_WORD = "forbidden"
EMAIL = re2.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")


def webhook_answer(seen: Seen) -> Reply:
    texts = [item["text"] for item in seen.body["texts"]]
    for index, text in enumerate(texts):
        if BLOCK_WORD in text.lower():
            return Reply(200, {"action": "block", "index": index, "reason": "Forbidden topic"})
    spans = [
        {"index": index, "start": m.start(), "end": m.end(), "type": "email", "label": "[EMAIL]"}
        for index, text in enumerate(texts)
        for m in EMAIL.finditer(text)
    ]
    if spans:
        return Reply(200, {"action": "mask", "spans": spans})
    return Reply(200, {"action": "allow"})


def generic_answer(seen: Seen) -> Reply:
    texts = seen.body["texts"]
    if any(BLOCK_WORD in text.lower() for text in texts):
        return Reply(200, {"action": "BLOCKED", "blocked_reason": "Forbidden topic"})
    masked = [EMAIL.sub("[EMAIL]", text) for text in texts]
    if masked != texts:
        return Reply(200, {"action": "GUARDRAIL_INTERVENED", "texts": masked})
    return Reply(200, {"action": "NONE"})


def fake_guardrail_service() -> FakeService:
    """A started-on-enter FakeService with both contracts routed."""
    fake = FakeService()
    fake.route("POST", WEBHOOK_PATH, webhook_answer)
    fake.route("POST", GENERIC_PATH, generic_answer)
    return fake
