"""Every text a streaming client can read is judged: each text-bearing field has its own
hold-back channel (a secret split across its events is caught), strings no adapter knows are
judged too (generic channels, or one by one), and so are SSE event names and ids; lines a client
ignores are dropped. Streams are cut at random and one byte per chunk."""

from __future__ import annotations

import asyncio
import json
import random
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import pytest

from extproc.backends import build
from extproc.config import GuardrailSpec
from extproc.formats import stream_format
from extproc.formats.sse import SseEvent, SseParser, encode_event
from extproc.policy.decision import decide
from extproc.stack import fake_llm
from extproc.streaming.guard import StreamGuard
from extproc.vocabulary import (
    CODE,
    GENERIC,
    LOGPROBS,
    PADDING,
    SHELL_COMMAND,
    SHELL_OUTPUT,
    THINKING,
    TOOL_ARGUMENTS,
    TRANSCRIPT,
    Channel,
)
from extproc.vocabulary import TEXT as TEXT_CHANNEL
from tests.unit.test_stream_guard import run

SEED = 977
EMAIL = "jane.doe@example.com"
KEY = "AKIA" + "Q3EGNQ7WZXTKV2LA"  # AKIA + 16 uppercase letters and digits
TEXT = f"Plain words first, then mail {EMAIL} and the key {KEY} and a few more words at the end."


def guardrail(kind: str, **params: object):
    spec = GuardrailSpec(kind, kind, ("post_call",), True, {"guardrail": kind, **params})
    return build(spec)


GUARDRAILS = (guardrail("pii"), guardrail("secrets", action="mask"))
WINDOW = max(g.capabilities.max_match_chars for g in GUARDRAILS)


async def scan(text: str):
    return [(g.name, f) for g in GUARDRAILS for f in await g.scan([text])]


def reference(text: str) -> str:
    """The text masked as a whole (what a non-streamed answer would say)."""
    findings = asyncio.run(scan(text))
    decision = decide([text], findings)
    return decision.texts.get(0, text) if hasattr(decision, "texts") else text


MASKED = reference(TEXT)


def pieces(text: str, rng: random.Random) -> list[str]:
    """``text`` in pieces of 1 to 4 characters: the e-mail and the key span many events."""
    out, position = [], 0
    while position < len(text):
        size = rng.randint(1, 4)
        out.append(text[position : position + size])
        position += size
    return out


def sse(document: Any, event: str | None = None) -> bytes:
    return encode_event(json.dumps(document), event=event)


def guard_of(name: str | None, **options: Any) -> StreamGuard:
    return StreamGuard(stream_format(name), scan, WINDOW, **options)


def cuts(data: bytes, rng: random.Random) -> list[bytes]:
    points = sorted(rng.sample(range(1, len(data)), rng.randint(1, min(60, len(data) - 1))))
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


def chunkings(data: bytes, rng: random.Random, random_trials: int = 4) -> Iterator[list[bytes]]:
    yield [data[i : i + 1] for i in range(len(data))]
    for _ in range(random_trials):
        yield cuts(data, rng)


def parse(data: bytes) -> list[SseEvent]:
    parser = SseParser()
    return parser.feed(data) + parser.flush()


def channels_seen(name: str | None, data: bytes) -> tuple[dict[Channel, str], list]:
    """(channel -> text rebuilt from its deltas, [(channel, snapshot text)]) as a client reads
    them; every JSON event must still parse."""
    text: dict[Channel, str] = defaultdict(str)
    snapshots: list[tuple[Channel, str]] = []
    fmt = stream_format(name)
    for event in parse(data):
        if event.data and event.data[0] in "{[" and not event.is_done:
            json.loads(event.data)
        grouped: dict[Channel, str] = defaultdict(str)
        for slot in fmt.read(event).slots:
            if slot.snapshot:
                grouped[slot.channel] += slot.text
            else:
                text[slot.channel] += slot.text
        snapshots += grouped.items()
    return dict(text), snapshots


def tokens_keep_their_bytes(data: bytes) -> None:
    """A masked logprobs token must not leave its old ``bytes`` (the same text as numbers)."""

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            if isinstance(value.get("token"), str) and isinstance(value.get("bytes"), list):
                assert value["bytes"] == list(value["token"].encode())
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    for event in parse(data):
        if event.data and event.data[0] == "{":
            walk(json.loads(event.data))


