"""OpenAI chat completions: message content (strings and text parts), tool-call arguments."""

from __future__ import annotations

from typing import Any

from extproc.formats.base import TextSlot, string_slot

name = "openai_chat"


def request_texts(document: dict[str, Any]) -> list[TextSlot]:
    slots: list[TextSlot] = []
    messages = document.get("messages")
    if not isinstance(messages, list):
        return slots
    for message in messages:
        if not isinstance(message, dict):
            continue
        content = message.get("content")
        if isinstance(content, str):
            slots += string_slot(message, "content")
        elif isinstance(content, list):
            for part in content:
                if isinstance(part, dict) and part.get("type") in ("text", "input_text"):
                    slots += string_slot(part, "text")
        for call in message.get("tool_calls") or ():
            function = call.get("function") if isinstance(call, dict) else None
            if isinstance(function, dict):
                slots += string_slot(function, "arguments")
    return slots
