"""Bedrock InvokeModel: the providers' request and answer shapes given roles (and nothing less
read than by the generic fallback), the stream's chunk frames (base64 provider events inside
AWS event-stream frames, checked against botocore's own decoder) judged in flight for every
provider's events, masked events re-encoded, a mid-stream block an ``exception`` frame, other
frames judged too, unreadable chunks refused."""

from __future__ import annotations

import asyncio
import base64
import json
import random
from collections.abc import Callable

import pytest
import yaml

from extproc.backends import build
from extproc.config import GuardrailSpec, parse_config
from extproc.exchange.engine import Engine
from extproc.formats import bedrock_invoke, generic, route_for_path
from extproc.formats.base import JoinedSlot
from extproc.formats.document import KNOWN_VALUES, inspected_slots
from extproc.formats.eventstream import EventStreamError, encode_frame
from extproc.protocol.exchange import Reject, RequestHead, ResponseHead
from extproc.streaming.guard import StreamGuard
from tests.e2e.planted import EMAIL, KEY, LONG, reference
from tests.unit.test_bedrock_converse import POST_CALL, botocore_read, run

MODEL = "anthropic.claude-3-haiku-20240307-v1%3A0"


def test_paths_pick_the_module_and_its_framing() -> None:
    assert route_for_path(f"/model/{MODEL}/invoke").api is bedrock_invoke
    streamed = route_for_path(f"/model/{MODEL}/invoke-with-response-stream")
    assert streamed is not None and streamed.api is bedrock_invoke.streamed
    assert streamed.framing is bedrock_invoke.CHUNKS
    arn = "arn%3Aaws%3Abedrock%3Aus-east-1%3A1%3Ainference-profile%2Fus.meta.llama3"
    assert route_for_path(f"/model/{arn}/invoke").api is bedrock_invoke


# -- requests and answers --------------------------------------------------------------------

REQUESTS = {
    "claude": {
        "anthropic_version": "bedrock-2023-05-31",
        "max_tokens": 100,
        "system": "the user is Jane",
        "messages": [
            {
                "role": "user",
                "content": [{"type": "text", "text": "mail "}, {"type": "text", "text": EMAIL}],
            },
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {"to": "x"}}],
            },
        ],
    },
    "nova": {
        "schemaVersion": "messages-v1",
        "system": [{"text": "the user is Jane"}],
        "messages": [{"role": "user", "content": [{"text": "mail "}, {"text": EMAIL}]}],
        "inferenceConfig": {"maxTokens": 100},
    },
    "mistral_chat": {"messages": [{"role": "user", "content": f"mail {EMAIL}"}], "max_tokens": 9},
    "llama": {"prompt": f"<|begin_of_text|>mail {EMAIL}", "max_gen_len": 9, "temperature": 0.5},
    "titan": {"inputText": f"mail {EMAIL}", "textGenerationConfig": {"maxTokenCount": 9}},
    "cohere": {
        "preamble": "the user is Jane",
        "chat_history": [
            {"role": "USER", "message": "hello"},
            {"role": "CHATBOT", "message": "hi there"},
        ],
        "message": f"mail {EMAIL}",
        "documents": [{"title": "notes", "snippet": "Jane's notes"}],
    },
    "cohere_embed": {"texts": ["one", f"mail {EMAIL}"], "input_type": "search_document"},
}


def roles(document: dict) -> dict[str, str | None]:
    return {slot.text: slot.role for slot in bedrock_invoke.request_texts(document)}