# -- one stream builder per channel ------------------------------------------------------------
# Each returns the stream's bytes carrying ``text`` split over many events, and the channels
# (whose rebuilt text must be the whole-text mask) and snapshot channels it exercises.

Built = tuple[bytes, list[Channel]]


def chat_chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
    choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
    chunk = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": "m"}
    return sse(chunk | {"choices": [choice]} | extra)


def chat_stream(parts: list[str], delta_of: Callable[[str], dict[str, Any]], **extra: Any):
    events = [chat_chunk({"role": "assistant"})]
    events += [chat_chunk(delta_of(p), **extra) for p in parts]
    return b"".join([*events, chat_chunk({}, "stop"), b"data: [DONE]\n\n"])


def chat_transcript(parts: list[str]) -> Built:
    data = chat_stream(parts, lambda p: {"audio": {"id": "audio_1", "transcript": p}})
    return data, [(TRANSCRIPT, 0)]


def chat_logprobs(parts: list[str]) -> Built:
    events = [chat_chunk({"role": "assistant"})]
    for p in parts:
        entry = {"token": p, "logprob": -0.1, "bytes": list(p.encode()), "top_logprobs": []}
        choice = {"index": 0, "delta": {"content": p}, "logprobs": {"content": [entry]}}
        events.append(sse({"id": "c", "object": "chat.completion.chunk", "choices": [choice]}))
    data = b"".join([*events, chat_chunk({}, "stop"), b"data: [DONE]\n\n"])
    return data, [(TEXT_CHANNEL, 0), (LOGPROBS, 0, TEXT_CHANNEL)]


def chat_unknown_delta_key(parts: list[str]) -> Built:
    data = chat_stream(parts, lambda p: {"reasoning": p, "hologram": {"caption": p}})
    generic = (GENERIC, 0, "delta")
    return data, [(*generic, "reasoning"), (*generic, "hologram", "caption")]


def chat_padding(parts: list[str]) -> Built:
    events = [chat_chunk({"role": "assistant"})]
    events += [chat_chunk({"content": "x"}, obfuscation=p) for p in parts]
    return b"".join([*events, chat_chunk({}, "stop"), b"data: [DONE]\n\n"]), [(PADDING,)]


def completions_logprobs(parts: list[str]) -> Built:
    events = []
    for offset, p in enumerate(parts):
        logprobs = {"tokens": [p], "token_logprobs": [-0.1], "top_logprobs": [{p: -0.1}]}
        choice = {"text": p, "index": 0, "logprobs": logprobs | {"text_offset": [offset]}}
        events.append(sse({"id": "cmpl-1", "object": "text_completion", "choices": [choice]}))
    final = {"id": "cmpl-1", "choices": [{"text": "", "index": 0, "finish_reason": "stop"}]}
    return b"".join([*events, sse(final), b"data: [DONE]\n\n"]), [(TEXT_CHANNEL, 0), (LOGPROBS, 0)]


def responses_stream(events: list[dict[str, Any]]) -> bytes:
    numbered = [event | {"sequence_number": n} for n, event in enumerate(events)]
    return b"".join(sse(event, event["type"]) for event in numbered)


def responses_completed(*items: dict[str, Any]) -> dict[str, Any]:
    response = {"id": "resp_1", "object": "response", "status": "completed", "output": list(items)}
    return {"type": "response.completed", "response": response}


def responses_transcript(parts: list[str]) -> Built:
    events = [{"type": "response.audio.transcript.delta", "delta": p} for p in parts]
    events += [{"type": "response.audio.transcript.done"}, responses_completed()]
    return responses_stream(events), [(TRANSCRIPT, 0)]


def responses_code(parts: list[str]) -> Built:
    where = {"output_index": 0, "item_id": "ci_1"}
    text = "".join(parts)
    item = {"type": "code_interpreter_call", "id": "ci_1", "code": text, "outputs": []}
    events = [
        {"type": "response.output_item.added", "output_index": 0, "item": item | {"code": ""}},
        *(
            {"type": "response.code_interpreter_call_code.delta", **where, "delta": p}
            for p in parts
        ),
        {"type": "response.code_interpreter_call_code.done", **where, "code": text},
        {"type": "response.output_item.done", "output_index": 0, "item": item},
        responses_completed(item),
    ]
    return responses_stream(events), [(CODE, 0)]


