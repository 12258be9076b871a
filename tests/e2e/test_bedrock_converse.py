"""Bedrock Converse through a real Envoy, spoken by boto3's ``bedrock-runtime`` client pointed at
the stack with ``endpoint_url``: requests masked and blocked before the model, answers masked,
``converse_stream``'s AWS event-stream frames masked across any chunking (re-encoded with valid
CRCs, ``messageStop`` and ``metadata`` kept), a block before the first byte a ``ClientError``,
a block mid-stream an ``exception`` frame that botocore raises as a ``ClientError`` (not a
connection error), and broken frames refused."""

from __future__ import annotations

import base64
import json
import struct
import zlib
from collections.abc import Iterator
from typing import Any

import boto3
import httpx
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, EventStreamError

from extproc.stack.processes import Stack
from tests.conftest import module_stack, upstream_last
from tests.e2e.planted import BOTH_WAYS_CONFIG, CHUNKINGS, EMAIL, KEY, LONG, reference

MODEL = "anthropic.claude-3-haiku-20240307-v1:0"  # boto3 sends the ":" as %3A

CONFIG = BOTH_WAYS_CONFIG


@pytest.fixture(scope="module")
def bedrock_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    yield from module_stack(tmp_path_factory, "bedrock-converse", CONFIG)


def runtime(stack: Stack, headers: dict[str, str] | None = None) -> Any:
    """A bedrock-runtime client for the stack (dummy credentials, no retries), adding
    ``headers`` (the fake LLM's script) to every request."""
    client = boto3.client(
        "bedrock-runtime",
        endpoint_url=stack.url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"max_attempts": 1}, read_timeout=15, connect_timeout=5),
    )

    def add_headers(request: Any, **_: Any) -> None:
        for name, value in (headers or {}).items():
            request.headers[name] = value

    client.meta.events.register("before-sign.bedrock-runtime.*", add_headers)
    return client


# An event-stream encoder of our own, written from AWS's format description: the upstream's
# frames must not come from the code under test.
def _string_header(name: str, value: str) -> bytes:
    return (
        bytes([len(name)])
        + name.encode()
        + b"\x07"
        + struct.pack(">H", len(value))
        + value.encode()
    )


def upstream_frame(kind: str, body: dict, message_type: str = "event") -> bytes:
    """An ``event`` frame of type ``kind`` (or an ``exception`` frame of that exception)."""
    headers = (
        _string_header(f":{message_type}-type", kind)
        + _string_header(":content-type", "application/json")
        + _string_header(":message-type", message_type)
    )
    payload = json.dumps(body, separators=(",", ":")).encode()  # compact, as AWS sends it
    prelude = struct.pack(">II", 16 + len(headers) + len(payload), len(headers))
    message = prelude + struct.pack(">I", zlib.crc32(prelude)) + headers + payload
    return message + struct.pack(">I", zlib.crc32(message))


def stream_body(text: str, size: int = 4) -> bytes:
    pieces = [text[i : i + size] for i in range(0, len(text), size)]
    frames = [upstream_frame("messageStart", {"role": "assistant", "p": "abcdefgh"})]
    frames += [
        upstream_frame(
            "contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": p}, "p": "ab"}
        )
        for p in pieces
    ]
    frames += [
        upstream_frame("contentBlockStop", {"contentBlockIndex": 0}),
        upstream_frame("messageStop", {"stopReason": "end_turn"}),
        upstream_frame(
            "metadata",
            {
                "usage": {"inputTokens": 3, "outputTokens": 5, "totalTokens": 8},
                "metrics": {"latencyMs": 7},
            },
        ),
    ]
    return b"".join(frames)


def answer(text: str) -> dict:
    return {
        "output": {"message": {"role": "assistant", "content": [{"text": text}]}},
        "stopReason": "end_turn",
        "usage": {"inputTokens": 3, "outputTokens": 5, "totalTokens": 8},
        "metrics": {"latencyMs": 7},
    }


def scripted(body: bytes, content_type: str, chunking: str = "split") -> dict[str, str]:
    script = {"status": 200, "content_type": content_type}
    script["body_b64"] = base64.b64encode(body).decode()
    return {"x-fake-reply": json.dumps(script), "x-fake-chunking": chunking}


EVENTSTREAM = "application/vnd.amazon.eventstream"


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": [{"text": text}]}]


