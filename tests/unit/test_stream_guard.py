"""StreamGuard: a streamed answer of every API, cut anywhere, reaches the client masked exactly
like the whole answer would be, in order, each event valid, with no byte of a finding."""

from __future__ import annotations

import asyncio
import gc
import json
import random

import pytest

from extproc.backends import build
from extproc.config import GuardrailSpec
from extproc.formats import delta_slots, stream_format
from extproc.formats.sse import SseParser
from extproc.policy.decision import decide
from extproc.stack import fake_llm
from extproc.streaming.guard import _EVENT_WORK, _SLICE_WORK, StreamGuard, StreamTooLarge
from extproc.vocabulary import Action, Finding

SEED = 4242
EMAIL = "jane.doe@example.com"
KEY = "AKIA" + "IOSFODNN7EXAMPLE"
TEXT = (
    f"Sure. Write to {EMAIL} or to bob.smith@corp.example.org; "
    + "the weather is fine today and " * 8
    + f"ping {EMAIL} again."
)

# format name -> (fake LLM answer builder, request body)
FORMATS = {
    "openai_chat": (fake_llm.chat, {"messages": [{"role": "user", "content": TEXT}]}),
    "openai_completions": (fake_llm.completions, {"prompt": TEXT}),
    "openai_responses": (fake_llm.responses, {"input": TEXT}),
    "anthropic_messages": (
        fake_llm.anthropic_messages,
        {"messages": [{"role": "user", "content": TEXT}]},
    ),
}


def guardrail(kind: str = "pii", **params: object):
    spec = GuardrailSpec("g", kind, ("post_call",), True, {"guardrail": kind, **params})
    return build(spec)


def scanner(guard):
    async def scan(text: str):
        return [(guard.name, f) for f in await guard.scan([text])]

    return scan


def stream_of(name: str, text: str = TEXT) -> bytes:
    answer, request = FORMATS[name]
    body = json.loads(json.dumps(request).replace(json.dumps(TEXT)[1:-1], json.dumps(text)[1:-1]))
    return b"".join(answer(body | {"stream": True}))


def reference(guard, text: str) -> str:
    findings = [(guard.name, f) for f in asyncio.run(guard.scan([text]))]
    decision = decide([text], findings)
    return decision.texts.get(0, text) if hasattr(decision, "texts") else text


def cuts(data: bytes, rng: random.Random) -> list[bytes]:
    points = sorted(rng.sample(range(1, len(data)), rng.randint(1, min(40, len(data) - 1))))
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


def run(guard: StreamGuard, chunks: list[bytes]) -> tuple[bytes, object]:
    async def go():
        out = []
        for position, chunk in enumerate(chunks):
            fed = await guard.feed(chunk, position == len(chunks) - 1)
            out.append(fed.data)
            if fed.blocked:
                return b"".join(out), fed.blocked
        return b"".join(out), None

    return asyncio.run(go())


def client_view(name: str, data: bytes) -> tuple[str, list[str], int]:
    """(text rebuilt from deltas, snapshot texts, number of events); every event must parse."""
    events = SseParser().feed(data)
    deltas, snapshots = [], []
    for event in events:
        if event.data and event.data != "[DONE]":
            json.loads(event.data)  # each event still valid JSON
        _, slots = delta_slots(name, event)
        for slot in slots:
            (snapshots if slot.snapshot else deltas).append(slot.text)
    return "".join(deltas), snapshots, len(events)


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_random_chunkings_give_the_whole_text_mask(name: str) -> None:
    pii = guardrail("pii")
    expected = reference(pii, TEXT)
    assert expected != TEXT and EMAIL not in expected
    original = stream_of(name)
    original_events = len(SseParser().feed(original))
    rng = random.Random(SEED)
    for trial in range(40):
        one_byte = [original[i : i + 1] for i in range(len(original))]
        chunks = cuts(original, rng) if trial else one_byte
        guard = StreamGuard(stream_format(name), scanner(pii), pii.capabilities.max_match_chars)
        data, blocked = run(guard, chunks)
        assert blocked is None
        assert EMAIL.encode() not in data and b"bob.smith" not in data
        text, snapshots, count = client_view(name, data)
        assert text == expected, (name, trial)
        assert all(s == expected for s in snapshots)
        assert count == original_events  # nothing dropped, nothing added


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_clean_stream_is_byte_identical(name: str) -> None:
    pii = guardrail("pii")
    original = stream_of(name, "nothing personal here " * 30)
    guard = StreamGuard(stream_format(name), scanner(pii), pii.capabilities.max_match_chars)
    data, blocked = run(guard, cuts(original, random.Random(SEED)))
    assert blocked is None and data == original