def responses_mcp_arguments(parts: list[str]) -> Built:
    where = {"output_index": 1, "item_id": "mcp_1"}
    text = "".join(parts)
    item = {"type": "mcp_call", "id": "mcp_1", "name": "lookup", "server_label": "s"}
    events = [
        *({"type": "response.mcp_call_arguments.delta", **where, "delta": p} for p in parts),
        {"type": "response.mcp_call_arguments.done", **where, "arguments": text},
        {
            "type": "response.output_item.done",
            "output_index": 1,
            "item": item | {"arguments": text},
        },
    ]
    return responses_stream(events), [(TOOL_ARGUMENTS, 1)]


def responses_shell(parts: list[str]) -> Built:
    text = "".join(parts)
    where = {"output_index": 0, "command_index": 0}
    output = {"stdout": text, "stderr": "", "outcome": {"type": "exit", "exit_code": 0}}
    events = [
        {"type": "response.shell_call_command.added", **where, "command": parts[0]},
        *({"type": "response.shell_call_command.delta", **where, "delta": p} for p in parts[1:]),
        {"type": "response.shell_call_command.done", **where, "command": text},
        *(
            {"type": "response.shell_call_output_content.delta", **where, "delta": {"stdout": p}}
            for p in parts
        ),
        {"type": "response.shell_call_output_content.done", **where, "output": [output]},
        responses_completed(),
    ]
    return responses_stream(events), [(SHELL_COMMAND, 0, 0), (SHELL_OUTPUT, 0, 0, "stdout")]


def responses_logprobs(parts: list[str]) -> Built:
    where = {"item_id": "msg_1", "output_index": 0, "content_index": 0}
    text = "".join(parts)

    def logprob(token: str) -> dict[str, Any]:
        return {"token": token, "logprob": -0.1, "top_logprobs": []}

    part = {"type": "output_text", "text": text, "annotations": []}
    part |= {"logprobs": [logprob(p) for p in parts]}
    message = {"type": "message", "id": "msg_1", "role": "assistant", "content": [part]}
    events = [
        *(
            {"type": "response.output_text.delta", **where, "delta": p, "logprobs": [logprob(p)]}
            for p in parts
        ),
        {"type": "response.output_text.done", **where, "text": text, "logprobs": part["logprobs"]},
        {"type": "response.content_part.done", **where, "part": part},
        responses_completed(message),
    ]
    return responses_stream(events), [(TEXT_CHANNEL, 0, 0), (LOGPROBS, 0, 0)]


def responses_unknown_delta(parts: list[str]) -> Built:
    where = {"item_id": "h_1", "output_index": 2, "content_index": 0}
    events = [
        *({"type": "response.hologram_text.delta", **where, "delta": p} for p in parts),
        {"type": "response.hologram_text.done", **where, "text": "".join(parts)},
        responses_completed(),
    ]
    channel = (GENERIC, "response.hologram_text", repr([("content_index", 0), ("output_index", 2)]))
    return responses_stream(events), [(*channel, "delta")]


def anthropic_stream(blocks: list[dict[str, Any]]) -> bytes:
    message = {"id": "msg_1", "type": "message", "role": "assistant", "content": []}
    events = [{"type": "message_start", "message": message}, *blocks]
    events += [
        {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {}},
        {"type": "message_stop"},
    ]
    return b"".join(sse(event, event["type"]) for event in events)


def anthropic_thinking(parts: list[str]) -> Built:
    block = {"type": "thinking", "thinking": parts[0], "signature": ""}
    blocks = [
        {"type": "content_block_start", "index": 0, "content_block": block},
        *(
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "thinking_delta", "thinking": p},
            }
            for p in parts[1:]
        ),
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "signature_delta", "signature": "EqQBCgIYAhIM"},
        },
        {"type": "content_block_stop", "index": 0},
    ]
    return anthropic_stream(blocks), [(THINKING, 0)]


