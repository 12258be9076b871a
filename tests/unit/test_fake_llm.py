"""The bundled fake LLM: each API schema's shape, echo text and SSE event sequence."""

from __future__ import annotations

import base64
import json
import struct
import threading
from collections.abc import Callable, Iterator

import httpx
import pytest
from botocore.eventstream import EventStreamBuffer

from extproc.stack.fake_llm import FakeLLMServer


@pytest.fixture(scope="module")
def fake() -> Iterator[str]:
    server = FakeLLMServer(("127.0.0.1", 0))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=5, trust_env=False) as client:
        yield client


def sse_events(body: bytes) -> list[tuple[str | None, object]]:
    """(event name or None, parsed data) per SSE event; ``[DONE]`` stays a string."""
    events = []
    for block in body.decode().split("\n\n"):
        if not block:
            continue
        name, data = None, None
        for line in block.split("\n"):
            field, _, value = line.partition(": ")
            if field == "event":
                name = value
            elif field == "data":
                data = value if value == "[DONE]" else json.loads(value)
        events.append((name, data))
    return events


INPUT_TEXT_X = {"type": "input_text", "text": "x"}


# -- JSON answers ------------------------------------------------------------------------------


def test_chat_echoes_the_last_user_message_text_parts(fake: str, http: httpx.Client) -> None:
    messages = [
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "reply"},
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
    ]
    answer = http.post(f"{fake}/v1/chat/completions", json={"messages": messages}).json()
    assert answer["object"] == "chat.completion"
    assert answer["choices"][0]["message"] == {"role": "assistant", "content": "a b"}


@pytest.mark.parametrize(("prompt", "echo"), [("say this", "say this"), (["one", "two"], "two")])
def test_completions_echo_the_prompt(
    fake: str, http: httpx.Client, prompt: object, echo: str
) -> None:
    answer = http.post(f"{fake}/v1/completions", json={"prompt": prompt}).json()
    assert answer["object"] == "text_completion"
    assert answer["choices"] == [
        {"text": echo, "index": 0, "logprobs": None, "finish_reason": "stop"}
    ]


def test_embeddings_one_vector_per_input(fake: str, http: httpx.Client) -> None:
    answer = http.post(f"{fake}/v1/embeddings", json={"input": ["a", "b", "a"]}).json()
    assert answer["object"] == "list"
    data = answer["data"]
    assert [(d["object"], d["index"]) for d in data] == [("embedding", i) for i in range(3)]
    assert all(isinstance(x, float) for x in data[0]["embedding"])
    assert data[0]["embedding"] == data[2]["embedding"] != data[1]["embedding"]


def test_embeddings_base64_decodes_to_the_same_floats(fake: str, http: httpx.Client) -> None:
    floats = http.post(f"{fake}/v1/embeddings", json={"input": "x"}).json()["data"][0]
    body = {"input": "x", "encoding_format": "base64"}
    packed = http.post(f"{fake}/v1/embeddings", json=body).json()["data"][0]["embedding"]
    raw = base64.b64decode(packed)
    decoded = struct.unpack(f"<{len(raw) // 4}f", raw)
    assert decoded == pytest.approx(floats["embedding"], abs=1e-6)


@pytest.mark.parametrize(
    ("value", "echo"),
    [
        ("plain input", "plain input"),
        (
            [
                {"role": "user", "content": "older"},
                {"type": "function_call_output", "call_id": "c", "output": "tool says"},
                {"type": "message", "role": "user", "content": [INPUT_TEXT_X]},
            ],
            "x",
        ),
    ],
)
def test_responses_echo_the_last_user_input(
    fake: str, http: httpx.Client, value: object, echo: str
) -> None:
    answer = http.post(f"{fake}/v1/responses", json={"input": value}).json()
    assert (answer["object"], answer["status"]) == ("response", "completed")
    [item] = answer["output"]
    assert (item["type"], item["role"]) == ("message", "assistant")
    assert item["content"] == [{"type": "output_text", "text": echo, "annotations": []}]


def test_anthropic_message_echoes_the_last_user_text(fake: str, http: httpx.Client) -> None:
    body = {
        "system": "be brief",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi claude"}]}],
    }
    answer = http.post(f"{fake}/v1/messages", json=body).json()
    assert (answer["type"], answer["role"], answer["stop_reason"]) == (
        "message",
        "assistant",
        "end_turn",
    )
    assert answer["content"] == [{"type": "text", "text": "hi claude"}]
    assert answer["usage"] == {"input_tokens": 0, "output_tokens": 2}


def test_identical_requests_get_identical_bytes(fake: str, http: httpx.Client) -> None:
    body = {"input": "same", "stream": True}
    first = http.post(f"{fake}/v1/responses", json=body).content
    assert http.post(f"{fake}/v1/responses", json=body).content == first


# -- streams -----------------------------------------------------------------------------------


def test_completions_stream(fake: str, http: httpx.Client) -> None:
    response = http.post(f"{fake}/v1/completions", json={"prompt": "a b c", "stream": True})
    assert response.headers["content-type"] == "text/event-stream"
    events = sse_events(response.content)
    assert events[-1] == (None, "[DONE]")
    chunks = [data for _, data in events[:-1]]
    assert {c["object"] for c in chunks} == {"text_completion"}
    assert "".join(c["choices"][0]["text"] for c in chunks) == "a b c"
    assert [c["choices"][0]["finish_reason"] for c in chunks] == [None, None, None, "stop"]


