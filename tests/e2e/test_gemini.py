"""Gemini through a real Envoy, spoken by Google's own client (google-genai) pointed at the stack:
requests masked and blocked before the model, answers masked, streams (SSE, CRLF) masked across
any chunking, a block before the first byte a 400 in Google's error shape, a block mid-stream a
data event with a top-level ``error`` that the client raises."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator

import httpx
import pytest
from google import genai
from google.genai import errors, types

from extproc.stack.processes import Stack
from tests.conftest import module_stack, upstream_last
from tests.e2e.planted import BOTH_WAYS_CONFIG, CHUNKINGS, EMAIL, KEY, LONG, reference

MODEL = "gemini-2.0-flash"

CONFIG = BOTH_WAYS_CONFIG


@pytest.fixture(scope="module")
def gemini_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    yield from module_stack(tmp_path_factory, "gemini", CONFIG)


def answer(text: str, finish: str | None = "STOP") -> dict:
    candidate: dict = {"content": {"parts": [{"text": text}], "role": "model"}, "index": 0}
    if finish:
        candidate["finishReason"] = finish
    return {"candidates": [candidate], "modelVersion": MODEL, "responseId": "resp-1"}


def stream_body(text: str, size: int = 4) -> bytes:
    """Google's framing: one GenerateContentResponse per ``data:`` line, CRLF line ends."""
    pieces = [text[i : i + size] for i in range(0, len(text), size)]
    events = [answer(p, "STOP" if i == len(pieces) - 1 else None) for i, p in enumerate(pieces)]
    return b"".join(b"data: " + json.dumps(e).encode() + b"\r\n\r\n" for e in events)


def scripted(body: bytes, content_type: str, chunking: str = "split") -> dict[str, str]:
    reply = {"status": 200, "content_type": content_type, "body_b64": base64.b64encode(body)}
    reply["body_b64"] = reply["body_b64"].decode()  # type: ignore[union-attr]
    return {"x-fake-reply": json.dumps(reply), "x-fake-chunking": chunking}


def client_for(stack: Stack, headers: dict[str, str] | None = None) -> genai.Client:
    options = types.HttpOptions(
        base_url=stack.url, api_version="v1beta", headers=headers or {}, timeout=15_000
    )
    return genai.Client(api_key="dummy-key", http_options=options)


def test_request_text_is_masked_before_the_model(client: httpx.Client, gemini_stack: Stack) -> None:
    headers = scripted(json.dumps(answer("ok")).encode(), "application/json")
    gemini = client_for(gemini_stack, headers)
    config = types.GenerateContentConfig(system_instruction=f"the user is {EMAIL}")
    reply = gemini.models.generate_content(
        model=MODEL, contents=f"write to {EMAIL} today", config=config
    )
    assert reply.text == "ok"
    seen = upstream_last(client, gemini_stack)
    assert seen["path"].startswith(f"/v1beta/models/{MODEL}:generateContent")
    sent = json.loads(seen["body"])
    assert EMAIL not in seen["body"]
    assert sent["contents"][0]["parts"][0]["text"] == reference(f"write to {EMAIL} today")
    assert "EMAIL" in sent["systemInstruction"]["parts"][0]["text"]


def test_function_call_arguments_are_judged(client: httpx.Client, gemini_stack: Stack) -> None:
    gemini = client_for(gemini_stack)
    call = types.Part.from_function_call(name="send", args={"key": f"use {KEY}"})
    contents = [
        types.Content(role="user", parts=[types.Part.from_text(text="send it")]),
        types.Content(role="model", parts=[call]),
    ]
    with pytest.raises(errors.ClientError) as raised:
        gemini.models.generate_content(model=MODEL, contents=contents)
    assert raised.value.code == 400 and "block-secrets" in str(raised.value.message)
    assert KEY not in str(raised.value)


def test_blocked_request_is_googles_error_shape(client: httpx.Client, gemini_stack: Stack) -> None:
    path = f"{gemini_stack.url}/v1beta/models/{MODEL}:generateContent"
    body = {"contents": [{"role": "user", "parts": [{"text": f"key {KEY}"}]}]}
    response = client.post(path, json=body)
    assert response.status_code == 400 and KEY not in response.text
    error = response.json()["error"]
    assert error["code"] == 400 and error["status"] == "INVALID_ARGUMENT"
    assert error["details"][0]["metadata"]["guardrail_name"] == "block-secrets"


