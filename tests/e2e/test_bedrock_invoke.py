"""Bedrock InvokeModel through a real Envoy, spoken by boto3's ``bedrock-runtime`` client pointed
at the stack with ``endpoint_url``: the providers' own JSON masked and blocked before the model,
answers masked; ``invoke_model_with_response_stream``'s chunk frames (base64 provider events in
AWS event-stream frames) masked across any chunking and re-encoded so botocore reads them, for
Claude's, Titan's, Llama's and Mistral's events; a block before the first byte a
``ClientError``, mid-stream an ``exception`` frame botocore raises; the upstream's own exception
frames judged and passed; an undecodable chunk refused."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from botocore.exceptions import ClientError, EventStreamError

from extproc.stack.processes import Stack
from tests.conftest import module_stack, upstream_last
from tests.e2e.planted import BOTH_WAYS_CONFIG, CHUNKINGS, EMAIL, KEY, LONG, reference
from tests.e2e.test_bedrock_converse import EVENTSTREAM, runtime, scripted, upstream_frame

CLAUDE = "anthropic.claude-3-haiku-20240307-v1:0"  # boto3 sends the ":" as %3A
LLAMA = "meta.llama3-8b-instruct-v1:0"


@pytest.fixture(scope="module")
def invoke_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    yield from module_stack(tmp_path_factory, "bedrock-invoke", BOTH_WAYS_CONFIG)


def claude_request(text: str, system: str = "be brief") -> str:
    messages = [{"role": "user", "content": [{"type": "text", "text": text}]}]
    body = {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 200, "system": system}
    return json.dumps(body | {"messages": messages})


def chunk(event: dict) -> bytes:
    """A chunk as Bedrock sends it: the provider's event, base64, with Bedrock's padding."""
    data = base64.b64encode(json.dumps(event).encode()).decode()
    return upstream_frame("chunk", {"bytes": data, "p": "abcdefghijkl"})


def claude_events(pieces: list[str]) -> list[dict]:
    message = {"id": "msg_bdrk_1", "type": "message", "role": "assistant", "content": []}
    block = {"type": "content_block_start", "index": 0, "content_block": {"type": "text"}}
    block["content_block"]["text"] = ""
    deltas = [
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": p}}
        for p in pieces
    ]
    stop = {"type": "message_delta", "delta": {"stop_reason": "end_turn"}}
    metrics = {"inputTokenCount": 3, "outputTokenCount": 5, "invocationLatency": 9}
    return [
        {"type": "message_start", "message": message},
        block,
        *deltas,
        {"type": "content_block_stop", "index": 0},
        stop | {"usage": {"output_tokens": 5}},
        {"type": "message_stop", "amazon-bedrock-invocationMetrics": metrics},
    ]


def titan_events(pieces: list[str]) -> list[dict]:
    events = [{"outputText": p, "index": 0, "completionReason": None} for p in pieces]
    return [*events, {"outputText": "", "index": 0, "completionReason": "FINISH"}]


def llama_events(pieces: list[str]) -> list[dict]:
    events = [{"generation": p, "generation_token_count": 1, "stop_reason": None} for p in pieces]
    return [*events, {"generation": "", "generation_token_count": 1, "stop_reason": "stop"}]


def mistral_events(pieces: list[str]) -> list[dict]:
    events = [{"outputs": [{"text": p, "stop_reason": None}]} for p in pieces]
    return [*events, {"outputs": [{"text": "", "stop_reason": "stop"}]}]


def claude_text(event: dict) -> str:
    return event["delta"]["text"] if event["type"] == "content_block_delta" else ""


Events = Callable[[list[str]], list[dict]]
# A provider's stream events, and the text a client reads in one of them.
PROVIDERS: dict[str, tuple[Events, Callable[[dict], str]]] = {
    "claude": (claude_events, claude_text),
    "titan": (titan_events, lambda event: event["outputText"]),
    "llama": (llama_events, lambda event: event["generation"]),
    "mistral": (mistral_events, lambda event: event["outputs"][0]["text"]),
}


def stream_body(text: str, events: Events = claude_events, size: int = 4) -> bytes:
    return b"".join(
        chunk(e) for e in events([text[i : i + size] for i in range(0, len(text), size)])
    )


def streamed_events(bedrock: Any, body: str = claude_request("hi")) -> Iterator[dict]:
    """The provider events boto3 hands out: each chunk's ``bytes`` as JSON."""
    reply = bedrock.invoke_model_with_response_stream(modelId=CLAUDE, body=body)
    for event in reply["body"]:
        yield json.loads(event["chunk"]["bytes"])


def test_invoke_request_and_answer_are_masked(client: httpx.Client, invoke_stack: Stack) -> None:
    said = f"mail {EMAIL} today"
    answer = {"type": "message", "role": "assistant", "content": [{"type": "text", "text": said}]}
    answer |= {"stop_reason": "end_turn", "usage": {"input_tokens": 3, "output_tokens": 5}}
    bedrock = runtime(invoke_stack, scripted(json.dumps(answer).encode(), "application/json"))
    reply = bedrock.invoke_model(
        modelId=CLAUDE, body=claude_request(f"write to {EMAIL}", system=f"user {EMAIL}")
    )
    seen = upstream_last(client, invoke_stack)
    assert seen["path"].endswith("/invoke") and "claude-3-haiku" in seen["path"]
    assert EMAIL not in seen["body"]
    sent = json.loads(seen["body"])
    assert sent["messages"][0]["content"][0]["text"] == reference(f"write to {EMAIL}")
    assert sent["system"] == reference(f"user {EMAIL}")
    got = json.loads(reply["body"].read())
    assert got["content"][0]["text"] == reference(said) and got["stop_reason"] == "end_turn"