def anthropic_unknown_delta(parts: list[str]) -> Built:
    blocks = [
        {"type": "content_block_start", "index": 3, "content_block": {"type": "hologram"}},
        *(
            {
                "type": "content_block_delta",
                "index": 3,
                "delta": {"type": "hologram_delta", "caption": p},
            }
            for p in parts
        ),
        {"type": "content_block_stop", "index": 3},
    ]
    channel = (GENERIC, 3, "content_block_delta", "hologram_delta", "delta", "caption")
    return anthropic_stream(blocks), [channel]


def anthropic_unknown_event(parts: list[str]) -> Built:
    blocks = [{"type": "hologram_update", "delta": {"type": "caption", "text": p}} for p in parts]
    channel = (GENERIC, -1, "hologram_update", "caption", "delta", "text")
    return anthropic_stream(blocks), [channel]


def gemini(parts: list[str]) -> Built:
    def chunk(piece: str) -> dict[str, Any]:
        content = {"parts": [{"text": piece}], "role": "model"}
        return {
            "candidates": [{"content": content, "index": 0}],
            "usageMetadata": {"promptTokenCount": 3},
            "modelVersion": "gemini-2.0-flash",
            "responseId": "r-1",
        }

    events = [sse(chunk(p)) for p in parts]
    last = chunk("") | {
        "candidates": [{"content": {"parts": [{"text": ""}]}, "finishReason": "STOP"}]
    }
    channel = (GENERIC, "", "candidates", 0, "content", "parts", 0, "text")
    return b"".join([*events, sse(last)]), [channel]


def chat_unknown_root(parts: list[str]) -> Built:
    """Events of a shape the chat adapter does not know (Gemini's, say) on the chat path: their
    strings are on generic channels keyed by path, so a value split across them is caught."""
    data, _ = gemini(parts)
    channel = (GENERIC, "unknown", "", "candidates", 0, "content", "parts", 0, "text")
    return data, [channel]


def anthropic_unknown_root(parts: list[str]) -> Built:
    blocks = [{"type": "content_block_delta", "index": 0, "hologram": {"t": p}} for p in parts]
    return anthropic_stream(blocks), [(GENERIC, "unknown", "content_block_delta", "hologram", "t")]


# (format name, builder)
SCENARIOS: dict[str, tuple[str | None, Callable[[list[str]], Built]]] = {
    "chat-audio-transcript": ("openai_chat", chat_transcript),
    "chat-logprobs": ("openai_chat", chat_logprobs),
    "chat-unknown-delta-key": ("openai_chat", chat_unknown_delta_key),
    "chat-obfuscation": ("openai_chat", chat_padding),
    "completions-logprobs": ("openai_completions", completions_logprobs),
    "responses-audio-transcript": ("openai_responses", responses_transcript),
    "responses-code-interpreter": ("openai_responses", responses_code),
    "responses-mcp-arguments": ("openai_responses", responses_mcp_arguments),
    "responses-shell": ("openai_responses", responses_shell),
    "responses-logprobs": ("openai_responses", responses_logprobs),
    "responses-unknown-delta-event": ("openai_responses", responses_unknown_delta),
    "anthropic-thinking": ("anthropic_messages", anthropic_thinking),
    "anthropic-unknown-delta-type": ("anthropic_messages", anthropic_unknown_delta),
    "anthropic-unknown-event-kind": ("anthropic_messages", anthropic_unknown_event),
    "anthropic-unknown-top-level-key": ("anthropic_messages", anthropic_unknown_root),
    "chat-unknown-top-level-key": ("openai_chat", chat_unknown_root),
    "gemini-generic": (None, gemini),
}


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_a_finding_split_across_events_of_a_channel_never_reaches_the_client(
    scenario: str,
) -> None:
    assert EMAIL not in MASKED and KEY not in MASKED
    name, build_stream = SCENARIOS[scenario]
    rng = random.Random(SEED)
    parts = pieces(TEXT, rng)
    assert not any(KEY[:8] in part or "@" + EMAIL.split("@")[1] in part for part in parts)
    original, watched = build_stream(parts)
    for chunks in chunkings(original, rng):
        data, blocked = run(guard_of(name), chunks)
        assert blocked is None
        assert KEY[4:12].encode() not in data and b"jane.doe" not in data
        text, snapshots = channels_seen(name, data)
        for channel in watched:
            assert text.get(channel) == MASKED, (scenario, channel)
        for channel, snapshot in snapshots:
            if channel in watched:
                assert snapshot == MASKED, (scenario, channel)
        tokens_keep_their_bytes(data)


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_clean_streams_of_every_channel_pass_byte_identical(scenario: str) -> None:
    name, build_stream = SCENARIOS[scenario]
    rng = random.Random(SEED)
    original, _ = build_stream(pieces("nothing personal in here at all, " * 12, rng))
    data, blocked = run(guard_of(name), cuts(original, rng))
    assert blocked is None and data == original