def test_request_texts_and_roles_by_shape() -> None:
    claude = roles(REQUESTS["claude"])
    assert claude["the user is Jane"] == "system" and claude[f"mail {EMAIL}"] == "user"
    assert claude["x"] == "assistant"  # tool_use input
    nova = roles(REQUESTS["nova"])
    assert nova["the user is Jane"] == "system" and nova[f"mail {EMAIL}"] == "user"
    assert roles(REQUESTS["mistral_chat"]) == {f"mail {EMAIL}": "user"}
    assert roles(REQUESTS["llama"]) == {f"<|begin_of_text|>mail {EMAIL}": "user"}
    assert roles(REQUESTS["titan"]) == {f"mail {EMAIL}": "user"}
    cohere = roles(REQUESTS["cohere"])
    assert cohere == {
        "the user is Jane": "system",
        "hello": "user",
        "hi there": "assistant",
        f"mail {EMAIL}": "user",
    }
    assert list(bedrock_invoke.request_texts(REQUESTS["cohere"]))[-1].text == f"mail {EMAIL}"
    assert roles(REQUESTS["cohere_embed"]) == {"one": "user", f"mail {EMAIL}": "user"}


def places(slots: list) -> set[tuple[int, object]]:
    """Where the slots read, the parts of joined ones included."""
    found = set()
    for slot in slots:
        for part in slot.parts if isinstance(slot, JoinedSlot) else [slot]:
            found.add((id(part.container), part.key))
    return found


@pytest.mark.parametrize("shape", sorted(REQUESTS))
def test_nothing_is_read_less_than_by_the_generic_fallback(shape: str) -> None:
    document = json.loads(json.dumps(REQUESTS[shape]))
    read = places(inspected_slots(bedrock_invoke.request_texts(document), [document]))
    every = [s for s in generic.request_texts(document) if s.text not in KNOWN_VALUES]
    assert places(every) <= read


ANSWERS = {
    "claude": {"type": "message", "role": "assistant", "content": [{"type": "text", "text": "A"}]},
    "nova": {"output": {"message": {"role": "assistant", "content": [{"text": "A"}]}}},
    "titan": {
        "inputTextTokenCount": 3,
        "results": [{"outputText": "A", "completionReason": "FINISH"}],
    },
    "llama": {"generation": "A", "prompt_token_count": 3, "stop_reason": "stop"},
    "claude2": {"completion": "A", "stop_reason": "stop_sequence"},
    "mistral": {"outputs": [{"text": "A", "stop_reason": "stop"}]},
    "mistral_chat": {"choices": [{"index": 0, "message": {"role": "assistant", "content": "A"}}]},
    "deepseek": {"choices": [{"text": "A", "stop_reason": "stop"}]},
    "cohere": {"text": "A", "chat_history": [{"role": "USER", "message": "B"}]},
    "cohere_command": {"generations": [{"id": "g", "text": "A"}], "prompt": "B"},
    "ai21": {"completions": [{"data": {"text": "A"}, "finishReason": {"reason": "endoftext"}}]},
}


@pytest.mark.parametrize("shape", sorted(ANSWERS))
def test_answer_texts_by_shape(shape: str) -> None:
    slots = bedrock_invoke.response_texts(json.loads(json.dumps(ANSWERS[shape])))
    assert slots and slots[0].text == "A" and slots[0].role == "assistant"


def test_an_unknown_answer_is_still_read_whole() -> None:
    document = {"weird": {"words": f"mail {EMAIL}"}}
    slots = inspected_slots(bedrock_invoke.response_texts(document), [document], "assistant")
    assert f"mail {EMAIL}" in [slot.text for slot in slots]


def test_error_body_is_converses() -> None:
    body = json.loads(bedrock_invoke.streamed.error_body("no", guardrail_name="g"))
    assert body["__type"] == "ValidationException" and body["message"] == "no"


# -- the stream ------------------------------------------------------------------------------


def chunk_frame(
    event: object, padding: str | None = "abcdefghij", compact: bool = True, **extra: object
) -> bytes:
    """A chunk frame; its envelope compact by default, as Bedrock sends it."""
    envelope: dict = {"bytes": base64.b64encode(json.dumps(event).encode()).decode(), **extra}
    if padding is not None:
        envelope["p"] = padding
    separators = (",", ":") if compact else (", ", ": ")
    return encode_frame(json.dumps(envelope, separators=separators).encode(), "chunk")


