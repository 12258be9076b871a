"""OpenAI legacy completions (``/completions``, not chat): ``prompt`` and ``suffix``.

``prompt`` may be a string, a list of strings, or token arrays; tokens are not text we can read
and are skipped. Both prompt and suffix are user input, so their role is ``user``.
"""

from __future__ import annotations

from typing import Any

from extproc.formats._replies import json_reply, model_of, now, random_id, sse_reply, wants_stream
from extproc.formats.base import TextSlot, add_string, add_string_or_strings

name = "openai_completions"


def request_texts(document: dict[str, Any]) -> list[TextSlot]:
    slots: list[TextSlot] = []
    add_string_or_strings(slots, document, "prompt", "user")
    add_string(slots, document, "suffix", "user")
    return slots


def response_texts(document: dict[str, Any]) -> list[TextSlot]:
    slots: list[TextSlot] = []
    choices = document.get("choices")
    if isinstance(choices, list):
        for choice in choices:
            add_string(slots, choice, "text", "assistant")
    return slots


def synthetic_reply(
    message: str, request: dict[str, Any], model_fallback: str = "guardrail"
) -> tuple[str, bytes]:
    """A ``text_completion`` (or its stream: the text, an empty stop chunk, ``[DONE]``)."""
    head = {
        "id": random_id("cmpl-"),
        "object": "text_completion",
        "created": now(),
        "model": model_of(request, model_fallback),
        "system_fingerprint": None,
    }

    def choices(text: str, finish: str | None) -> list[dict[str, Any]]:
        return [{"text": text, "index": 0, "logprobs": None, "finish_reason": finish}]

    if wants_stream(request):
        chunks = [
            head | {"choices": choices(message, None)},
            head | {"choices": choices("", "stop")},
        ]
        return sse_reply(((None, chunk) for chunk in chunks), done=True)
    usage = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    return json_reply(head | {"choices": choices(message, "stop"), "usage": usage})