def test_snapshot_of_unknown_done_event_is_judged_whole() -> None:
    """An unknown ``*.done`` repeats the text in a field no adapter knows: judged on its own, it
    gets the same whole-text mask."""
    data, _ = run(
        guard_of("openai_responses"), [responses_unknown_delta(pieces(TEXT, random.Random(1)))[0]]
    )
    done = [e for e in parse(data) if e.event == "response.hologram_text.done"]
    assert json.loads(done[0].data)["text"] == MASKED


def test_masked_signed_thinking_is_masked_not_blocked() -> None:
    """The thinking block is signed; a mask there is written anyway (see anthropic_slots): the
    signature goes out untouched and no error ends the answer."""
    data, blocked = run(
        guard_of("anthropic_messages"), [anthropic_thinking(pieces(TEXT, random.Random(2)))[0]]
    )
    assert blocked is None and b"EqQBCgIYAhIM" in data and b'"type":"error"' not in data
    assert channels_seen("anthropic_messages", data)[0][(THINKING, 0)] == MASKED


def test_citations_are_judged_whole_each() -> None:
    citation = {
        "type": "char_location",
        "cited_text": f"contact {EMAIL} for access",
        "document_index": 0,
        "document_title": f"notes of {EMAIL}",
        "start_char_index": 0,
        "end_char_index": 30,
    }
    blocks = [
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "citations_delta", "citation": citation},
        },
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "ok"}},
        {"type": "content_block_stop", "index": 0},
    ]
    data, blocked = run(guard_of("anthropic_messages"), [anthropic_stream(blocks)])
    assert blocked is None and EMAIL.encode() not in data
    (event,) = [e for e in parse(data) if e.data and "citations_delta" in e.data]
    sent = json.loads(event.data)["delta"]["citation"]
    assert sent["cited_text"] == reference(citation["cited_text"])
    assert sent["document_title"] == reference(citation["document_title"])


def test_a_block_in_a_new_channel_stops_the_stream_with_the_api_error() -> None:
    secrets = guardrail("secrets", action="block")

    async def scan_block(text: str):
        return [(secrets.name, f) for f in await secrets.scan([text])]

    original, _ = anthropic_unknown_delta(pieces("harmless words " * 30 + TEXT, random.Random(3)))
    guard = StreamGuard(
        stream_format("anthropic_messages"), scan_block, secrets.capabilities.max_match_chars
    )
    data, blocked = run(guard, cuts(original, random.Random(4)))
    assert blocked is not None and KEY[4:12].encode() not in data
    error = parse(guard.error_event("blocked"))[0]
    assert error.event == "error" and json.loads(error.data)["type"] == "error"


def test_generic_error_event_reads_as_google_and_openai_errors() -> None:
    (event,) = parse(stream_format(None).error_event("blocked by 'g'", guardrail_name="g"))
    assert event.event is None
    error = json.loads(event.data)["error"]
    assert error["code"] == 400 and error["status"] == "INVALID_ARGUMENT"
    assert error["message"] == "blocked by 'g'" and error["type"] == "invalid_request_error"
    assert error["provider_specific_fields"] == {"guardrail_name": "g"}
    assert stream_format(None).terminator is None


# -- loose strings, keys and SSE fields ----------------------------------------------------------


def test_loose_strings_and_keys_are_judged_per_event() -> None:
    """Ids, metadata and keys no adapter knows: each judged on its own, masked in place."""
    chunk = {
        "id": f"chatcmpl-{KEY}",
        "object": "chat.completion.chunk",
        "model": "m",
        "metadata": {"owner": EMAIL, EMAIL: 1},
        "choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": f"stop {EMAIL}"}],
    }
    data, blocked = run(guard_of("openai_chat"), [sse(chunk) + b"data: [DONE]\n\n"])
    assert blocked is None and KEY.encode() not in data and EMAIL.encode() not in data
    sent = json.loads(parse(data)[0].data)
    assert sent["id"] == reference(chunk["id"]) and sent["metadata"]["owner"] == reference(EMAIL)
    assert reference(EMAIL) in sent["metadata"]
    assert sent["choices"][0]["delta"]["content"] == "hi"