def claude(pieces: list[str]) -> list[dict]:
    message = {"id": "msg_bdrk_1", "type": "message", "role": "assistant", "content": []}
    deltas = [
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": p}}
        for p in pieces
    ]
    metrics = {"amazon-bedrock-invocationMetrics": {"inputTokenCount": 3, "outputTokenCount": 5}}
    return [
        {"type": "message_start", "message": message},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        *deltas,
        {"type": "content_block_stop", "index": 0},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn"},
            "usage": {"output_tokens": 5},
        },
        {"type": "message_stop", **metrics},
    ]


def titan(pieces: list[str]) -> list[dict]:
    events = [{"outputText": p, "index": 0, "completionReason": None} for p in pieces]
    return [*events, {"outputText": "", "index": 0, "completionReason": "FINISH"}]


def llama(pieces: list[str]) -> list[dict]:
    events = [{"generation": p, "generation_token_count": 1, "stop_reason": None} for p in pieces]
    return [*events, {"generation": "", "stop_reason": "stop"}]


def mistral(pieces: list[str]) -> list[dict]:
    events = [{"outputs": [{"text": p, "stop_reason": None}]} for p in pieces]
    return [*events, {"outputs": [{"text": "", "stop_reason": "stop"}]}]


def nova(pieces: list[str]) -> list[dict]:
    deltas = [{"contentBlockDelta": {"delta": {"text": p}, "contentBlockIndex": 0}} for p in pieces]
    return [
        {"messageStart": {"role": "assistant"}},
        *deltas,
        {"contentBlockStop": {"contentBlockIndex": 0}},
        {"messageStop": {"stopReason": "end_turn"}},
        {"metadata": {"usage": {"inputTokens": 3, "outputTokens": 5}}},
    ]


def cohere(pieces: list[str]) -> list[dict]:
    text = "".join(pieces)
    response = {"text": text, "chat_history": [{"role": "CHATBOT", "message": text}]}
    return [
        {"is_finished": False, "event_type": "stream-start", "generation_id": "g1"},
        *({"is_finished": False, "event_type": "text-generation", "text": p} for p in pieces),
        {
            "is_finished": True,
            "event_type": "stream-end",
            "finish_reason": "COMPLETE",
            "response": response,
        },
    ]


def openai_like(pieces: list[str]) -> list[dict]:
    def chunk(delta: dict, finish: str | None) -> dict:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        return {"id": "c1", "object": "chat.completion.chunk", "choices": [choice]}

    return [*(chunk({"content": p}, None) for p in pieces), chunk({}, "stop")]


def unknown(pieces: list[str]) -> list[dict]:
    return [{"novel": {"piece": p}} for p in pieces]


Provider = Callable[[list[str]], list[dict]]
# Each provider's events, and the text deltas a client reads from them.
PROVIDERS: dict[str, tuple[Provider, Callable[[dict], str]]] = {
    "claude": (
        claude,
        lambda e: e.get("delta", {}).get("text", "") if e["type"] == "content_block_delta" else "",
    ),
    "titan": (titan, lambda e: e["outputText"]),
    "llama": (llama, lambda e: e["generation"]),
    "mistral": (mistral, lambda e: e["outputs"][0]["text"]),
    "nova": (nova, lambda e: e.get("contentBlockDelta", {}).get("delta", {}).get("text", "")),
    "cohere": (cohere, lambda e: e["text"] if e["event_type"] == "text-generation" else ""),
    "openai_like": (openai_like, lambda e: e["choices"][0]["delta"].get("content", "")),
    "unknown": (unknown, lambda e: e["novel"]["piece"]),
}


def stream_of(provider: Provider, text: str, size: int = 3) -> bytes:
    pieces = [text[i : i + size] for i in range(0, len(text), size)]
    return b"".join(chunk_frame(event) for event in provider(pieces))


