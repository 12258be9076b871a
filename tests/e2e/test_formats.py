"""Every API schema through a real Envoy: where text hides in a request (and in an answer), and
that a guardrail finds it there. Client -> Envoy 1.40 -> extproc -> the bundled fake LLM.

Each request case places one text in one location of one schema; the same builder gives the body
we send (raw e-mail or key) and the body the upstream must receive (masked), so a single equality
checks both that the text was masked and that every other field arrived as sent.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from extproc.stack.processes import Stack
from tests.conftest import module_stack, upstream_last
from tests.conftest import post as post_json

MODEL = "fake-echo-1"
EMAIL = "jane.doe@example.com"
KEY = "AKIA" + "IOSFODNN7EXAMPLE"  # AWS's documented example key, split so scanners skip it

CHAT, COMPLETIONS, EMBEDDINGS = "/v1/chat/completions", "/v1/completions", "/v1/embeddings"
RESPONSES, MESSAGES = "/v1/responses", "/v1/messages"

Build = Callable[[str], dict[str, Any]]


def say(thing: str) -> str:
    return f"send it to {thing} today"


# -- request bodies, one text location each ----------------------------------------------------


def chat(*messages: dict[str, Any]) -> dict[str, Any]:
    return {"model": MODEL, "messages": list(messages), "temperature": 0}


def chat_tool_turn(arguments: str, result: Any) -> dict[str, Any]:
    """A history with an assistant tool call and its result, then a fresh user message."""
    function = {"name": "send", "arguments": arguments}
    call = {"id": "call_1", "type": "function", "function": function}
    return chat(
        {"role": "user", "content": "please send it"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": result},
        {"role": "user", "content": "thanks"},
    )


def responses(value: Any, **extra: Any) -> dict[str, Any]:
    return {"model": MODEL, "input": value, **extra}


def responses_tool_turn(arguments: str, output: str) -> dict[str, Any]:
    return responses(
        [
            {"role": "user", "content": "please send it"},
            {"type": "function_call", "call_id": "c1", "name": "send", "arguments": arguments},
            {"type": "function_call_output", "call_id": "c1", "output": output},
            {"role": "user", "content": "thanks"},
        ]
    )


def messages(*turns: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"model": MODEL, "max_tokens": 64, "messages": list(turns), **extra}


def messages_tool_turn(tool_input: dict[str, Any], result: Any) -> dict[str, Any]:
    use = {"type": "tool_use", "id": "toolu_1", "name": "send", "input": tool_input}
    answer = {"type": "tool_result", "tool_use_id": "toolu_1", "content": result}
    return messages(
        {"role": "user", "content": "please send it"},
        {"role": "assistant", "content": [{"type": "text", "text": "sending"}, use]},
        {"role": "user", "content": [answer, {"type": "text", "text": "thanks"}]},
    )


def text_block(text: str) -> dict[str, str]:
    return {"type": "text", "text": text}


def args(text: str) -> str:
    return json.dumps({"to": text, "urgent": True})


REQUEST_CASES: dict[str, tuple[str, Build]] = {
    "chat-user": (CHAT, lambda t: chat({"role": "user", "content": t})),
    "chat-user-parts": (
        CHAT,
        lambda t: chat({"role": "user", "content": [text_block("look:"), text_block(t)]}),
    ),
    "chat-system": (
        CHAT,
        lambda t: chat({"role": "system", "content": t}, {"role": "user", "content": "hi"}),
    ),
    "chat-developer": (
        CHAT,
        lambda t: chat({"role": "developer", "content": t}, {"role": "user", "content": "hi"}),
    ),
    "chat-assistant-history": (
        CHAT,
        lambda t: chat(
            {"role": "user", "content": "where?"},
            {"role": "assistant", "content": t},
            {"role": "user", "content": "ok"},
        ),
    ),
    "chat-tool-call-arguments": (CHAT, lambda t: chat_tool_turn(args(t), "sent")),
    "chat-tool-result": (CHAT, lambda t: chat_tool_turn("{}", t)),
    "chat-tool-result-parts": (CHAT, lambda t: chat_tool_turn("{}", [text_block(t)])),
    "completions-prompt": (COMPLETIONS, lambda t: {"model": MODEL, "prompt": t, "max_tokens": 5}),
    "completions-prompt-list": (COMPLETIONS, lambda t: {"model": MODEL, "prompt": ["first", t]}),
    "embeddings-input": (EMBEDDINGS, lambda t: {"model": MODEL, "input": t}),
    "embeddings-input-list": (EMBEDDINGS, lambda t: {"model": MODEL, "input": ["a", t, "b"]}),
    "responses-input": (RESPONSES, lambda t: responses(t)),
    "responses-instructions": (RESPONSES, lambda t: responses("hi", instructions=t)),
    "responses-message": (RESPONSES, lambda t: responses([{"role": "user", "content": t}])),
    "responses-input-text-part": (
        RESPONSES,
        lambda t: responses(
            [
                {
                    "type": "message",
                    "role": "user",
                    "content": [{"type": "input_text", "text": t}],
                }
            ]
        ),
    ),
    "responses-function-call-arguments": (RESPONSES, lambda t: responses_tool_turn(args(t), "ok")),
    "responses-function-call-output": (RESPONSES, lambda t: responses_tool_turn("{}", t)),
    "messages-system": (
        MESSAGES,
        lambda t: messages({"role": "user", "content": "hi"}, system=t),
    ),
    "messages-system-blocks": (
        MESSAGES,
        lambda t: messages({"role": "user", "content": "hi"}, system=[text_block(t)]),
    ),
    "messages-user": (MESSAGES, lambda t: messages({"role": "user", "content": t})),
    "messages-user-blocks": (
        MESSAGES,
        lambda t: messages({"role": "user", "content": [text_block("look:"), text_block(t)]}),
    ),
    "messages-tool-use-input": (
        MESSAGES,
        lambda t: messages_tool_turn({"to": {"address": t}, "cc": ["x", t], "n": 1}, "done"),
    ),
    "messages-tool-result": (MESSAGES, lambda t: messages_tool_turn({}, t)),
    "messages-tool-result-blocks": (MESSAGES, lambda t: messages_tool_turn({}, [text_block(t)])),
}


# -- answer shapes: where each schema's echo lands in the response -----------------------------

Where = tuple[str | int, ...]

ANSWERS: dict[str, tuple[str, Build, Where]] = {
    "chat": (
        CHAT,
        lambda t: chat({"role": "user", "content": t}),
        ("choices", 0, "message", "content"),
    ),
    "completions": (
        COMPLETIONS,
        lambda t: {"model": MODEL, "prompt": t},
        ("choices", 0, "text"),
    ),
    "responses": (RESPONSES, lambda t: responses(t), ("output", 0, "content", 0, "text")),
    "messages": (
        MESSAGES,
        lambda t: messages({"role": "user", "content": t}),
        ("content", 0, "text"),
    ),
}


# The last SSE event of each schema's stream: (event name, data or its type).
STREAM_END = {
    CHAT: (None, "[DONE]"),
    COMPLETIONS: (None, "[DONE]"),
    RESPONSES: ("response.completed", "response.completed"),
    MESSAGES: ("message_stop", "message_stop"),
}


def get_in(document: Any, where: Where) -> Any:
    for key in where:
        document = document[key]
    return document


def set_in(document: Any, where: Where, value: Any) -> None:
    get_in(document, where[:-1])[where[-1]] = value


# -- helpers -----------------------------------------------------------------------------------


def post(client: httpx.Client, stack: Stack, path: str, body: dict[str, Any]) -> httpx.Response:
    return post_json(client, stack, body, path)


def direct(client: httpx.Client, stack: Stack, path: str, body: dict[str, Any]) -> httpx.Response:
    """The same request straight to the fake LLM, bypassing Envoy: what an unguarded call gets."""
    return client.post(f"{stack.upstream.url}{path}", content=json.dumps(body).encode())


def assert_openai_error(response: httpx.Response, guardrail: str, what: str = "Request") -> None:
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["code"] == "400"
    assert error["param"] is None
    assert error["message"].startswith(f"{what} blocked by guardrail '{guardrail}'")
    assert error["provider_specific_fields"]["detected"] == ["AWS_ACCESS_KEY"]
    assert KEY not in response.text


def sse_data(body: bytes) -> list[tuple[str | None, Any]]:
    """(event name, parsed data) of each SSE event; ``[DONE]`` stays a string."""
    events = []
    for block in body.decode().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "data" in fields:
            data = fields["data"]
            events.append((fields.get("event"), data if data == "[DONE]" else json.loads(data)))
    return events


case_params = pytest.mark.parametrize(
    ("path", "build"), list(REQUEST_CASES.values()), ids=list(REQUEST_CASES)
)
answer_params = pytest.mark.parametrize(
    ("path", "build", "where"), list(ANSWERS.values()), ids=list(ANSWERS)
)


# -- pre_call, default config (mask PII, block secrets) ----------------------------------------


@case_params
def test_clean_request_reaches_upstream_byte_identical(
    client: httpx.Client, stack: Stack, path: str, build: Build
) -> None:
    sent = json.dumps(build("nothing to see here")).encode()
    response = client.post(
        f"{stack.url}{path}", content=sent, headers={"content-type": "application/json"}
    )
    assert response.status_code == 200
    seen = upstream_last(client, stack)
    assert (seen["path"], seen["body"]) == (path, sent.decode())


@case_params
def test_email_is_masked_everything_else_arrives_as_sent(
    client: httpx.Client, stack: Stack, path: str, build: Build
) -> None:
    response = post(client, stack, path, build(say(EMAIL)))
    assert response.status_code == 200
    seen = upstream_last(client, stack)
    assert seen["path"] == path
    assert json.loads(seen["body"]) == build(say("[EMAIL]"))
    assert int(seen["headers"]["content-length"]) == len(seen["body"].encode())


@case_params
def test_secret_is_blocked_and_never_forwarded(
    client: httpx.Client, stack: Stack, path: str, build: Build
) -> None:
    marker = build("marker-before-block")
    assert post(client, stack, path, marker).status_code == 200
    assert_openai_error(post(client, stack, path, build(say(KEY))), "block-secrets")
    assert json.loads(upstream_last(client, stack)["body"]) == marker


@answer_params
def test_masked_request_is_what_the_model_answers(
    client: httpx.Client, stack: Stack, path: str, build: Build, where: Where
) -> None:
    response = post(client, stack, path, build(say(EMAIL)))
    assert response.status_code == 200
    assert get_in(response.json(), where) == say("[EMAIL]")
    assert response.content == direct(client, stack, path, build(say("[EMAIL]"))).content


@answer_params
def test_masked_streaming_request_streams_back_unchanged(
    client: httpx.Client, stack: Stack, path: str, build: Build, where: Where
) -> None:
    body = build(say(EMAIL)) | {"stream": True}
    through = post(client, stack, path, body)
    assert through.status_code == 200
    assert through.headers["content-type"] == "text/event-stream"
    assert json.loads(upstream_last(client, stack)["body"]) == build(say("[EMAIL]")) | {
        "stream": True
    }
    unguarded = direct(client, stack, path, build(say("[EMAIL]")) | {"stream": True})
    assert through.content == unguarded.content
    name, data = sse_data(through.content)[-1]
    assert (name, data if name is None else data["type"]) == STREAM_END[path]
    assert EMAIL not in through.text
    assert "[EMAIL]" in through.text


def test_embeddings_vectors_come_back_unchanged(client: httpx.Client, stack: Stack) -> None:
    body = {"model": MODEL, "input": [say(EMAIL), "plain"], "encoding_format": "base64"}
    through = post(client, stack, EMBEDDINGS, body)
    assert through.status_code == 200
    masked = body | {"input": [say("[EMAIL]"), "plain"]}
    assert through.content == direct(client, stack, EMBEDDINGS, masked).content
    assert [d["index"] for d in through.json()["data"]] == [0, 1]


# -- post_call: the answer is judged, the request goes up as sent -------------------------------

POST_CALL_CONFIG = """
    guardrails:
      - guardrail_name: answer-pii
        litellm_params: {guardrail: pii, mode: post_call, default_on: true, action: mask}
      - guardrail_name: answer-secrets
        litellm_params: {guardrail: secrets, mode: post_call, default_on: true, action: block}
