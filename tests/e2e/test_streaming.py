"""Streamed answers judged in flight, through a real Envoy: every API's SSE, cut awkwardly by the
upstream, reaches the client masked exactly like the whole answer; blocks are a clean 400 before
the first byte and the API's own error event after it; JSON answers are judged whole."""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import random
import string
from collections.abc import Iterator

import httpx
import pytest

from extproc.backends import build
from extproc.config import GuardrailSpec
from extproc.formats import delta_slots, stream_format
from extproc.formats.sse import SseParser, encode_event
from extproc.stack.processes import Stack
from extproc.vocabulary import CODE, GENERIC, THINKING
from tests.conftest import chat_body, ext_proc_stats, module_stack, post, upstream_last
from tests.e2e.planted import CHUNKINGS, EMAIL, KEY, LONG, reference

TEXT = f"Write to {EMAIL} or bob.smith@corp.example.org; {LONG} then ping {EMAIL} again."

CONFIG = """
guardrails:
  - guardrail_name: answer-pii
    litellm_params: {guardrail: pii, mode: post_call, default_on: true}
  - guardrail_name: answer-secrets
    litellm_params: {guardrail: secrets, mode: post_call, default_on: true, action: block}
"""
# The same guardrails, but only when a request's body selects them: the answer's mode is then
# chosen at the response headers (SSE streamed without held headers).
LATE_CONFIG = CONFIG.replace("default_on: true", "default_on: false")

# path -> (request body for a text, format name)
APIS = {
    "/v1/chat/completions": lambda text: chat_body(text, stream=True),
    "/v1/completions": lambda text: {"model": "m", "prompt": text, "stream": True},
    "/v1/responses": lambda text: {"model": "m", "input": text, "stream": True},
    "/v1/messages": lambda text: {
        "model": "m",
        "max_tokens": 100,
        "messages": [{"role": "user", "content": text}],
        "stream": True,
    },
}
FORMAT_OF = {
    "/v1/chat/completions": "openai_chat",
    "/v1/completions": "openai_completions",
    "/v1/responses": "openai_responses",
    "/v1/messages": "anthropic_messages",
}


@pytest.fixture(scope="module")
def streaming_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    yield from module_stack(tmp_path_factory, "streaming", CONFIG)


@pytest.fixture(scope="module")
def late_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    yield from module_stack(tmp_path_factory, "streaming-late", LATE_CONFIG)


def streamed_text(path: str, body: bytes) -> tuple[str, list[str], list]:
    """(text rebuilt from the deltas, snapshot texts, events) as a client would read them."""
    events = SseParser().feed(body)
    deltas, snapshots = [], []
    for event in events:
        if event.data and event.data != "[DONE]":
            json.loads(event.data)
        _, slots = delta_slots(FORMAT_OF[path], event)
        for slot in slots:
            (snapshots if slot.snapshot else deltas).append(slot.text)
    return "".join(deltas), snapshots, events