def provider_events(data: bytes) -> list[dict]:
    """What a boto3 user reads: each chunk's ``bytes``, base64-decoded, as JSON."""
    events = []
    for headers, payload in botocore_read(data):
        assert headers[":event-type"] == "chunk" and headers[":message-type"] == "event"
        events.append(json.loads(base64.b64decode(json.loads(payload)["bytes"])))
    return events


def new_guard(kind: str = "pii", **params: object) -> StreamGuard:
    spec = GuardrailSpec("g", kind, ("post_call",), True, {"guardrail": kind, **params})
    detector = build(spec)

    async def scan(text: str):
        return [(detector.name, f) for f in await detector.scan([text])]

    return StreamGuard(bedrock_invoke.stream, scan, window=64, framing=bedrock_invoke.CHUNKS)


def cut(body: bytes, seed: int, count: int = 40) -> list[bytes]:
    points = sorted(random.Random(seed).sample(range(1, len(body)), count))
    return [body[a:b] for a, b in zip([0, *points], [*points, len(body)], strict=True)]


@pytest.mark.parametrize("seed", range(2))
@pytest.mark.parametrize("provider", sorted(PROVIDERS))
def test_a_split_email_is_masked_in_every_providers_events(provider: str, seed: int) -> None:
    events_of, said_in = PROVIDERS[provider]
    text = f"Write to {EMAIL} soon; {LONG} or to {EMAIL} again."
    upstream = events_of([text[i : i + 3] for i in range(0, len(text), 3)])
    out, blocked = run(new_guard(), cut(stream_of(events_of, text), seed))
    assert blocked is None and EMAIL.encode() not in out
    events = provider_events(out)  # every frame checks out, every chunk decodes
    assert "".join(said_in(event) for event in events) == reference(text)
    assert len(events) == len(upstream) and events[-1].keys() == upstream[-1].keys()
    assert EMAIL not in json.dumps(events)  # nor in a repeat (Cohere's stream-end)


def test_cohere_stream_end_repeats_the_masked_text() -> None:
    text = f"Write to {EMAIL} soon; {LONG}"
    out, _ = run(new_guard(), [stream_of(cohere, text)])
    end = provider_events(out)[-1]
    assert end["event_type"] == "stream-end" and end["response"]["text"] == reference(text)


@pytest.mark.parametrize("provider", ["claude", "llama"])
def test_clean_stream_passes_byte_identical(provider: str) -> None:
    body = stream_of(PROVIDERS[provider][0], "nothing to see here " * 10)
    assert run(new_guard(), [body]) == (body, None)


def test_a_masked_chunk_keeps_bedrocks_padding_and_drops_what_was_not_judged() -> None:
    event = {"outputText": f"mail {EMAIL}", "index": 0, "completionReason": "FINISH"}
    padded, _ = run(new_guard(), [chunk_frame(event, "abcdef")])
    ((_, payload),) = botocore_read(padded)
    assert json.loads(payload)["p"] == "abcdef"
    other, _ = run(new_guard(), [chunk_frame({"outputText": "hi"}, None, x=f"to {EMAIL}")])
    ((_, payload),) = botocore_read(other)
    assert json.loads(payload).keys() == {"bytes"} and EMAIL.encode() not in other


@pytest.mark.parametrize("compact", [True, False])
@pytest.mark.parametrize("padding", [None, "", "abcdefgh", "zzzz"])
def test_the_envelope_reads_the_same_however_it_is_spelled(
    padding: str | None, compact: bool
) -> None:
    """Bedrock's compact envelope is read without a JSON parse: it must read as one would."""
    frame = chunk_frame({"generation": "hi"}, padding, compact)
    (read,) = bedrock_invoke.ChunkParser(1 << 20).feed(frame)
    assert isinstance(read, bedrock_invoke.Chunk) and read.raw == frame
    assert json.loads(read.data) == {"generation": "hi"}
    kept = padding if padding != "zzzz" else None  # not Bedrock's padding: not passed unjudged
    assert read.padding == kept and read.ignored == (padding == "zzzz")


