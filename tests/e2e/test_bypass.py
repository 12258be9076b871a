"""The bypass suite: attacks generated across classes, through a real Envoy 1.40.

Client -> Envoy -> extproc (pre_call + post_call: pii mask, secrets block) -> the fake LLM.
Each case plants a value (an AWS-format key, which must be blocked, or an e-mail, which must be
masked) and asserts, whatever happened: no byte of the planted value reached the upstream (path,
query and body as it received them), the client never got it back, and no 2xx carried it.

Requests cross: path spellings x APIs x where the value sits in the document x body encodings.
Answers cross: content-types (lying, missing, other letter case, parameters) x framings (JSON,
SSE, plain text, binary) x statuses (2xx, 4xx, 5xx), scripted with the fake's ``x-fake-reply``.
"""

from __future__ import annotations

import base64
import gzip
import itertools
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from extproc.stack.processes import Stack
from tests.conftest import module_stack, upstream_last

KEY = "AKIA" + "QWERTYUIOPASDFGH"  # AWS access-key format (AKIA + 16 of A-Z2-7)
EMAIL = "jane.doe" + "@example.com"
# Pieces that must not show either: a value split over events must not come out in parts.
FRAGMENTS = {KEY: ("AKIAQWE", "PASDFGH"), EMAIL: ("jane.doe", "@example.com", "%40example")}

CONFIG = """
guardrails:
  - guardrail_name: mask-pii
    litellm_params: {guardrail: pii, mode: [pre_call, post_call], default_on: true}
  - guardrail_name: block-secrets
    litellm_params: {guardrail: secrets, mode: [pre_call, post_call], default_on: true}
"""


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    yield from module_stack(tmp_path_factory, "bypass", CONFIG)


def leaked(value: str, *places: Any) -> bool:
    text = " ".join(p if isinstance(p, str) else json.dumps(p) for p in places)
    return value in text or any(fragment in text for fragment in FRAGMENTS[value])


def assert_contained(client: httpx.Client, stack: Stack, value: str, response: httpx.Response):
    body = response.content.decode("utf-8", "replace")
    assert not leaked(value, body), (response.status_code, body[:300])
    seen = upstream_last(client, stack)
    assert not leaked(value, seen.get("path", ""), seen.get("body", "")), seen


# -- requests -------------------------------------------------------------------------------------

PATH_SPELLINGS = {
    "plain": lambda p: p,
    "double-slash": lambda p: p.replace("/", "//", 2),
    "dot-segment": lambda p: p.replace("/v1/", "/v1/./"),
    "dot-dot": lambda p: p.replace("/v1/", "/v1/x/../"),
    "capitals": lambda p: p.upper().replace("/V1", "/v1"),
    "escaped-slash": lambda p: p[::-1].replace("/", "F2%", 1)[::-1],
}


def api_documents(value: str) -> dict[str, list[tuple[str, dict[str, Any]]]]:
    """Per API: (position name, document) with ``value`` planted there."""
    said = f"please keep {value} safe"
    user = {"role": "user", "content": "hello"}
    return {
        "/v1/chat/completions": [
            ("content", {"model": "m", "messages": [{"role": "user", "content": said}]}),
            ("name", {"model": "m", "messages": [{"role": "user", "name": said, "content": "x"}]}),
            ("user", {"model": "m", "messages": [user], "user": said}),
            (
                "split-parts",
                {
                    "model": "m",
                    "messages": [
                        {
                            "role": "user",
                            "content": [
                                {"type": "text", "text": "keep " + value[:9]},
                                {"type": "text", "text": value[9:] + " safe"},
                            ],
                        }
                    ],
                },
            ),
            (
                "tool-description",
                {
                    "model": "m",
                    "messages": [user],
                    "tools": [{"type": "function", "function": {"name": "f", "description": said}}],
                },
            ),
            ("unknown-field", {"model": "m", "messages": [user], "x_extra": {"deep": [said]}}),
            ("key", {"model": "m", "messages": [user], "metadata": {said: "v"}}),
            ("messages-not-a-list", {"model": "m", "messages": {"role": "user", "content": said}}),
        ],
        "/v1/responses": [
            ("input", {"model": "m", "input": said}),
            (
                "prompt-variables",
                {"model": "m", "input": "hi", "prompt": {"variables": {"a": said}}},
            ),
        ],
        "/v1/messages": [
            (
                "content",
                {"model": "m", "max_tokens": 8, "messages": [{"role": "user", "content": said}]},
            ),
            (
                "metadata",
                {"model": "m", "max_tokens": 8, "messages": [user], "metadata": {"user_id": said}},
            ),
        ],
        "/v1/completions": [("prompt", {"model": "m", "prompt": said})],
        "/v1/embeddings": [("input", {"model": "m", "input": [said]})],
        "/v1beta/models/gemini-2.0-flash:generateContent": [
            ("parts", {"contents": [{"role": "user", "parts": [{"text": said}]}]})
        ],
    }


def encoded(document: dict[str, Any], encoding: str, value: str) -> bytes:
    body = json.dumps(document)
    if encoding == "unicode-escapes":  # \u escapes the upstream decodes
        escaped = "".join(f"\\u{ord(c):04x}" for c in value[:6]) + value[6:]
        body = body.replace(value[:9], escaped[: len(escaped) - len(value) + 9])
        assert value not in body
    return body.encode()