"""


@pytest.fixture(scope="module")
def post_call_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    yield from module_stack(tmp_path_factory, "post-call", POST_CALL_CONFIG)


@answer_params
def test_post_call_masks_the_answer_not_the_request(
    client: httpx.Client, post_call_stack: Stack, path: str, build: Build, where: Where
) -> None:
    stack = post_call_stack
    sent = build(say(EMAIL))
    response = post(client, stack, path, sent)
    assert response.status_code == 200
    assert json.loads(upstream_last(client, stack)["body"]) == sent  # raw: no pre_call
    expected = direct(client, stack, path, sent).json()
    assert get_in(expected, where) == say(EMAIL)
    set_in(expected, where, say("[EMAIL]"))
    assert response.json() == expected
    # A rewritten answer may go out chunked; when it has a length, the length must be right.
    length = response.headers.get("content-length")
    assert length is None or int(length) == len(response.content)


@answer_params
def test_post_call_clean_answer_passes_byte_identical(
    client: httpx.Client, post_call_stack: Stack, path: str, build: Build, where: Where
) -> None:
    sent = build("nothing to see here")
    response = post(client, post_call_stack, path, sent)
    assert response.status_code == 200
    assert response.content == direct(client, post_call_stack, path, sent).content


@answer_params
def test_post_call_secret_in_the_answer_is_a_400(
    client: httpx.Client, post_call_stack: Stack, path: str, build: Build, where: Where
) -> None:
    sent = build(say(KEY))
    response = post(client, post_call_stack, path, sent)
    assert_openai_error(response, "answer-secrets", what="Response")
    assert json.loads(upstream_last(client, post_call_stack)["body"]) == sent


def test_post_call_embeddings_have_no_text_and_pass(
    client: httpx.Client, post_call_stack: Stack
) -> None:
    sent = {"model": MODEL, "input": [say(EMAIL), say(KEY)]}
    response = post(client, post_call_stack, EMBEDDINGS, sent)
    assert response.status_code == 200
    assert response.content == direct(client, post_call_stack, EMBEDDINGS, sent).content