def test_responses_stream_event_sequence(fake: str, http: httpx.Client) -> None:
    response = http.post(f"{fake}/v1/responses", json={"input": "one two", "stream": True})
    events = sse_events(response.content)
    assert all(name == data["type"] for name, data in events)
    assert [d["sequence_number"] for _, d in events] == list(range(len(events)))
    names = [name for name, _ in events]
    assert names[:2] == ["response.created", "response.in_progress"]
    assert names[-1] == "response.completed"
    deltas = [d["delta"] for n, d in events if n == "response.output_text.delta"]
    assert deltas == ["one", " two"]
    final = events[-1][1]["response"]
    assert final["status"] == "completed"
    assert final["output"][0]["content"][0]["text"] == "one two"


def test_anthropic_stream_event_sequence(fake: str, http: httpx.Client) -> None:
    body = {"messages": [{"role": "user", "content": "x y"}], "stream": True}
    events = sse_events(http.post(f"{fake}/v1/messages", json=body).content)
    names = [name for name, _ in events]
    assert all(name == data["type"] for name, data in events)
    assert names == [
        "message_start",
        "content_block_start",
        "ping",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    deltas = [d["delta"] for n, d in events if n == "content_block_delta"]
    assert deltas == [{"type": "text_delta", "text": "x"}, {"type": "text_delta", "text": " y"}]
    assert events[-2][1]["delta"]["stop_reason"] == "end_turn"


CLAUDE_BODY = {
    "anthropic_version": "bedrock-2023-05-31",
    "messages": [{"role": "user", "content": "x y"}],
}


def claude_delta(event: dict) -> str | None:
    return event["delta"]["text"] if event["type"] == "content_block_delta" else None


# (request body, its answer's text, the text of one of its stream events or None)
BEDROCK_SHAPES = [
    (CLAUDE_BODY, lambda a: a["content"][0]["text"], claude_delta),
    ({"inputText": "x y"}, lambda a: a["results"][0]["outputText"], lambda e: e["outputText"]),
    ({"prompt": "x y"}, lambda a: a["generation"], lambda e: e["generation"]),
]


@pytest.mark.parametrize(("body", "said", "piece"), BEDROCK_SHAPES)
def test_bedrock_invoke_echoes_in_the_providers_shape(
    fake: str, http: httpx.Client, body: dict, said: Callable, piece: Callable
) -> None:
    model = "/model/any.model-v1%3A0"
    assert said(http.post(f"{fake}{model}/invoke", json=body).json()) == "x y"
    response = http.post(f"{fake}{model}/invoke-with-response-stream", json=body)
    assert response.headers["content-type"] == "application/vnd.amazon.eventstream"
    buffer = EventStreamBuffer()  # botocore's decoder checks both CRCs of every frame
    buffer.add_data(response.content)
    events = []
    for message in buffer:
        assert message.headers[":event-type"] == "chunk"
        assert message.headers[":message-type"] == "event"
        events.append(json.loads(base64.b64decode(json.loads(message.payload)["bytes"])))
    assert [p for p in map(piece, events) if p] == ["x", " y"]


# -- HTTP behaviour ----------------------------------------------------------------------------


def test_unknown_post_path_is_404_but_recorded(fake: str, http: httpx.Client) -> None:
    response = http.post(f"{fake}/v1/unknown", content=b"payload-123")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "404"
    last = http.get(f"{fake}/_fake/last").json()
    assert (last["method"], last["path"], last["body"]) == ("POST", "/v1/unknown", "payload-123")


def test_chunked_request_body_is_read(fake: str, http: httpx.Client) -> None:
    parts = [b'{"prompt": ', b'"chunked ok"}']
    response = http.post(f"{fake}/v1/completions", content=iter(parts))
    assert response.json()["choices"][0]["text"] == "chunked ok"
    assert http.get(f"{fake}/_fake/last").json()["headers"]["transfer-encoding"] == "chunked"


def test_non_object_json_is_400(fake: str, http: httpx.Client) -> None:
    assert http.post(f"{fake}/v1/messages", content=b"[1]").status_code == 400


@pytest.mark.parametrize("method", ["GET", "POST", "PUT"])
def test_scripted_reply_is_sent_as_spelled_out(fake: str, http: httpx.Client, method: str) -> None:
    body = b'data: {"x": 1}\n\nnot json at all'
    script = {"status": 418, "content_type": "Text/Plain; charset=UTF-8"}
    script["body_b64"] = base64.b64encode(body).decode()
    headers = {"x-fake-reply": json.dumps(script), "x-fake-chunking": "bytes"}
    answer = http.request(method, f"{fake}/any/path", headers=headers, content=b"\xff\xfe")
    assert answer.status_code == 418
    assert answer.headers["content-type"] == "Text/Plain; charset=UTF-8"
    assert answer.content == body
    last = http.get(f"{fake}/_fake/last").json()
    assert (last["method"], last["path"]) == (method, "/any/path")


def test_scripted_reply_without_content_type(fake: str, http: httpx.Client) -> None:
    script = {"status": 200, "content_type": None, "body_b64": base64.b64encode(b"hi").decode()}
    answer = http.post(f"{fake}/v1/chat/completions", headers={"x-fake-reply": json.dumps(script)})
    assert answer.status_code == 200 and answer.content == b"hi"
    assert "content-type" not in answer.headers
