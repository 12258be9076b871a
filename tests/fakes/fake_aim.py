"""A fake Aim Security API serving all three generations' paths (see guardrail-backends.md §1).

Its "policies" are tiny and fixed, so tests know the verdicts:
- the last message contains "ignore all previous instructions": block (Jailbreak);
- the last message contains "monitor me": monitor_action;
- any message contains an e-mail address or a name from ``NAMES``: anonymize every message,
  numbering values per type across the chat ("[EMAIL_1]", "[NAME_1]") as Aim does.
It checks what Aim checks: ``Authorization: Bearer <key>`` (401 without) and the message schema
(422 for a role Aim does not accept, such as a bare ``tool``).

``redaction`` picks where the anonymized chat goes: "top" (``redacted_chat``, latest LiteLLM),
"required_action" (``required_action.chat_redaction_result``, 1.74/1.80) or "entities_only"
(no redacted text, only ``last_message_entities``). ``entities=False`` leaves the entities out.
"""

from __future__ import annotations

from typing import Any

import re2

from tests.fakes.http_fake import FakeService, Reply, Seen

JAILBREAK = "ignore all previous instructions"
MONITOR = "monitor me"
NAMES = ("Brian", "Alice Smith")
EMAIL = re2.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
ROLES = frozenset({"system", "user", "assistant"})
PATHS = {
    "fw": ("/fw/v1/analyze", "/fw/v1/analyze"),
    "detect_v2": ("/detect/openai/v2", "/detect/output/v2"),
    "detect": ("/detect/openai", "/detect/output"),
}


class FakeAim(FakeService):
    def __init__(self, key: str = "aim-test-key") -> None:
        super().__init__()
        self.key = key
        self.reset()

    def reset(self) -> None:
        """Back to the documented behaviour (one fake can serve a whole test module)."""
        self.redaction = "top"
        self.entities = True
        self.fail = None
        with self._lock:
            self.requests.clear()
        for generation, (input_path, output_path) in PATHS.items():
            for path in {input_path, output_path}:
                self.route("POST", path, self._handler(generation, path == output_path))

    def _handler(self, generation: str, output: bool) -> Any:
        def handle(seen: Seen) -> Reply:
            if seen.headers.get("authorization") != f"Bearer {self.key}":
                return Reply(401, {"detail": "Authorization header is required"})
            messages = _valid_messages(seen.body, needs_output=output and generation != "fw")
            if messages is None:
                return Reply(422, {"detail": "validation error"})
            if generation != "fw" and output:
                messages = [*messages, {"role": "assistant", "content": seen.body["output"]}]
            if generation == "detect":
                return Reply(200, _detection(messages))
            return Reply(200, self._analysis(messages))

        return handle

    def _analysis(self, messages: list[dict[str, str]]) -> dict[str, Any]:
        last = messages[-1]["content"]
        analysis: dict[str, Any] = {"analysis_time_ms": 3, "policy_drill_down": {}}
        answer: dict[str, Any] = {"analysis_result": analysis, "required_action": None}
        if JAILBREAK in last.lower():
            analysis["policy_drill_down"] = {"Jailbreak": {"detections": []}}
            answer["required_action"] = {
                "action_type": "block_action",
                "policy_name": "Jailbreak protection",
                "detection_message": "Jailbreak detected",
            }
            return answer
        if MONITOR in last.lower():
            answer["required_action"] = {"action_type": "monitor_action", "policy_name": "Audit"}
            return answer
        numbers: dict[tuple[str, str], int] = {}
        redacted = [_redact(m["content"], numbers) for m in messages]
        if not numbers:
            return answer
        entities = [e for e in _entities(last, numbers)] if self.entities else []
        analysis["last_message_entities"] = entities
        analysis["session_entities"] = [
            {"type": kind, "content": value, "name": f"{kind}_{n}"}
            for (kind, value), n in numbers.items()
        ]
        required: dict[str, Any] = {
            "action_type": "anonymize_action",
            "policy_name": "PII",
            "detection_message": "PII detected",
        }
        answer["required_action"] = required
        chat = [{"role": m["role"], "content": r} for m, r in zip(messages, redacted, strict=True)]
        if self.redaction == "top":
            answer["redacted_chat"] = {"all_redacted_messages": chat}
        elif self.redaction == "required_action":
            required["chat_redaction_result"] = {
                "all_redacted_messages": chat,
                "redacted_new_message": chat[-1],
            }
        return answer


def _valid_messages(body: Any, needs_output: bool) -> list[dict[str, str]] | None:
    if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
        return None
    if needs_output and not isinstance(body.get("output"), str):
        return None
    messages = body["messages"]
    for message in messages:
        if not isinstance(message, dict) or set(message) != {"role", "content"}:
            return None
        if message["role"] not in ROLES or not isinstance(message["content"], str):
            return None
    return messages if messages or needs_output else None


def _detection(messages: list[dict[str, str]]) -> dict[str, Any]:
    if messages and JAILBREAK in messages[-1]["content"].lower():
        return {
            "detected": True,
            "details": {"Jailbreak": {}},
            "detection_message": "Jailbreak detected",
        }
    return {"detected": False, "details": {}, "detection_message": ""}


def _matches(text: str) -> list[tuple[int, int, str]]:
    """(start, end, type) of the names and e-mail addresses in ``text``, in order."""
    found = [(m.start(), m.end(), "EMAIL") for m in EMAIL.finditer(text)]
    for name in NAMES:
        start = text.find(name)
        while start >= 0:
            found.append((start, start + len(name), "NAME"))
            start = text.find(name, start + len(name))
    return sorted(found)


def _redact(text: str, numbers: dict[tuple[str, str], int]) -> str:
    pieces, cursor = [], 0
    for start, end, kind in _matches(text):
        key = (kind, text[start:end])
        number = numbers.setdefault(key, 1 + sum(1 for k, _ in numbers if k == kind))
        pieces += (text[cursor:start], f"[{kind}_{number}]")
        cursor = end
    pieces.append(text[cursor:])
    return "".join(pieces)


def _entities(text: str, numbers: dict[tuple[str, str], int]) -> list[dict[str, Any]]:
    return [
        {
            "type": kind,
            "content": text[start:end],
            "name": f"{kind}_{numbers[(kind, text[start:end])]}",
            "start": start,
            "end": end,
            "score": 1.0,
            "certainty": "HIGH",
            "additional_content_index": None,
        }
        for start, end, kind in _matches(text)
    ]