def test_top_logprobs_keys_of_legacy_completions_are_judged() -> None:
    choice = {"text": "a", "index": 0, "logprobs": {"tokens": ["a"], "top_logprobs": [{EMAIL: -1}]}}
    data, _ = run(
        guard_of("openai_completions"), [sse({"choices": [choice]}) + b"data: [DONE]\n\n"]
    )
    assert EMAIL.encode() not in data
    assert json.loads(parse(data)[0].data)["choices"][0]["logprobs"]["top_logprobs"] == [
        {reference(EMAIL): -1}
    ]


def test_event_names_and_ids_are_judged_and_ignored_lines_dropped() -> None:
    stream = (
        b": keep-alive "
        + EMAIL.encode()
        + b"\n\n"
        + b"event: note "
        + EMAIL.encode()
        + b"\nid: 7-"
        + KEY.encode()
        + b'\ndata: {"choices": []}\n\n'
        + b"retry: 3000\nfoo: "
        + EMAIL.encode()
        + b'\n: a comment\ndata: {"choices": []}\n\n'
        + b"retry: soon\n\n"
        + b"data: [DONE]\n\n"
    )
    for chunks in chunkings(stream, random.Random(5), 3):
        data, blocked = run(guard_of("openai_chat"), chunks)
        assert blocked is None and EMAIL.encode() not in data and KEY.encode() not in data
        events = parse(data)
        assert [e.raw for e in events[:1]] == [b":\n\n"]  # still a keep-alive, without text
        assert events[1].event == reference(f"note {EMAIL}")
        assert events[1].id == reference(f"7-{KEY}")
        assert events[2].retry == 3000 and not events[2].comments and not events[2].ignored
        assert events[3].raw == b":\n\n" and events[4].is_done


def test_a_secret_in_an_sse_id_blocks_when_secrets_block() -> None:
    secrets = guardrail("secrets", action="block")

    async def scan_block(text: str):
        return [(secrets.name, f) for f in await secrets.scan([text])]

    stream = b'data: {"choices": []}\n\nid: ' + KEY.encode() + b'\ndata: {"choices": []}\n\n'
    guard = StreamGuard(
        stream_format("openai_chat"), scan_block, secrets.capabilities.max_match_chars
    )
    data, blocked = run(guard, [stream])
    assert blocked is not None and KEY.encode() not in data


def test_a_clean_stream_of_data_and_event_lines_stays_byte_identical() -> None:
    original = b"".join(
        fake_llm.anthropic_messages(
            {"messages": [{"role": "user", "content": "hello there " * 30}], "stream": True}
        )
    )
    for chunks in chunkings(original, random.Random(6), 2):
        assert run(guard_of("anthropic_messages"), chunks) == (original, None)


# -- property: a value planted anywhere never reaches the client ------------------------------


def base_streams() -> list[tuple[str | None, bytes]]:
    text = "the answer is short and harmless, as answers go " * 3
    requests = {
        "openai_chat": (fake_llm.chat, {"messages": [{"role": "user", "content": text}]}),
        "openai_completions": (fake_llm.completions, {"prompt": text}),
        "openai_responses": (fake_llm.responses, {"input": text}),
        "anthropic_messages": (
            fake_llm.anthropic_messages,
            {"messages": [{"role": "user", "content": text}]},
        ),
    }
    streams = [
        (name, b"".join(answer(body | {"stream": True})))
        for name, (answer, body) in requests.items()
    ]
    rng = random.Random(7)
    for name, build_stream in SCENARIOS.values():
        streams.append((name, build_stream(pieces(text, rng))[0]))
    return streams