def test_text_is_held_only_by_the_window() -> None:
    """Released as it flows: after a long clean prefix most of it is already out."""
    pii = guardrail("pii")
    original = stream_of("openai_chat", "plain words " * 200)
    guard = StreamGuard(
        stream_format("openai_chat"), scanner(pii), pii.capabilities.max_match_chars
    )
    half = len(original) // 2
    first, _ = run(guard, [original[:half]])
    held = half - len(first)
    assert len(first) > 0 and held < 4 * pii.capabilities.max_match_chars + 400


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_block_mid_stream_stops_before_the_finding(name: str) -> None:
    secrets = guardrail("secrets", action="block")
    text = "harmless words " * 40 + f"the key is {KEY} and more " + "tail " * 20
    original = stream_of(name, text)
    guard = StreamGuard(stream_format(name), scanner(secrets), secrets.capabilities.max_match_chars)
    data, blocked = run(guard, cuts(original, random.Random(SEED)))
    assert blocked is not None and blocked.types
    assert KEY[:8].encode() not in data and b"tail" not in data
    sent, _, _ = client_view(name, data)
    assert text.startswith(sent) and len(sent) < text.index(KEY)


def test_held_text_is_bounded() -> None:
    """A 'finding' that never ends cannot make the guard hold the whole stream in memory."""

    async def scan(text: str):
        return [("endless", Finding(0, 0, len(text), "X", Action.MASK))]

    guard = StreamGuard(stream_format("openai_chat"), scan, 64, max_held_chars=2000)
    with pytest.raises(StreamTooLarge):
        run(guard, [stream_of("openai_chat", "word " * 2000)])


def one_character_events(count: int) -> bytes:
    """A chat stream of ``count`` one-character deltas (~120 bytes of event each)."""
    chunk = {"id": "c", "object": "chat.completion.chunk", "model": "m", "choices": []}
    events = [
        {**chunk, "choices": [{"index": 0, "delta": {"content": "ab"[i % 2]}}]}
        for i in range(count)
    ]
    return b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events)


def test_held_event_bytes_are_bounded_too() -> None:
    """One-character deltas held whole: 500 characters are within max_held_chars, but ~60 KB
    of events (~120 bytes each) are past its 16 bytes per character."""

    async def scan(text: str):
        return [("endless", Finding(0, 0, len(text), "X", Action.MASK))]

    guard = StreamGuard(stream_format("openai_chat"), scan, 64, max_held_chars=2000)
    with pytest.raises(StreamTooLarge, match="bytes of events held back"):
        run(guard, [one_character_events(500)])


def test_event_bytes_sent_on_are_no_longer_counted() -> None:
    async def scan(text: str):
        return []

    guard = StreamGuard(stream_format("openai_chat"), scan, 64, max_held_chars=2000)
    data = one_character_events(5000)  # ~610 KB through, 19x the held-bytes bound
    assert len(data) > 16 * 16 * 2000
    run(guard, [data[i : i + 4096] for i in range(0, len(data), 4096)])
    assert guard._held_bytes < 16 * 2000


