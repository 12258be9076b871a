"""OpenAI legacy completions (``/completions``, not chat): ``prompt`` and ``suffix``.

``prompt`` may be a string, a list of strings, or token arrays; tokens are not text we can read
and are skipped. Both prompt and suffix are user input, so their role is ``user``.

Stream events: each choice's ``text`` and logprobs tokens, up to ``data: [DONE]``; errors and
the end of a choice as in chat completions.
"""

from __future__ import annotations

from typing import Any

from extproc.formats._replies import json_reply, model_of, now, random_id, sse_reply, wants_stream
from extproc.formats.base import TextSlot, add_string, add_string_or_strings
from extproc.formats.events import ASSISTANT, DeltaSlot, StreamFormat, add_delta, as_int, dict_items
from extproc.formats.openai_chat import DONE, KNOWN_ROOTS, choices_ended, error_event, is_final
from extproc.vocabulary import LOGPROBS, TEXT

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


# -- stream events ---------------------------------------------------------------------------


def event_slots(document: Any, event_name: str | None = None) -> list[DeltaSlot]:
    """Legacy completions: ``choices[].text`` and ``logprobs.tokens`` keyed by ``index``."""
    slots: list[DeltaSlot] = []
    if isinstance(document, dict):
        for position, choice in dict_items(document.get("choices")):
            index = as_int(choice.get("index"), position)
            add_delta(slots, choice, "text", (TEXT, index))
            logprobs = choice.get("logprobs")
            tokens = logprobs.get("tokens") if isinstance(logprobs, dict) else None
            if isinstance(tokens, list):
                for number, token in enumerate(tokens):
                    if isinstance(token, str) and token:
                        channel = (LOGPROBS, index)
                        slots.append(DeltaSlot(tokens, number, token, ASSISTANT, channel))
    return slots


stream = StreamFormat(
    name,
    event_slots,
    error_event,
    DONE,
    is_final,
    ended=choices_ended,
    known_roots=KNOWN_ROOTS,
)