@pytest.mark.parametrize("chunking", CHUNKINGS)
@pytest.mark.parametrize("path", sorted(APIS))
def test_every_api_and_chunking_gets_the_whole_text_mask(
    client: httpx.Client, streaming_stack: Stack, path: str, chunking: str
) -> None:
    response = post(
        client, streaming_stack, APIS[path](TEXT), path=path, **{"x-fake-chunking": chunking}
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    assert EMAIL not in response.text and "bob.smith" not in response.text
    text, snapshots, _ = streamed_text(path, response.content)
    expected = reference(TEXT)
    assert text == expected
    assert all(snapshot == expected for snapshot in snapshots)


@pytest.mark.parametrize("seed", range(6))
def test_random_chunkings_property(client: httpx.Client, streaming_stack: Stack, seed: int) -> None:
    """For random cuts (and random texts), the client receives exactly the masked reference."""
    words = ["alpha", EMAIL, "beta", "a.b@c.io", "gamma", "+1 415 555 0100", "delta"]
    text = " ".join(words[(seed * 3 + i * 5) % len(words)] for i in range(20 + seed * 7))
    path = sorted(APIS)[seed % len(APIS)]
    headers = {"x-fake-chunking": f"random:{seed}"}
    response = post(client, streaming_stack, APIS[path](text), path=path, **headers)
    assert response.status_code == 200
    assert streamed_text(path, response.content)[0] == reference(text)


def test_clean_stream_passes_byte_identical(client: httpx.Client, streaming_stack: Stack) -> None:
    body = chat_body("nothing to see here " * 20, stream=True)
    guarded = post(client, streaming_stack, body, **{"x-fake-chunking": "random:3"})
    direct = client.post(f"{streaming_stack.upstream.url}/v1/chat/completions", json=body)
    assert guarded.content == direct.content


def test_block_before_the_first_byte_is_a_clean_400(
    client: httpx.Client, streaming_stack: Stack
) -> None:
    """Text is released as soon as no finding can begin in it, so an answer that opens with a
    secret sends nothing before the block: the response headers were held, a clean 400."""
    response = post(client, streaming_stack, chat_body(f"{KEY} is the key", stream=True))
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert "answer-secrets" in error["message"] and KEY not in response.text


@pytest.mark.parametrize("path", sorted(APIS))
def test_block_mid_stream_sends_the_api_error_event(
    client: httpx.Client, streaming_stack: Stack, path: str
) -> None:
    text = LONG * 2 + f" the key is {KEY} " + "after the key " * 10
    response = post(client, streaming_stack, APIS[path](text), path=path)
    assert response.status_code == 200
    assert KEY[:10] not in response.text and "after the key" not in response.text
    sent, _, events = streamed_text(path, response.content)
    assert sent and text.startswith(sent)
    last = events[-1]
    error = json.loads(last.data)
    if path == "/v1/messages":
        assert last.event == "error" and error["type"] == "error"
        assert "answer-secrets" in error["error"]["message"]
    elif path == "/v1/responses":
        assert last.event == "error" and error["type"] == "error"
        numbers = [json.loads(e.data).get("sequence_number", -1) for e in events[:-1]]
        assert error["sequence_number"] == max(numbers) + 1
    else:
        assert "answer-secrets" in error["error"]["message"]
        assert b"[DONE]" not in response.content  # nothing the API would not send after it


def test_json_answer_is_judged_whole(client: httpx.Client, streaming_stack: Stack) -> None:
    masked = post(client, streaming_stack, chat_body(f"mail {EMAIL} please"))
    assert masked.status_code == 200
    assert masked.json()["choices"][0]["message"]["content"] == "mail [EMAIL] please"
    blocked = post(client, streaming_stack, chat_body(f"key {KEY}"))
    assert blocked.status_code == 400 and KEY not in blocked.text


def test_gzip_is_asked_away_and_refused_when_forced(
    client: httpx.Client, streaming_stack: Stack
) -> None:
    """The client may ask for gzip: the upstream is asked for identity, so we can read it. An
    upstream that compresses anyway is not passed unread."""
    body = chat_body(f"mail {EMAIL}", stream=True)
    direct = client.post(
        f"{streaming_stack.upstream.url}/v1/chat/completions",
        json=body,
        headers={"accept-encoding": "gzip"},
    )
    assert direct.headers["content-encoding"] == "gzip"  # the fake does compress when asked
    response = post(client, streaming_stack, body, **{"accept-encoding": "gzip"})
    assert response.status_code == 200 and "content-encoding" not in response.headers
    assert EMAIL not in response.text and "[EMAIL]" in response.text
    forced = post(client, streaming_stack, body, **{"x-fake-gzip": "1"})
    assert forced.status_code == 502
    assert (
        EMAIL.encode() not in gzip.decompress(forced.content)
        if forced.content[:2] == (b"\x1f\x8b")
        else EMAIL not in forced.text
    )


def test_no_spurious_messages(client: httpx.Client, streaming_stack: Stack) -> None:
    post(client, streaming_stack, chat_body(TEXT, stream=True), **{"x-fake-chunking": "bytes"})
    assert ext_proc_stats(client, streaming_stack).get("spurious_msgs_received", 0) == 0


# -- the mode chosen late: guardrails selected by the request body -----------------------------


def selected(body: dict) -> dict:
    return body | {"guardrails": ["answer-pii", "answer-secrets"]}


@pytest.mark.parametrize("chunking", ("bytes", "random:5"))
def test_body_selected_guardrails_mask_streams_too(
    client: httpx.Client, late_stack: Stack, chunking: str
) -> None:
    body = selected(chat_body(TEXT, stream=True))
    response = post(client, late_stack, body, **{"x-fake-chunking": chunking})
    assert response.status_code == 200
    assert streamed_text("/v1/chat/completions", response.content)[0] == reference(TEXT)


def test_body_selected_block_is_an_error_event(client: httpx.Client, late_stack: Stack) -> None:
    """The headers went out with the mode change: even an early block is an in-band error."""
    response = post(client, late_stack, selected(chat_body(f"key {KEY}", stream=True)))
    assert response.status_code == 200 and KEY not in response.text
    last = SseParser().feed(response.content)[-1]
    assert "answer-secrets" in json.loads(last.data)["error"]["message"]


def test_unselected_stream_is_not_touched(client: httpx.Client, late_stack: Stack) -> None:
    response = post(client, late_stack, chat_body(f"mail {EMAIL}", stream=True))
    assert response.status_code == 200 and EMAIL in response.text


# -- reversible masking (output_parse_pii) -----------------------------------------------------

RESTORE_CONFIG = """
guardrails:
  - guardrail_name: reversible-pii
    litellm_params: {guardrail: pii, mode: pre_call, default_on: true, output_parse_pii: true}
"""
OTHER = "bob.smith@corp.example.org"


@pytest.fixture(scope="module")
def restore_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    yield from module_stack(tmp_path_factory, "streaming-restore", RESTORE_CONFIG)


def test_reversible_masking_restores_a_json_answer(
    client: httpx.Client, restore_stack: Stack
) -> None:
    text = f"Mail {EMAIL}, copy {OTHER}, then {EMAIL} again."
    response = post(client, restore_stack, chat_body(text))
    upstream = upstream_last(client, restore_stack)["body"]
    sent = json.loads(upstream)["messages"][0]["content"]
    assert sent == "Mail <EMAIL_1>, copy <EMAIL_2>, then <EMAIL_1> again."
    assert response.json()["choices"][0]["message"]["content"] == text


@pytest.mark.parametrize("chunking", ("bytes", "split", "random:11"))
@pytest.mark.parametrize("path", sorted(APIS))
def test_reversible_masking_restores_streams_split_anywhere(
    client: httpx.Client, restore_stack: Stack, path: str, chunking: str
) -> None:
    text = f"Mail {EMAIL}, copy {OTHER}, {LONG} then {EMAIL} again; <EMAIL_9> is not ours."
    headers = {"x-fake-chunking": chunking}
    response = post(client, restore_stack, APIS[path](text), path=path, **headers)
    assert response.status_code == 200
    assert EMAIL not in upstream_last(client, restore_stack)["body"]
    restored, snapshots, _ = streamed_text(path, response.content)
    assert restored == text
    assert all(snapshot == text for snapshot in snapshots)


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/messages"])
def test_empty_streamed_body_ends_cleanly(
    client: httpx.Client, streaming_stack: Stack, path: str
) -> None:
    """Envoy #44201: an empty chunked body in FULL_DUPLEX_STREAMED must not hang the stream."""
    response = post(client, streaming_stack, APIS[path]("hi"), path=path, **{"x-fake-empty": "1"})
    assert response.status_code == 200 and response.content == b""
    assert ext_proc_stats(client, streaming_stack).get("spurious_msgs_received", 0) == 0


# -- every text a client can read: new channels, unknown kinds, APIs without an adapter --------

# Gemini-shaped events on a path no module claims (Gemini has its own now: test_gemini.py),
# read by the generic stream format.
GEMINI = "/v1/unknown-api/models/m:streamPredict?alt=sse"
SPLIT_TEXT = f"Sure: mail {EMAIL} today, {LONG} and that is all."


def scripted(events: list[bytes], chunking: str = "split") -> dict[str, str]:
    """Headers making the fake LLM answer exactly ``events`` (an upstream stream we script)."""
    body = base64.b64encode(b"".join(events)).decode()
    reply = {"status": 200, "content_type": "text/event-stream", "body_b64": body}
    return {"x-fake-reply": json.dumps(reply), "x-fake-chunking": chunking}


def pieces_of(text: str, size: int = 3) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


def data_event(document: dict, event: str | None = None) -> bytes:
    return encode_event(json.dumps(document), event=event)


def gemini_events(text: str) -> list[bytes]:
    def chunk(piece: str) -> dict:
        content = {"parts": [{"text": piece}], "role": "model"}
        return {
            "candidates": [{"content": content, "index": 0}],
            "modelVersion": "gemini-2.0-flash",
        }

    return [data_event(chunk(p)) for p in pieces_of(text)]


def channel_texts(name: str | None, body: bytes) -> dict:
    texts: dict = {}
    for event in SseParser().feed(body):
        if event.data and event.data[0] == "{":
            for slot in stream_format(name).read(event).slots:
                if not slot.snapshot:
                    texts[slot.channel] = texts.get(slot.channel, "") + slot.text
    return texts


GEMINI_TEXT = (GENERIC, "", "candidates", 0, "content", "parts", 0, "text")


@pytest.mark.parametrize("chunking", CHUNKINGS)
def test_a_stream_of_an_api_without_adapter_is_masked_whole(
    client: httpx.Client, streaming_stack: Stack, chunking: str
) -> None:
    """A Gemini-style stream (no adapter): every string is a channel, so an e-mail split over
    its events is masked like the whole text would be."""
    headers = scripted(gemini_events(SPLIT_TEXT), chunking)
    response = post(client, streaming_stack, {"contents": []}, path=GEMINI, **headers)
    assert response.status_code == 200, response.text
    assert "jane.doe" not in response.text
    assert channel_texts(None, response.content)[GEMINI_TEXT] == reference(SPLIT_TEXT)


def test_a_block_in_a_stream_without_adapter_is_a_400_then_an_error_event(
    client: httpx.Client, streaming_stack: Stack
) -> None:
    early = post(client, streaming_stack, {}, path=GEMINI, **scripted(gemini_events(f"k {KEY}")))
    assert early.status_code == 400 and KEY not in early.text
    late_text = LONG * 2 + f" the key is {KEY} " + "after the key " * 10
    late = post(client, streaming_stack, {}, path=GEMINI, **scripted(gemini_events(late_text)))
    assert late.status_code == 200 and KEY[:10] not in late.text
    assert "after the key" not in late.text
    last = SseParser().feed(late.content)[-1]
    error = json.loads(last.data)["error"]
    assert last.event is None and error["code"] == 400 and "answer-secrets" in error["message"]


def test_new_channels_of_known_apis_are_masked_through_envoy(
    client: httpx.Client, streaming_stack: Stack
) -> None:
    """Anthropic thinking and a delta kind no adapter knows; Responses code interpreter and a
    new ``*.delta`` event: each e-mail split over their events is masked."""
    parts = pieces_of(SPLIT_TEXT)
    anthropic = [
        data_event(
            {"type": "message_start", "message": {"id": "m", "content": []}}, "message_start"
        ),
        data_event(
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "thinking", "thinking": ""},
            },
            "content_block_start",
        ),
        *(
            data_event(
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "thinking_delta", "thinking": p},
                },
                "content_block_delta",
            )
            for p in parts
        ),
        data_event({"type": "content_block_stop", "index": 0}, "content_block_stop"),
        *(
            data_event(
                {
                    "type": "content_block_delta",
                    "index": 1,
                    "delta": {"type": "new_delta", "words": p},
                },
                "content_block_delta",
            )
            for p in parts
        ),
        data_event({"type": "message_stop"}, "message_stop"),
    ]
    body = APIS["/v1/messages"]("hi")
    response = post(
        client, streaming_stack, body, path="/v1/messages", **scripted(anthropic, "bytes")
    )
    assert response.status_code == 200 and "jane.doe" not in response.text
    texts = channel_texts("anthropic_messages", response.content)
    assert texts[(THINKING, 0)] == reference(SPLIT_TEXT)
    assert texts[(GENERIC, 1, "content_block_delta", "new_delta", "delta", "words")] == reference(
        SPLIT_TEXT
    )
    code_events = [
        {"type": "response.code_interpreter_call_code.delta", "output_index": 0, "delta": p}
        for p in parts
    ]
    code_events.append(
        {"type": "response.code_interpreter_call_code.done", "output_index": 0, "code": SPLIT_TEXT}
    )
    code_events += [
        {"type": "response.vision_text.delta", "output_index": 1, "delta": p} for p in parts
    ]
    code_events.append({"type": "response.completed", "response": {"output": []}})
    responses = [
        data_event(e | {"sequence_number": n}, e["type"]) for n, e in enumerate(code_events)
    ]
    body = APIS["/v1/responses"]("hi")
    response = post(
        client, streaming_stack, body, path="/v1/responses", **scripted(responses, "random:3")
    )
    assert response.status_code == 200 and "jane.doe" not in response.text
    texts = channel_texts("openai_responses", response.content)
    assert texts[(CODE, 0)] == reference(SPLIT_TEXT)
    done = [
        e
        for e in SseParser().feed(response.content)
        if e.event == "response.code_interpreter_call_code.done"
    ]
    assert json.loads(done[0].data)["code"] == reference(SPLIT_TEXT)