def test_a_streamed_private_key_never_leaks_a_line() -> None:
    """A PEM key is longer than any window: its body lines stay held from the header on, until
    the footer closes the finding (a finding that grows is never cut)."""
    secrets = guardrail("secrets", action="mask")
    line = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj"
    key = "-----BEGIN PRIVATE KEY-----\n" + "\n".join([line] * 40) + "\n-----END PRIVATE KEY-----"
    text = "here it is:\n" + key + "\nkeep it safe " * 30
    expected = reference(secrets, text)
    assert line not in expected
    original = stream_of("openai_chat", text)
    rng = random.Random(SEED)
    for _ in range(10):
        guard = StreamGuard(stream_format("openai_chat"), scanner(secrets), 256)
        data, blocked = run(guard, cuts(original, rng))
        assert blocked is None and line[:20].encode() not in data
        assert client_view("openai_chat", data)[0] == expected


class WordCheck:
    """A service judging the stream itself: blocks at the delta that contains ``word``."""

    def __init__(self, word: str) -> None:
        self.word = word
        self.seen: list[str] = []
        self.finished = False

    async def check(self, channel, text: str):
        self.seen.append(text)
        return f"{self.word!r} is not allowed" if self.word in text else None

    async def finish(self):
        self.finished = True
        return None

    def close(self) -> None:
        pass


def test_a_service_stream_check_sees_every_delta_in_order_and_can_block() -> None:
    text = "one two three " * 30 + "forbidden four five"
    original = stream_of("openai_chat", text)

    async def nothing(text: str):
        return []

    check = WordCheck("forbidden")
    guard = StreamGuard(stream_format("openai_chat"), nothing, 0, stride=1, checks=[("svc", check)])
    data, blocked = run(guard, cuts(original, random.Random(SEED)))
    assert blocked is not None and blocked.guardrail == "svc" and "forbidden" in blocked.message
    assert (
        b"forbidden" not in data
        and client_view("openai_chat", data)[0] == text[: len("".join(check.seen[:-1]))]
    )
    clean = WordCheck("absent")
    guard = StreamGuard(stream_format("openai_chat"), nothing, 0, stride=1, checks=[("svc", clean)])
    data, blocked = run(guard, [original])
    assert blocked is None and "".join(clean.seen) == text and clean.finished


def test_hostile_streams_never_crash_the_guard() -> None:
    """Mutated and truncated streams (bad JSON, odd types, stray bytes, cut events) are passed
    or judged, never an unexpected exception; an e-mail left intact is never sent, even in an
    event whose JSON the mutation broke."""
    pii = guardrail("pii")
    rng = random.Random(SEED)
    names = sorted(FORMATS)
    oddities = [b"\xff\xfe", b'data: {"choices": 7}\n\n', b"\r\r\n", b"data: [1,2\n\n", b":\n"]
    for trial in range(150):
        name = names[trial % len(names)]
        data = bytearray(stream_of(name))
        for _ in range(rng.randint(1, 6)):
            position = rng.randrange(len(data))
            if rng.random() < 0.5:
                data[position] = rng.randrange(256)
            else:
                data[position:position] = rng.choice(oddities)
        if rng.random() < 0.3:
            del data[rng.randrange(len(data)) :]
        guard = StreamGuard(stream_format(name), scanner(pii), pii.capabilities.max_match_chars)
        sent, _ = run(guard, cuts(bytes(data), rng))
        # Nowhere in what is sent: parsed text, events whose JSON the mutation broke, and lines
        # a client ignores (a comment cut into a data line is dropped).
        assert EMAIL.encode() not in sent


# -- a channel held whole (a whole-text service): held events are cheap, released in slices ----

WHOLE = 1 << 22  # the window of a whole-text service: the whole (bounded) answer


async def nothing(text: str):
    return []


def numbered_words(count: int, head: str = "") -> str:
    return head + " ".join(f"w{number}" for number in range(count))