@pytest.mark.parametrize("value", [KEY, EMAIL], ids=["key", "email"])
def test_planted_values_never_pass_in_any_request(
    client: httpx.Client, guarded: Stack, value: str
) -> None:
    tried = 0
    for path, documents in api_documents(value).items():
        for (spelling, spell), (position, document), encoding in itertools.product(
            PATH_SPELLINGS.items(), documents, ("plain", "unicode-escapes")
        ):
            body = encoded(document, encoding, value)
            response = client.post(
                f"{guarded.url}{spell(path)}",
                content=body,
                headers={"content-type": "application/json"},
            )
            case = (path, spelling, position, encoding)
            assert not leaked(value, response.text), case
            seen = upstream_last(client, guarded)
            assert not leaked(value, seen.get("path", ""), seen.get("body", "")), case
            if value == KEY:
                assert response.status_code == 400, case
            tried += 1
    assert tried >= 100


@pytest.mark.parametrize("value", [KEY, EMAIL], ids=["key", "email"])
def test_planted_values_never_pass_in_a_query_string(
    client: httpx.Client, guarded: Stack, value: str
) -> None:
    for path in ("/v1/files", "/v1/chat/completions", "/openai/deployments/d/chat/completions"):
        query = httpx.QueryParams({"api-version": "2024-02-01", "q": f"note {value}"})
        response = client.get(f"{guarded.url}{path}?{query}")
        assert_contained(client, guarded, value, response)
        if value == KEY:
            assert response.status_code == 400


def test_bodies_that_cannot_be_read_are_refused(client: httpx.Client, guarded: Stack) -> None:
    before = upstream_last(client, guarded)
    text = json.dumps({"messages": [{"role": "user", "content": KEY}]}).encode()
    cases = [
        ("/v1/chat/completions", gzip.compress(text), {"content-encoding": "gzip"}),
        ("/upload", b"\x89PNG\r\n\x1a\n" + KEY.encode() + b"\xff", {}),
        ("/v1/chat/completions", text[:-1] + b', "messages": []}', {}),  # repeated key
        ("/v1/chat/completions", text.decode().encode("utf-16"), {}),
    ]
    for path, body, headers in cases:
        response = client.post(
            f"{guarded.url}{path}",
            content=body,
            headers={"content-type": "application/json", **headers},
        )
        assert response.status_code in (400, 415), (path, headers, response.status_code)
    assert upstream_last(client, guarded) == before  # none of them reached the upstream


# -- answers --------------------------------------------------------------------------------------

CONTENT_TYPES = [
    "application/json",
    "Application/JSON; charset=utf-8",
    None,
    "text/html",
    "text/plain",
    "application/octet-stream",
    "text/event-stream",
    "TEXT/EVENT-STREAM; charset=utf-8",
]


def framed_answers(value: str) -> dict[str, bytes]:
    said = f"your value is {value} ok"
    chunk = {"id": "c", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {}}]}
    events = [
        {**chunk, "choices": [{"index": 0, "delta": {"content": piece}}]}
        for piece in ("your value is ", value, " ok")
    ]
    sse = (
        b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events) + b"data: [DONE]\n\n"
    )
    pieces = ("your value is ", value[:7], value[7:], " ok")  # the value split over two events
    split = [{**chunk, "choices": [{"index": 0, "delta": {"content": p}}]} for p in pieces]
    sse_split = b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in split)
    gemini = [{"candidates": [{"content": {"parts": [{"text": p}]}}]} for p in pieces]
    sse_gemini = b"".join(b"data: " + json.dumps(e).encode() + b"\r\n\r\n" for e in gemini)
    message = {"role": "assistant", "content": said}
    return {
        "json": json.dumps({"choices": [{"index": 0, "message": message}]}).encode(),
        "error-json": json.dumps({"error": {"message": f"bad input: {said}"}}).encode(),
        "sse": sse,
        "sse-split": sse_split,
        "sse-gemini": sse_gemini,
        "sse-alien": sse_gemini,  # the same events on the chat path: a shape the adapter lacks
        "sse-comment": b": " + said.encode() + b"\n\n" + sse,
        "text": said.encode(),
        "binary": b"\x00\xff\xfe" + said.encode(),
    }


@pytest.mark.parametrize("value", [KEY, EMAIL], ids=["key", "email"])
@pytest.mark.parametrize("chunking", ["batch", "bytes"])
def test_planted_values_never_come_back_in_any_answer(
    client: httpx.Client, guarded: Stack, value: str, chunking: str
) -> None:
    request = {"model": "m", "messages": [{"role": "user", "content": "hello"}]}
    for (framing, body), content_type, status in itertools.product(
        framed_answers(value).items(), CONTENT_TYPES, (200, 400, 500)
    ):
        script = {"status": status, "content_type": content_type}
        script["body_b64"] = base64.b64encode(body).decode()
        path = "/v1/chat/completions"
        if framing == "sse-gemini":  # Gemini's own stream, on its path (CRLF line ends)
            path = "/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse"
        response = client.post(
            f"{guarded.url}{path}",
            json=request,
            headers={"x-fake-reply": json.dumps(script), "x-fake-chunking": chunking},
        )
        case = (framing, content_type, status)
        assert not leaked(value, response.content.decode("utf-8", "replace")), case
        if value == EMAIL and framing != "binary":
            assert response.status_code == status, case  # masked, not refused
        if framing == "binary":
            assert response.status_code == 502, case