def plant(document: Any, value: str, rng: random.Random) -> bool:
    """Put ``value`` into a random string (or dict key) of ``document``; False if it has none."""
    places: list[tuple[Any, Any, bool]] = []

    def walk(node: Any) -> None:
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for key, item in list(items):
            if isinstance(node, dict):
                places.append((node, key, True))
            if isinstance(item, str):
                places.append((node, key, False))
            elif isinstance(item, dict | list):
                walk(item)

    walk(document)
    if not places:
        return False
    container, key, is_key = rng.choice(places)
    if is_key:
        container[f"{key} {value}"] = container.pop(key)
    else:
        old = container[key]
        cut = rng.randint(0, len(old))
        container[key] = f"{old[:cut]} {value} {old[cut:]}"
    return True


@pytest.mark.parametrize("secret", [KEY, EMAIL], ids=["aws-key", "email"])
def test_a_value_planted_anywhere_never_reaches_the_client(secret: str) -> None:
    rng = random.Random(SEED + len(secret))
    streams = base_streams()
    for trial in range(120):
        name, original = streams[trial % len(streams)]
        events = parse(original)
        candidates = [i for i, e in enumerate(events) if e.data and e.data[0] == "{"]
        index = rng.choice(candidates)
        event = events[index]
        if rng.random() < 0.15:  # into the SSE event name or id instead
            field = rng.choice(["event", "id"])
            planted = encode_event(event.data, **{field: f"x {secret} y"})
        else:
            document = json.loads(event.data)
            assert plant(document, secret, rng)
            planted = encode_event(json.dumps(document), event=event.event)
        stream = b"".join(e.raw for e in events[:index]) + planted
        stream += b"".join(e.raw for e in events[index + 1 :])
        data, blocked = run(guard_of(name), cuts(stream, rng))
        assert blocked is None, (trial, name)
        assert secret.encode() not in data, (trial, name)
        for sent in parse(data):
            if sent.data and sent.data[0] == "{":
                json.loads(sent.data)


def test_loose_strings_of_an_event_are_judged_in_one_scan_call_and_once_per_stream() -> None:
    """One call per event for all its new loose strings (one round trip to a remote backend),
    and a value judged clean is not judged again in later events."""
    calls: list[list[str]] = []

    async def scan_many(texts):
        calls.append(list(texts))
        found = []
        for index, text in enumerate(texts):
            found += [(name, replace(f, index=index)) for name, f in await scan(text)]
        return found

    chunk = {"id": "chatcmpl-7", "object": "chat.completion.chunk", "model": f"m {EMAIL}"}
    events = [sse(chunk | {"choices": [{"index": 0, "delta": {"content": w}}]}) for w in "abc"]
    guard = StreamGuard(stream_format("openai_chat"), scan, WINDOW, scan_many=scan_many)
    data, blocked = run(guard, [b"".join(events) + b"data: [DONE]\n\n"])
    assert blocked is None and EMAIL.encode() not in data
    assert len(calls[0]) > 3 and "chatcmpl-7" in calls[0]
    assert all("chatcmpl-7" not in texts and "choices" not in texts for texts in calls[1:])
    assert len(calls) <= 3  # the masked model name is judged again in each event, nothing else


def test_a_lone_surrogate_in_a_masked_event_keeps_the_stream_going() -> None:
    """The upstream's JSON may carry a lone surrogate escape; masking that event must still
    write valid bytes (escaped), not raise and cut the stream."""
    event = b'data: {"choices": [{"index": 0, "delta": {"content": "\\ud83d mail ' + (
        EMAIL.encode() + b'"}}]}\n\n'
    )
    data, blocked = run(guard_of("openai_chat"), [event, b"data: [DONE]\n\n"])
    assert blocked is None
    assert b"jane.doe" not in data and b"[EMAIL]" in data
    document = json.loads(data.split(b"\n")[0][len(b"data: ") :])
    assert document["choices"][0]["delta"]["content"] == "\ud83d mail [EMAIL]"


def test_an_event_type_that_is_not_a_string_is_judged_not_a_crash() -> None:
    """Found by tests/property: a Responses event whose ``type`` is an object (unhashable)
    made the adapter raise TypeError, so the stream ended in a guardrail error."""
    event = sse({"type": {"id": "resp_1", "text": f"mail {EMAIL}"}, "sequence_number": 4})
    data, blocked = run(guard_of("openai_responses"), [event])
    assert blocked is None and EMAIL.encode() not in data and b"[EMAIL]" in data