def test_events_held_whole_add_no_objects_for_the_garbage_collector() -> None:
    """Each waiting event of a channel held whole is kept as its bytes (a tuple the collector
    stops tracking), not parsed: the collector's passes do not grow with the answer. (Parsed,
    an event was a dozen tracked objects; with 80,000 held, one pass held the loop 300 ms.)"""
    original = stream_of("openai_chat", numbered_words(3000))
    events = SseParser().feed(original)
    guard = StreamGuard(stream_format("openai_chat"), nothing, WHOLE)

    async def go() -> tuple[int, bytes]:
        out = [(await guard.feed(events[0].raw)).data]
        gc.collect()
        before = len(gc.get_objects())
        out += [(await guard.feed(event.raw)).data for event in events[1:-2]]
        gc.collect()
        held = len(gc.get_objects()) - before
        out += [(await guard.feed(event.raw)).data for event in events[-2:-1]]
        out.append((await guard.feed(events[-1].raw, True)).data)
        return held, b"".join(out)

    held, data = asyncio.run(go())
    assert len(events) > 3000 and held < 100, held  # about 12 per event, parsed
    assert data == original


def run_ticking(guard: StreamGuard, before: list[bytes], during: list[bytes]) -> tuple[bytes, int]:
    """Feed ``before``, then ``during`` with a ticker task running: (all the data sent, how
    often the ticker ran while ``during`` was fed, i.e. how often the guard let the loop go)."""

    async def go() -> tuple[bytes, int]:
        out = [(await guard.feed(chunk)).data for chunk in before]
        ticks, running = 0, True

        async def ticker() -> None:
            nonlocal ticks
            while running:
                await asyncio.sleep(0)
                ticks += 1

        task = asyncio.create_task(ticker())
        await asyncio.sleep(0)  # the ticker is waiting for its first turn
        ticks = 0
        for position, chunk in enumerate(during):
            out.append((await guard.feed(chunk, position == len(during) - 1)).data)
        running = False
        await task
        return b"".join(out), ticks

    return asyncio.run(go())


def test_releasing_a_channel_held_whole_lets_the_event_loop_go() -> None:
    """The event that ends a channel held whole releases thousands of events at once; masked,
    each is rewritten (the whole masked text goes in the first, the others are emptied). That
    is done in slices, the loop let go between them, never in one stretch: a ticker task gets
    a turn for every ``_SLICE_WORK // _EVENT_WORK`` events rewritten."""
    pii = guardrail("pii")
    text = numbered_words(4000, head=f"mail {EMAIL} then ")
    original = stream_of("openai_chat", text)
    events = [event.raw for event in SseParser().feed(original)]
    guard = StreamGuard(stream_format("openai_chat"), scanner(pii), WHOLE)
    data, ticks = run_ticking(guard, events[:-2], events[-2:])  # the finish_reason, [DONE]
    assert client_view("openai_chat", data)[0] == reference(pii, text)
    assert EMAIL.encode() not in data
    assert ticks >= len(events) // (_SLICE_WORK // _EVENT_WORK), ticks
    # Unmasked, the held events go out as they came, 1 work each: still sliced.
    original = stream_of("openai_chat", numbered_words(3 * _SLICE_WORK))
    events = [event.raw for event in SseParser().feed(original)]
    guard = StreamGuard(stream_format("openai_chat"), nothing, WHOLE)
    data, ticks = run_ticking(guard, events[:-2], events[-2:])
    assert data == original and ticks >= 3, ticks


def test_a_large_body_is_read_in_slices() -> None:
    """A whole answer in one chunk (a buffered body framed as SSE: up to the body limit) is cut
    into events, and they are judged, with the loop let go in between."""
    original = stream_of("openai_chat", numbered_words(2000))
    guard = StreamGuard(stream_format("openai_chat"), nothing, 64)
    data, ticks = run_ticking(guard, [], [original])
    assert data == original
    assert ticks >= 2000 // (_SLICE_WORK // _EVENT_WORK), ticks