@pytest.mark.parametrize("chunking", ["bytes", "split"])
def test_the_fake_models_echo_comes_back_masked(invoke_stack: Stack, chunking: str) -> None:
    """No script: the fake LLM answers in Bedrock's own framing, echoing what reached it (the
    masked prompt), so what the client reads is the prompt masked once, in any chunking."""
    text = f"mail {EMAIL} and {LONG}"
    bedrock = runtime(invoke_stack, {"x-fake-chunking": chunking})
    events = list(streamed_events(bedrock, claude_request(text)))
    assert "".join(claude_text(event) for event in events) == reference(text)
    body = json.dumps({"prompt": f"mail {EMAIL}", "max_gen_len": 64})
    reply = json.loads(bedrock.invoke_model(modelId=LLAMA, body=body)["body"].read())
    assert reply["generation"] == reference(f"mail {EMAIL}")


def test_a_prompt_with_a_secret_is_blocked_before_the_model(invoke_stack: Stack) -> None:
    body = json.dumps({"prompt": f"use {KEY} to log in", "max_gen_len": 64})
    with pytest.raises(ClientError) as raised:
        runtime(invoke_stack).invoke_model(modelId=LLAMA, body=body)
    error = raised.value.response["Error"]
    assert error["Code"] == "ValidationException" and "block-secrets" in error["Message"]
    assert KEY not in str(raised.value)


@pytest.mark.parametrize("chunking", CHUNKINGS)
def test_invoke_stream_is_masked_across_chunkings(invoke_stack: Stack, chunking: str) -> None:
    text = f"Write to {EMAIL} or bob.smith@corp.example.org; {LONG} then ping {EMAIL} again."
    bedrock = runtime(invoke_stack, scripted(stream_body(text), EVENTSTREAM, chunking))
    events = list(streamed_events(bedrock))
    assert "".join(claude_text(event) for event in events) == reference(text)
    assert [e["type"] for e in events[-3:]] == [
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert events[-1]["amazon-bedrock-invocationMetrics"]["outputTokenCount"] == 5


@pytest.mark.parametrize("provider", sorted(PROVIDERS))
def test_every_providers_stream_is_masked(invoke_stack: Stack, provider: str) -> None:
    events_of, text_of = PROVIDERS[provider]
    text = f"Write to {EMAIL} soon; {LONG} or to {EMAIL} again."
    bedrock = runtime(invoke_stack, scripted(stream_body(text, events_of), EVENTSTREAM, "random:7"))
    events = list(streamed_events(bedrock))
    assert "".join(text_of(event) for event in events) == reference(text)
    assert events[-1] == events_of(["x"])[-1]  # the end marker as the upstream sent it


def test_clean_invoke_stream_passes_byte_identical(
    client: httpx.Client, invoke_stack: Stack
) -> None:
    body = stream_body("nothing to see here " * 10)
    path = f"{invoke_stack.url}/model/{CLAUDE.replace(':', '%3A')}/invoke-with-response-stream"
    response = client.post(path, content=claude_request("hi"), headers=scripted(body, EVENTSTREAM))
    assert response.status_code == 200 and response.content == body


def test_a_stream_that_opens_with_a_secret_is_a_client_error(invoke_stack: Stack) -> None:
    bedrock = runtime(invoke_stack, scripted(stream_body(f"{KEY} is the key"), EVENTSTREAM))
    with pytest.raises(ClientError) as raised:
        list(streamed_events(bedrock))
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert raised.value.response["Error"]["Code"] == "ValidationException"
    assert "block-secrets" in raised.value.response["Error"]["Message"]


def test_mid_stream_block_is_an_exception_botocore_raises(invoke_stack: Stack) -> None:
    text = LONG * 2 + f" the key is {KEY} " + "after the key " * 10
    body = stream_body(text, size=24)  # fewer frames: the script rides in a request header
    bedrock = runtime(invoke_stack, scripted(body, EVENTSTREAM))
    received: list[str] = []
    with pytest.raises(EventStreamError) as raised:  # a ClientError subclass
        for event in streamed_events(bedrock):
            received.append(claude_text(event))
    sent = "".join(received)
    assert sent and text.startswith(sent) and KEY[:10] not in sent
    assert raised.value.response["Error"]["Code"] == "validationException"
    assert "block-secrets" in raised.value.response["Error"]["Message"]


def test_the_upstreams_exception_frame_is_judged_and_raised(invoke_stack: Stack) -> None:
    failure = {"message": f"the model failed on {EMAIL}", "originalStatusCode": 424}
    body = stream_body("a short answer ") + upstream_frame(
        "modelStreamErrorException", failure, "exception"
    )
    bedrock = runtime(invoke_stack, scripted(body, EVENTSTREAM))
    received: list[str] = []
    with pytest.raises(EventStreamError) as raised:
        for event in streamed_events(bedrock):
            received.append(claude_text(event))
    assert "".join(received) == "a short answer "
    error = raised.value.response["Error"]
    assert error["Code"] == "modelStreamErrorException"
    assert error["Message"] == reference(f"the model failed on {EMAIL}")


def test_an_undecodable_chunk_fails_closed(client: httpx.Client, invoke_stack: Stack) -> None:
    body = upstream_frame("chunk", {"bytes": "not base64 at all!"})
    path = f"{invoke_stack.url}/model/{CLAUDE.replace(':', '%3A')}/invoke-with-response-stream"
    response = client.post(path, content=claude_request("hi"), headers=scripted(body, EVENTSTREAM))
    assert response.status_code == 502 and b"not base64" not in response.content
    assert response.json()["__type"] == "InternalServerException"
