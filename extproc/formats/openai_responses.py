"""OpenAI Responses API (``/responses``).

Request text: ``instructions`` (role ``instructions``) and ``input``, a string (role ``user``) or
a list of items: messages (content string or input_text/output_text/refusal parts), function and
custom tool calls (``arguments`` / ``input``, role ``assistant``), their outputs (``output``, a
string or parts, role ``tool``) and reasoning summaries. Item references carry no text.
"""

from __future__ import annotations

from typing import Any

from extproc.formats._replies import (
    json_reply,
    model_of,
    now,
    random_hex_id,
    sse_reply,
    wants_stream,
)
from extproc.formats.base import (
    RequestOnlyFormat,
    TextSlot,
    add_string,
    add_text_content,
    add_text_parts,
    role_of,
)

name = "openai_responses"

_TEXT_PARTS = {
    "input_text": "text",
    "output_text": "text",
    "text": "text",
    "refusal": "refusal",
    "summary_text": "text",
    "reasoning_text": "text",
}


def request_texts(document: dict[str, Any]) -> list[TextSlot]:
    slots: list[TextSlot] = []
    add_string(slots, document, "instructions", "instructions")
    value = document.get("input")
    if isinstance(value, str):
        add_string(slots, document, "input", "user")
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, dict):
                _item_texts(slots, item)
    return slots


def response_texts(document: dict[str, Any]) -> list[TextSlot]:
    """``output[]``: message text and refusals, tool-call arguments, reasoning summaries."""
    slots: list[TextSlot] = []
    output = document.get("output")
    if isinstance(output, list):
        for item in output:
            if isinstance(item, dict):
                _item_texts(slots, item)
    return slots


def _item_texts(slots: list[TextSlot], item: dict[str, Any]) -> None:
    kind = item.get("type", "message")  # the "easy" message form has no type
    if kind == "message":
        add_text_content(slots, item, "content", _TEXT_PARTS, role_of(item))
    elif kind == "function_call":
        add_string(slots, item, "arguments", "assistant")
    elif kind == "custom_tool_call":
        add_string(slots, item, "input", "assistant")
    elif kind in ("function_call_output", "custom_tool_call_output"):
        add_text_content(slots, item, "output", _TEXT_PARTS, "tool")
    elif kind == "reasoning":
        for key in ("summary", "content"):
            parts = item.get(key)
            if isinstance(parts, list):
                add_text_parts(slots, parts, _TEXT_PARTS, "assistant")


def synthetic_reply(
    message: str, request: dict[str, Any], model_fallback: str = "guardrail"
) -> tuple[str, bytes]:
    """A completed ``response`` with one assistant message, or the event stream that builds it."""
    response = _response(request, model_of(request, model_fallback))
    item = _message_item(message)
    if wants_stream(request):
        return _stream(response, item)
    response.update(status="completed", output=[item], completed_at=response["created_at"])
    return json_reply(response)


def _response(request: dict[str, Any], model: str) -> dict[str, Any]:
    """The response envelope with status ``in_progress`` and no output yet."""
    instructions = request.get("instructions")
    previous = request.get("previous_response_id")
    return {
        "id": random_hex_id("resp_"),
        "object": "response",
        "created_at": now(),
        "status": "in_progress",
        "completed_at": None,
        "error": None,
        "incomplete_details": None,
        "instructions": instructions if isinstance(instructions, str) else None,
        "max_output_tokens": None,
        "model": model,
        "output": [],
        "parallel_tool_calls": True,
        "previous_response_id": previous if isinstance(previous, str) else None,
        "reasoning": {"effort": None, "summary": None},
        "store": False,
        "temperature": 1.0,
        "text": {"format": {"type": "text"}},
        "tool_choice": "auto",
        "tools": [],
        "top_p": 1.0,
        "truncation": "disabled",
        "usage": {
            "input_tokens": 0,
            "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": 0,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": 0,
        },
        "user": None,
        "metadata": {},
    }


def _message_item(text: str) -> dict[str, Any]:
    return {
        "id": random_hex_id("msg_"),
        "type": "message",
        "status": "completed",
        "role": "assistant",
        "content": [_text_part(text)],
    }


def _text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def _stream(response: dict[str, Any], item: dict[str, Any]) -> tuple[str, bytes]:
    """created, in_progress, item added, part added, delta, text done, part done, item done,
    completed: the full sequence, since SDK stream helpers rebuild the response from it."""
    text = item["content"][0]["text"]
    where = {"item_id": item["id"], "output_index": 0, "content_index": 0}
    started = item | {"status": "in_progress", "content": []}
    completed = response | {
        "status": "completed",
        "output": [item],
        "completed_at": response["created_at"],
    }
    events: list[dict[str, Any]] = [
        {"type": "response.created", "response": response},
        {"type": "response.in_progress", "response": response},
        {"type": "response.output_item.added", "output_index": 0, "item": started},
        {"type": "response.content_part.added", **where, "part": _text_part("")},
        {"type": "response.output_text.delta", **where, "delta": text, "logprobs": []},
        {"type": "response.output_text.done", **where, "text": text, "logprobs": []},
        {"type": "response.content_part.done", **where, "part": _text_part(text)},
        {"type": "response.output_item.done", "output_index": 0, "item": item},
        {"type": "response.completed", "response": completed},
    ]
    for number, event in enumerate(events):
        event["sequence_number"] = number
    return sse_reply((event["type"], event) for event in events)


# ``/responses/input_tokens`` takes a request of the same shape but answers with a count.
input_tokens = RequestOnlyFormat("openai_responses_input_tokens", request_texts)