@pytest.mark.parametrize(
    "envelope",
    [b'{"bytes": "not base64!"}', b'{"bytes": "' + base64.b64encode(b"\xff\xfe") + b'"}'],
)
def test_a_chunk_that_cannot_be_decoded_is_an_error(envelope: bytes) -> None:
    with pytest.raises(EventStreamError):
        run(new_guard(), [encode_frame(envelope, "chunk")])


def test_exception_frames_pass_judged() -> None:
    clean = json.dumps({"message": "the model failed", "originalStatusCode": 500}).encode()
    frame = encode_frame(clean, "modelStreamErrorException", "exception")
    assert run(new_guard(), [frame]) == (frame, None)
    leaky = {"message": "failed", "originalStatusCode": 400, "originalMessage": f"bad {EMAIL}"}
    out, _ = run(
        new_guard(),
        [encode_frame(json.dumps(leaky).encode(), "modelStreamErrorException", "exception")],
    )
    ((headers, payload),) = botocore_read(out)
    assert headers[":exception-type"] == "modelStreamErrorException"
    assert json.loads(payload)["originalMessage"] == reference(f"bad {EMAIL}")


def test_mid_stream_block_is_an_exception_frame_botocore_reads() -> None:
    guard = new_guard("secrets", action="block")
    out, blocked = run(guard, [stream_of(claude, f"{LONG} the key is {KEY} and more")])
    assert blocked is not None and KEY[:8] not in json.dumps(provider_events(out))
    headers, payload = botocore_read(out + guard.error_event("blocked by g", guardrail_name="g"))[
        -1
    ]
    assert headers[":message-type"] == "exception"
    assert headers[":exception-type"] == "validationException"
    assert json.loads(payload)["message"] == "blocked by g"


def test_synthetic_replies_in_the_providers_shape() -> None:
    content_type, body = bedrock_invoke.synthetic_reply("no", REQUESTS["claude"])
    assert content_type == "application/json" and json.loads(body)["content"][0]["text"] == "no"
    content_type, frames = bedrock_invoke.streamed.synthetic_reply("no", REQUESTS["nova"])
    assert content_type == "application/vnd.amazon.eventstream"
    events = provider_events(frames)
    assert "".join(PROVIDERS["nova"][1](e) for e in events) == "no"
    titan_events = provider_events(
        bedrock_invoke.streamed.synthetic_reply("no", REQUESTS["titan"])[1]
    )
    assert titan_events[0]["outputText"] == "no"
    cohere_answer = json.loads(bedrock_invoke.synthetic_reply("no", REQUESTS["cohere"])[1])
    assert cohere_answer["text"] == "no"
    assert bedrock_invoke.synthetic_reply("no", REQUESTS["llama"]) is None  # whose answer shape?


# -- through the exchange (no Envoy) ---------------------------------------------------------


def test_an_undecodable_chunk_before_any_text_is_a_502() -> None:
    exchange = Engine(parse_config(yaml.safe_load(json.dumps(POST_CALL))))()
    head = RequestHead("POST", f"/model/{MODEL}/invoke-with-response-stream", {}, True)
    asyncio.run(exchange.on_request_headers(head))
    asyncio.run(exchange.on_request_body(json.dumps(REQUESTS["claude"]).encode()))
    eventstream = {"content-type": "application/vnd.amazon.eventstream"}
    asyncio.run(exchange.on_response_headers(ResponseHead(200, eventstream, True)))
    broken = encode_frame(b'{"bytes": "%%%"}', "chunk")
    verdict = asyncio.run(exchange.on_response_chunk(broken, True))  # type: ignore[attr-defined]
    assert isinstance(verdict, Reject) and verdict.status == 502
    assert json.loads(verdict.body)["__type"] == "InternalServerException"
