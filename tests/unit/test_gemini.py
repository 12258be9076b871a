"""Gemini's module: where text lives in a generateContent request and answer, its stream (SSE
with CRLF line ends) judged in flight, and its error shapes."""

from __future__ import annotations

import asyncio
import json
import random

import pytest

from extproc.backends import build
from extproc.config import GuardrailSpec, parse_config
from extproc.exchange.engine import Engine
from extproc.formats import gemini, route_for_path
from extproc.formats.document import inspected_slots
from extproc.formats.sse import SseParser
from extproc.policy.decision import decide
from extproc.protocol.exchange import Reject, RequestHead
from extproc.streaming.guard import StreamGuard
from extproc.vocabulary import TEXT, THINKING

EMAIL = "jane.doe@example.com"
KEY = "AKIA" + "IOSFODNN7EXAMPLE"
LONG = "the weather is fine today and " * 8


def request() -> dict:
    return {
        "systemInstruction": {"parts": [{"text": "be brief"}]},
        "contents": [
            {"role": "user", "parts": [{"text": "mail "}, {"text": "jane.doe@"}, {"text": "x"}]},
            {
                "role": "model",
                "parts": [{"functionCall": {"name": "send", "args": {"to": EMAIL}}}],
            },
            {
                "role": "user",
                "parts": [{"functionResponse": {"name": "send", "response": {"ok": "sent"}}}],
            },
        ],
        "generationConfig": {"temperature": 0},
    }


def test_paths_pick_the_gemini_module() -> None:
    base = "/v1beta/models/gemini-2.0-flash"
    assert route_for_path(f"{base}:generateContent").api is gemini
    assert route_for_path(f"{base}:streamGenerateContent?alt=sse").api is gemini.streamed
    vertex = "/v1/projects/p/locations/us/publishers/google/models/gemini-2.0-flash"
    assert route_for_path(f"{vertex}:generateContent").api is gemini
    assert route_for_path(f"{base}:countTokens").api is gemini.count_tokens


def test_request_texts_and_roles() -> None:
    slots = gemini.request_texts(request())
    found = [(slot.text, slot.role) for slot in slots]
    assert ("be brief", "system") in found
    assert ("mail jane.doe@x", "user") in found  # one message's parts joined
    assert (EMAIL, "assistant") in found  # functionCall.args
    assert ("sent", "tool") in found  # functionResponse.response


def test_joined_parts_are_masked_part_by_part() -> None:
    document = request()
    slot = next(s for s in gemini.request_texts(document) if s.text == "mail jane.doe@x")
    slot.write_spans([(5, 15, "[EMAIL]")])
    parts = document["contents"][0]["parts"]
    assert [p["text"] for p in parts] == ["mail ", "[EMAIL]", ""]


def test_every_other_string_is_still_read() -> None:
    document = request()
    document["contents"][0]["parts"].append({"inlineData": {"mimeType": "text/plain"}})
    texts = [slot.text for slot in inspected_slots(gemini.request_texts(document), [document])]
    assert "text/plain" in texts and "send" in texts


def test_response_texts() -> None:
    answer = {
        "candidates": [
            {
                "content": {"role": "model", "parts": [{"text": "a"}, {"text": "b"}]},
                "finishReason": "STOP",
            },
            {"content": {"parts": [{"functionCall": {"name": "f", "args": {"q": "z"}}}]}},
        ]
    }
    assert [slot.text for slot in gemini.response_texts(answer)] == ["ab", "z"]


def test_error_body_is_googles_shape() -> None:
    body = json.loads(gemini.error_body("blocked", guardrail_name="g", detected=["A", "B"]))
    error = body["error"]
    assert error["code"] == 400 and error["status"] == "INVALID_ARGUMENT"
    assert error["message"] == "blocked"
    assert error["details"][0]["metadata"] == {
        "type": "invalid_request_error",
        "guardrail_name": "g",
        "detected": "A,B",
    }


def test_streamed_synthetic_reply_is_one_crlf_event() -> None:
    content_type, body = gemini.streamed.synthetic_reply("no", {})
    assert content_type == "text/event-stream" and body.endswith(b"\r\n\r\n")
    (event,) = SseParser().feed(body)
    assert json.loads(event.data)["candidates"][0]["content"]["parts"][0]["text"] == "no"


# -- the stream ------------------------------------------------------------------------------


def chunk(piece: str, finish: str | None = None, thought: bool = False) -> dict:
    part: dict = {"text": piece}
    if thought:
        part["thought"] = True
    candidate: dict = {"content": {"parts": [part], "role": "model"}, "index": 0}
    if finish:
        candidate["finishReason"] = finish
    return {"candidates": [candidate], "modelVersion": "gemini-2.0-flash", "responseId": "r1"}