def test_comments_are_dropped_and_event_names_judged_through_envoy(
    client: httpx.Client, streaming_stack: Stack
) -> None:
    chunk = {"choices": [{"index": 0, "delta": {"content": "hello"}, "finish_reason": None}]}
    events = [
        f": processing for {EMAIL}\n\n".encode(),
        data_event(chunk, event=f"note {EMAIL}"),
        b"data: [DONE]\n\n",
    ]
    response = post(client, streaming_stack, chat_body("hi", stream=True), **scripted(events))
    assert response.status_code == 200 and EMAIL not in response.text
    sent = SseParser().feed(response.content)
    assert sent[0].raw == b":\n\n" and sent[1].event == reference(f"note {EMAIL}")
    assert sent[-1].is_done


def _long_key_text(rng: random.Random) -> tuple[str, str]:
    """A 900-character random key in quotes, one the secrets detector finds in the whole text
    (a random string can contain a placeholder word, which the detector then lets pass)."""
    detector = build(GuardrailSpec("s", "secrets", ("post_call",), True, {}))
    for _ in range(20):
        key = "".join(rng.choice(string.ascii_letters + string.digits + "+/") for _ in range(900))
        text = LONG + f' config = ["{key}"] ' + "after the key " * 5
        if asyncio.run(detector.scan([text])):
            return key, text
    raise AssertionError("no detectable key in 20 tries")


@pytest.mark.parametrize("chunking", ["bytes", "random:7"])
def test_a_secret_longer_than_any_window_never_shows_its_start(
    client: httpx.Client, streaming_stack: Stack, chunking: str
) -> None:
    """A 900-character quoted key (the old 256-character window released its start before its
    end was known): held until decided, then the block; none of it reaches the client."""
    key, text = _long_key_text(random.Random(chunking))
    response = post(
        client, streaming_stack, chat_body(text, stream=True), **{"x-fake-chunking": chunking}
    )
    assert response.status_code == 200
    assert key[:12] not in response.text and "after the key" not in response.text
    sent = streamed_text("/v1/chat/completions", response.content)[0]
    assert sent and text.startswith(sent) and len(sent) < len(LONG) + 20
    error = json.loads(SseParser().feed(response.content)[-1].data)["error"]
    assert "answer-secrets" in error["message"]