def test_blocked_count_tokens_is_googles_error_shape(gemini_stack: Stack) -> None:
    """``:countTokens`` reads the same request; its block is the error google-genai raises."""
    gemini = client_for(gemini_stack)
    with pytest.raises(errors.ClientError) as raised:
        gemini.models.count_tokens(model=MODEL, contents=f"key {KEY}")
    assert raised.value.code == 400 and raised.value.status == "INVALID_ARGUMENT"
    assert "block-secrets" in str(raised.value.message) and KEY not in str(raised.value)


def test_answer_is_masked_keeping_the_rest(client: httpx.Client, gemini_stack: Stack) -> None:
    text = f"mail {EMAIL} now"
    gemini = client_for(
        gemini_stack, scripted(json.dumps(answer(text)).encode(), "application/json")
    )
    reply = gemini.models.generate_content(model=MODEL, contents="hi")
    assert reply.text == reference(text) and EMAIL not in (reply.text or "")
    assert reply.candidates[0].finish_reason == types.FinishReason.STOP
    assert reply.response_id == "resp-1"


@pytest.mark.parametrize("chunking", CHUNKINGS)
def test_streamed_answer_is_masked_across_chunkings(gemini_stack: Stack, chunking: str) -> None:
    text = f"Write to {EMAIL} or bob.smith@corp.example.org; {LONG} then ping {EMAIL} again."
    headers = scripted(stream_body(text), "text/event-stream", chunking)
    gemini = client_for(gemini_stack, headers)  # kept: a collected client closes its stream
    chunks = list(gemini.models.generate_content_stream(model=MODEL, contents="hi"))
    assert "".join(chunk.text or "" for chunk in chunks) == reference(text)
    assert chunks[-1].candidates[0].finish_reason == types.FinishReason.STOP


def test_stream_that_opens_with_a_secret_is_a_400(gemini_stack: Stack) -> None:
    headers = scripted(stream_body(f"{KEY} is the key"), "text/event-stream")
    gemini = client_for(gemini_stack, headers)
    with pytest.raises(errors.ClientError) as raised:
        list(gemini.models.generate_content_stream(model=MODEL, contents="hi"))
    assert raised.value.code == 400 and raised.value.status == "INVALID_ARGUMENT"
    assert "block-secrets" in str(raised.value.message)


def test_mid_stream_block_is_raised_by_the_client(gemini_stack: Stack) -> None:
    text = LONG * 2 + f" the key is {KEY} " + "after the key " * 10
    headers = scripted(stream_body(text), "text/event-stream")
    received: list[str] = []
    gemini = client_for(gemini_stack, headers)
    with pytest.raises(errors.ClientError) as raised:
        for chunk in gemini.models.generate_content_stream(model=MODEL, contents="hi"):
            received.append(chunk.text or "")
    sent = "".join(received)
    assert sent and text.startswith(sent) and KEY[:10] not in sent
    assert raised.value.code == 400 and "block-secrets" in str(raised.value.message)


def test_mid_stream_block_parses_and_ends_cleanly(
    client: httpx.Client, gemini_stack: Stack
) -> None:
    """On the wire: the events before, then one CRLF data event with a top-level ``error``."""
    text = LONG * 2 + f" the key is {KEY} " + "after the key " * 10
    path = f"{gemini_stack.url}/v1beta/models/{MODEL}:streamGenerateContent?alt=sse"
    headers = scripted(stream_body(text), "text/event-stream")
    response = client.post(path, json={"contents": []}, headers=headers)
    assert response.status_code == 200 and KEY[:10] not in response.text
    events = response.content.split(b"\r\n\r\n")
    assert events[-1] == b""  # ends on a whole event
    last = json.loads(events[-2].removeprefix(b"data: "))
    assert set(last) == {"error"} and last["error"]["code"] == 400
    assert all(json.loads(e.removeprefix(b"data: ")) for e in events[:-2])