def stream_of(text: str, size: int = 3) -> bytes:
    pieces = [text[i : i + size] for i in range(0, len(text), size)]
    events = [chunk(p, "STOP" if i == len(pieces) - 1 else None) for i, p in enumerate(pieces)]
    usage = {"usageMetadata": {"totalTokenCount": 9}, "modelVersion": "gemini-2.0-flash"}
    return b"".join(b"data: " + json.dumps(e).encode() + b"\r\n\r\n" for e in [*events, usage])


def guardrail(kind: str, **params: object):
    spec = GuardrailSpec("g", kind, ("post_call",), True, {"guardrail": kind, **params})
    return build(spec)


def new_guard(kind: str = "pii", **params: object) -> StreamGuard:
    detector = guardrail(kind, **params)

    async def scan(text: str):
        return [(detector.name, f) for f in await detector.scan([text])]

    return StreamGuard(gemini.stream, scan, window=64)


def run(guard: StreamGuard, chunks: list[bytes]) -> tuple[bytes, object]:
    async def go():
        out = []
        for position, piece in enumerate(chunks):
            fed = await guard.feed(piece, position == len(chunks) - 1)
            out.append(fed.data)
            if fed.blocked:
                return b"".join(out), fed.blocked
        return b"".join(out), None

    return asyncio.run(go())


def streamed_text(body: bytes) -> str:
    events = SseParser().feed(body)
    return "".join(slot.text for e in events for slot in gemini.stream.read(e).slots)


def reference(text: str) -> str:
    detector = guardrail("pii")
    findings = [(detector.name, f) for f in asyncio.run(detector.scan([text]))]
    return decide([text], findings).texts[0]  # type: ignore[union-attr]


@pytest.mark.parametrize("seed", range(5))
def test_a_split_email_is_masked_whatever_the_chunking(seed: int) -> None:
    text = f"Write to {EMAIL} soon; {LONG} or to {EMAIL} again."
    body = stream_of(text)
    rng = random.Random(seed)
    points = sorted(rng.sample(range(1, len(body)), 30))
    chunks = [body[a:b] for a, b in zip([0, *points], [*points, len(body)], strict=True)]
    out, blocked = run(new_guard(), chunks)
    assert blocked is None and EMAIL not in out.decode()
    assert streamed_text(out) == reference(text)
    events = SseParser().feed(out)
    assert all(e.raw.endswith(b"\r\n\r\n") for e in events)  # rewritten events keep CRLF
    assert json.loads(events[-2].data)["candidates"][0]["finishReason"] == "STOP"
    assert "usageMetadata" in json.loads(events[-1].data)


def test_clean_stream_passes_byte_identical() -> None:
    body = stream_of("nothing to see here " * 10)
    assert run(new_guard(), [body]) == (body, None)


def test_thought_parts_are_their_own_channel() -> None:
    slots = gemini.stream.read(next(iter(SseParser().feed(stream_of("x"))))).slots
    assert slots[0].channel == (TEXT, 0)
    thought = json.dumps(chunk("hmm", thought=True)).encode()
    (event,) = SseParser().feed(b"data: " + thought + b"\r\n\r\n")
    assert gemini.stream.read(event).slots[0].channel == (THINKING, 0)


def test_mid_stream_block_is_a_data_event_with_a_top_level_error() -> None:
    guard = new_guard("secrets", action="block")
    out, blocked = run(guard, [stream_of(f"{LONG} the key is {KEY} and more")])
    assert blocked is not None and KEY[:8] not in out.decode()
    event = guard.error_event("blocked", guardrail_name="g")
    assert event.endswith(b"\r\n\r\n")
    (parsed,) = SseParser().feed(out + event)[-1:]
    error = json.loads(parsed.data)["error"]
    assert error["code"] == 400 and error["status"] == "INVALID_ARGUMENT"


def test_a_blocked_count_tokens_request_is_googles_error_shape() -> None:
    """``:countTokens`` has no answer of its own to fake, but its blocks are Google's error."""
    config = {
        "guardrails": [
            {
                "guardrail_name": "block-secrets",
                "litellm_params": {
                    "guardrail": "secrets",
                    "mode": "pre_call",
                    "default_on": True,
                    "action": "block",
                },
            }
        ]
    }
    exchange = Engine(parse_config(config))()
    head = RequestHead("POST", "/v1beta/models/gemini-2.0-flash:countTokens", {}, True)
    asyncio.run(exchange.on_request_headers(head))
    body = {"contents": [{"role": "user", "parts": [{"text": f"key {KEY}"}]}]}
    verdict = asyncio.run(exchange.on_request_body(json.dumps(body).encode()))
    assert isinstance(verdict, Reject) and verdict.status == 400
    error = json.loads(verdict.body)["error"]
    assert error["code"] == 400 and error["status"] == "INVALID_ARGUMENT"
    assert error["details"][0]["metadata"]["guardrail_name"] == "block-secrets"