def test_converse_request_is_masked_and_answer_masked(
    client: httpx.Client, bedrock_stack: Stack
) -> None:
    said = f"mail {EMAIL} today"
    bedrock = runtime(
        bedrock_stack, scripted(json.dumps(answer(said)).encode(), "application/json")
    )
    reply = bedrock.converse(
        modelId=MODEL, messages=user(f"write to {EMAIL}"), system=[{"text": f"user {EMAIL}"}]
    )
    seen = upstream_last(client, bedrock_stack)
    assert seen["path"].endswith("/converse") and "claude-3-haiku" in seen["path"]
    assert EMAIL not in seen["body"]
    sent = json.loads(seen["body"])
    assert sent["messages"][0]["content"][0]["text"] == reference(f"write to {EMAIL}")
    assert reply["output"]["message"]["content"][0]["text"] == reference(said)
    assert reply["stopReason"] == "end_turn" and reply["usage"]["totalTokens"] == 8


def test_converse_tool_use_input_is_judged(bedrock_stack: Stack) -> None:
    tool_use = {"toolUse": {"toolUseId": "t1", "name": "send", "input": {"key": f"use {KEY}"}}}
    messages = [*user("send it"), {"role": "assistant", "content": [tool_use]}]
    with pytest.raises(ClientError) as raised:
        runtime(bedrock_stack).converse(modelId=MODEL, messages=messages)
    error = raised.value.response["Error"]
    assert error["Code"] == "ValidationException" and "block-secrets" in error["Message"]
    assert KEY not in str(raised.value)


@pytest.mark.parametrize("chunking", CHUNKINGS)
def test_converse_stream_is_masked_across_chunkings(bedrock_stack: Stack, chunking: str) -> None:
    text = f"Write to {EMAIL} or bob.smith@corp.example.org; {LONG} then ping {EMAIL} again."
    bedrock = runtime(bedrock_stack, scripted(stream_body(text), EVENTSTREAM, chunking))
    events = list(bedrock.converse_stream(modelId=MODEL, messages=user("hi"))["stream"])
    said = "".join(
        e["contentBlockDelta"]["delta"]["text"] for e in events if "contentBlockDelta" in e
    )
    assert said == reference(text)
    assert [next(iter(e)) for e in events[-3:]] == ["contentBlockStop", "messageStop", "metadata"]
    assert events[-2]["messageStop"]["stopReason"] == "end_turn"
    assert events[-1]["metadata"]["usage"]["totalTokens"] == 8


def test_clean_converse_stream_passes_byte_identical(
    client: httpx.Client, bedrock_stack: Stack
) -> None:
    body = stream_body("nothing to see here " * 10)
    path = f"{bedrock_stack.url}/model/{MODEL.replace(':', '%3A')}/converse-stream"
    response = client.post(path, json={"messages": user("hi")}, headers=scripted(body, EVENTSTREAM))
    assert response.status_code == 200 and response.content == body


def test_converse_stream_that_opens_with_a_secret_is_a_client_error(bedrock_stack: Stack) -> None:
    bedrock = runtime(bedrock_stack, scripted(stream_body(f"{KEY} is the key"), EVENTSTREAM))
    with pytest.raises(ClientError) as raised:
        list(bedrock.converse_stream(modelId=MODEL, messages=user("hi"))["stream"])
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert raised.value.response["Error"]["Code"] == "ValidationException"
    assert "block-secrets" in raised.value.response["Error"]["Message"]


def test_mid_stream_block_is_an_exception_botocore_raises(bedrock_stack: Stack) -> None:
    text = LONG * 2 + f" the key is {KEY} " + "after the key " * 10
    bedrock = runtime(bedrock_stack, scripted(stream_body(text), EVENTSTREAM))
    received: list[str] = []
    stream = bedrock.converse_stream(modelId=MODEL, messages=user("hi"))["stream"]
    with pytest.raises(EventStreamError) as raised:  # a ClientError subclass
        for event in stream:
            if "contentBlockDelta" in event:
                received.append(event["contentBlockDelta"]["delta"]["text"])
    assert isinstance(raised.value, ClientError)
    sent = "".join(received)
    assert sent and text.startswith(sent) and KEY[:10] not in sent
    assert raised.value.response["Error"]["Code"] == "validationException"
    assert "block-secrets" in raised.value.response["Error"]["Message"]


def test_broken_frames_fail_closed(client: httpx.Client, bedrock_stack: Stack) -> None:
    body = bytearray(stream_body("nothing to see here"))
    body[40] ^= 1  # inside the first frame: its CRC no longer matches
    path = f"{bedrock_stack.url}/model/{MODEL.replace(':', '%3A')}/converse-stream"
    response = client.post(
        path, json={"messages": user("hi")}, headers=scripted(bytes(body), EVENTSTREAM)
    )
    assert response.status_code == 502 and b"nothing to see" not in response.content
    assert response.json()["__type"] == "InternalServerException"
