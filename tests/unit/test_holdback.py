"""Hold-back window: streamed text is released masked, stable, and never leaks a finding."""

from __future__ import annotations

import asyncio
import base64
import functools
import json
import random
import string
from collections.abc import Sequence

import pytest
import re2

from extproc.backends import build
from extproc.backends.base import Capabilities, Guardrail
from extproc.config import GuardrailSpec
from extproc.formats import delta_slots
from extproc.formats.events import DeltaSlot, reencode_json
from extproc.formats.sse import SseParser, encode_event
from extproc.policy.decision import Placeholders, decide
from extproc.streaming.holdback import DeltaQueue, HoldBack, Release, _safe_cut
from extproc.vocabulary import Action, Block, Finding

SEED = 20240607
SECRET = re2.compile(r"secret-\d{4}")
EMAIL = re2.compile(r"[a-z]+@[a-z]+\.com")


class FakeGuardrail(Guardrail):
    """Masks ``secret-NNNN`` and e-mails (or blocks them); records every scanned text."""

    capabilities = Capabilities(max_match_chars=40)

    def __init__(self, action: Action = Action.MASK, block_secrets: bool = False) -> None:
        super().__init__(GuardrailSpec("fake", "fake", ("post_call",), True, {}))
        self.action = action
        self.block_secrets = block_secrets
        self.scanned: list[str] = []

    async def scan(self, texts: Sequence[str]) -> list[Finding]:
        self.scanned.extend(texts)
        found: list[Finding] = []
        for index, text in enumerate(texts):
            secret_action = Action.BLOCK if self.block_secrets else self.action
            found += _matches(SECRET, text, index, "SECRET", secret_action)
            found += _matches(EMAIL, text, index, "EMAIL", self.action)
        return found


def _matches(pattern: object, text: str, index: int, kind: str, action: Action) -> list[Finding]:
    return [
        Finding(index, m.start(), m.end(), kind, action)
        for m in pattern.finditer(text)  # type: ignore[attr-defined]
    ]


def reference(guardrails: Sequence[Guardrail], text: str) -> str:
    """The non-streamed answer: every guardrail over the whole text, masked in one go."""
    findings = [(g.name, f) for g in guardrails for f in asyncio.run(g.scan([text]))]
    decision = decide([text], findings)
    return decision.texts.get(0, text) if hasattr(decision, "texts") else text


def split_randomly(text: str, rng: random.Random, longest: int = 12) -> list[str]:
    pieces: list[str] = []
    position = 0
    while position < len(text):
        size = rng.randint(1, longest)
        pieces.append(text[position : position + size])
        position += size
    return pieces


async def stream(
    hold: HoldBack, deltas: Sequence[str], expected: str, leaks: Sequence[str] = ()
) -> str:
    """Push every delta; after each release the output must be a prefix of ``expected`` and
    hold none of ``leaks`` (the raw values of masked findings)."""
    out = ""
    for delta in [*deltas, None]:
        release = await (hold.finish() if delta is None else hold.push(delta))
        assert release.blocked is None
        out += release.text
        assert expected.startswith(out), (out, expected)
        assert not any(leak in out for leak in leaks)
    return out


def random_text(rng: random.Random, words: int) -> tuple[str, list[str]]:
    vocabulary = ["the", "model", "said", "hello", "data", "x", "42", "secret-", "ab@c", "é", "✓"]
    secrets: list[str] = []
    parts: list[str] = []
    for _ in range(words):
        roll = rng.random()
        if roll < 0.08:
            secrets.append(f"secret-{rng.randint(0, 9999):04d}")
            parts.append(secrets[-1])
        elif roll < 0.14:
            secrets.append(f"{rng.choice(['ann', 'bo', 'zed'])}@{rng.choice(['ex', 'corp'])}.com")
            parts.append(secrets[-1])
        else:
            parts.append(rng.choice(vocabulary))
    return rng.choice([" ", "\n", ", "]).join(parts), secrets


def test_one_push_equals_whole_text_mask() -> None:
    text = "key secret-1234 to ann@ex.com, not secret-12 or bo@ex."
    fake = FakeGuardrail()
    out = asyncio.run(stream(HoldBack([fake]), [text], reference([fake], text)))
    assert out == "key [SECRET] to [EMAIL], not secret-12 or bo@ex."


def test_random_splittings_release_exactly_the_masked_text() -> None:
    rng = random.Random(SEED)
    for _ in range(150):
        text, secrets = random_text(rng, rng.randint(0, 60))
        fake = FakeGuardrail()
        expected = reference([fake], text)
        deltas = split_randomly(text, rng)
        hold = HoldBack([fake], stride=rng.randint(1, 8))
        out = asyncio.run(stream(hold, deltas, expected, secrets))
        assert out == expected


def test_one_character_deltas_never_leak_a_split_secret() -> None:
    text = "a" * 50 + " secret-9876 " + "b" * 50 + " zed@corp.com"
    fake = FakeGuardrail()
    out = asyncio.run(
        stream(HoldBack([fake]), list(text), reference([fake], text), ["secret-9876", "zed@"])
    )
    assert out.count("[SECRET]") == 1 and out.endswith("[EMAIL]")


def test_text_is_released_once_it_leaves_the_window() -> None:
    for stride in (1, 5, 16):
        hold = HoldBack([FakeGuardrail()], stride=stride)
        released = ""
        for _ in range(30):
            released += asyncio.run(hold.push("plain words ")).text
            assert hold.held <= hold.window + stride - 1 + 12  # no further than window + stride
        assert len(released) == 30 * 12 - hold.held >= 30 * 12 - hold.window - stride - 11
    hold = HoldBack([FakeGuardrail()], stride=1)
    for _ in range(30):
        asyncio.run(hold.push("plain words "))
    assert hold.held == hold.window


def test_scans_cover_only_window_and_unreleased_text() -> None:
    fake = FakeGuardrail()
    hold = HoldBack([fake], stride=4)
    rng = random.Random(SEED)
    text, _ = random_text(rng, 400)
    pushes = split_randomly(text, rng, longest=6)
    asyncio.run(stream(hold, pushes, reference([FakeGuardrail()], text)))
    # context (W) + unreleased text: W + stride + one delta, plus a finding the cut stepped
    # back from (at most W): never the history
    assert max(len(s) for s in fake.scanned) <= 3 * hold.window + 4 + 6
    assert len(text) > 10 * 3 * hold.window
    assert len(fake.scanned) < len(pushes)  # pushes that cannot release anything skip the scan


def test_block_stops_the_stream_before_any_byte_of_the_finding() -> None:
    text = "intro " * 20 + "leak secret-4242 " + "after " * 20
    rng = random.Random(SEED)
    for _ in range(40):
        hold = HoldBack([FakeGuardrail(block_secrets=True)])
        out, blocked = "", None
        for delta in split_randomly(text, rng):
            release = asyncio.run(hold.push(delta))
            out += release.text
            if release.blocked:
                blocked = release.blocked
                break
        if blocked is None:
            release = asyncio.run(hold.finish())
            blocked, out = release.blocked, out + release.text
        assert blocked == Block("fake", ("SECRET",))
        assert text[: text.index("secret-4242")].startswith(out)
        assert asyncio.run(hold.push("more")) == Release(blocked=blocked)  # stays blocked


def test_cut_steps_back_to_the_start_of_a_span_it_would_split() -> None:
    def finding(start: int, end: int) -> Finding:
        return Finding(0, start, end, "X", Action.MASK)

    assert _safe_cut(20, 0, [finding(15, 25)]) == 15
    assert _safe_cut(20, 0, [finding(5, 12), finding(10, 22)]) == 5  # merged span
    assert _safe_cut(20, 0, [finding(5, 20), finding(20, 30)]) == 20  # touching, not split
    assert _safe_cut(20, 8, [finding(2, 30)]) == 8  # never before released text


class Overreaching(FakeGuardrail):
    """Declares a window shorter than its matches: a broken backend."""

    capabilities = Capabilities(max_match_chars=4)


def test_a_backend_breaking_its_window_still_gets_its_held_part_masked() -> None:
    hold = HoldBack([Overreaching()], stride=1)
    out = asyncio.run(hold.push("ok secret-")).text
    assert out == "ok sec"  # released too early: the window was declared too short
    rest = asyncio.run(hold.push("1234 bye"))
    rest_final = asyncio.run(hold.finish())
    tail = rest.text + rest_final.text
    assert "1234" not in tail and tail.startswith("[SECRET]")


def test_placeholders_number_values_across_releases() -> None:
    placeholders = Placeholders({"fake": "<{type}_{n}>"})
    judge = functools.partial(decide, placeholders=placeholders)
    hold = HoldBack([FakeGuardrail()], judge=judge)
    text = "ann@ex.com " + "filler " * 20 + "bo@ex.com then ann@ex.com"
    out = ""
    for delta in [*split_randomly(text, random.Random(SEED)), None]:
        out += asyncio.run(hold.finish() if delta is None else hold.push(delta)).text
    assert out.split()[0] == "<EMAIL_1>" and out.endswith("<EMAIL_2> then <EMAIL_1>")
    assert placeholders.originals == {"<EMAIL_1>": "ann@ex.com", "<EMAIL_2>": "bo@ex.com"}


def test_window_can_grow_not_shrink_and_finish_is_final() -> None:
    assert HoldBack([FakeGuardrail()], window=10).window == 40
    assert HoldBack([FakeGuardrail()], window=100).window == 100
    assert HoldBack([]).window == 0
    hold = HoldBack([FakeGuardrail()])
    asyncio.run(hold.finish())
    with pytest.raises(RuntimeError):
        asyncio.run(hold.push("x"))
    with pytest.raises(ValueError):
        HoldBack([], stride=0)


PII_TEXT = (
    "Sure! Here is the summary you asked for. The customer, reachable at jane.doe@example.com "
    "or +1 415-555-0134, paid with card 4111 1111 1111 1111 on March 3rd. Their SSN on file is "
    "078-05-1120 and the refund goes to IBAN DE89 3704 0044 0532 0130 00. The server at "
    "10.0.0.12 logged 3 attempts between 12:30 and 12:45; order 1234-5678 shipped for $11 055.00."
)


def pii() -> Guardrail:
    return build(GuardrailSpec("pii", "pii", ("post_call",), True, {"guardrail": "pii"}))


def test_real_pii_guardrail_random_splittings() -> None:
    guard = pii()
    expected = reference([guard], PII_TEXT)
    assert expected.count("[") >= 5  # the reference really masks things
    leaks = ["jane.doe", "0134", "1111 1111", "0532", "05-1120", "10.0.0.12"]
    rng = random.Random(SEED)
    for _ in range(30):
        deltas = split_randomly(PII_TEXT * 2, rng, longest=8)
        hold = HoldBack([guard], stride=rng.choice([1, 16]))
        assert asyncio.run(stream(hold, deltas, reference([guard], PII_TEXT * 2), leaks))


# -- writing released text back into events --------------------------------------------------


def chat_stream(deltas: Sequence[str]) -> bytes:
    events = [{"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}]
    events += [{"id": "c1", "choices": [{"index": 0, "delta": {"content": d}}]} for d in deltas]
    events.append({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    return b"".join(encode_event(json.dumps(e)) for e in events) + encode_event("[DONE]")


def delivery(queue: DeltaQueue[DeltaSlot], release: Release) -> list[DeltaSlot]:
    """The slots ``release`` completes, with the queue's writes done."""
    delivery = queue.deliver(release)
    for slot, text in delivery.writes:
        slot.write(text)
    return delivery.refs


async def guard_stream(body: bytes, hold: HoldBack) -> list[bytes]:
    """A minimal session for one channel: an event goes out, in stream order, once every text
    slot in it has been delivered by the queue. Delivered slots are kept by identity in a dict
    that holds them (a set of ``id``s would match a new slot that reuses a freed one's id)."""
    queue, waiting, out = DeltaQueue(), [], []
    delivered: dict[int, DeltaSlot] = {}
    parser = SseParser()
    for event in parser.feed(body) + parser.flush():
        document, slots = delta_slots("openai_chat", event)
        for slot in slots:
            release = await hold.push(slot.text)
            queue.hold(slot.text, slot)
            delivered.update((id(slot), slot) for slot in delivery(queue, release))
        if document and document["choices"][0].get("finish_reason"):
            delivered.update((id(slot), slot) for slot in delivery(queue, await hold.finish()))
        waiting.append((event, document, slots))
        while waiting and all(id(slot) in delivered for slot in waiting[0][2]):
            event, document, slots = waiting.pop(0)
            out.append(reencode_json(event, document) if slots else event.raw)
    assert not waiting
    return out


def test_events_carry_the_masked_text_and_stay_valid_json() -> None:
    text = "Mail jane@example.com now, call 415-555-0134 — merci ✓ " * 3
    rng = random.Random(SEED)
    guard = pii()
    expected = reference([guard], text)
    for _ in range(10):
        deltas = split_randomly(text, rng, longest=5)
        sent = asyncio.run(guard_stream(chat_stream(deltas), HoldBack([guard])))
        parser = SseParser()
        events = parser.feed(b"".join(sent)) + parser.flush()
        assert len(events) == len(deltas) + 3  # no event lost or added
        received = ""
        for event in events[:-1]:
            document = json.loads(event.data)  # every event is still valid JSON
            received += document["choices"][0]["delta"].get("content", "")
        assert received == expected and "jane@" not in received


def test_snapshot_gets_the_whole_released_masked_text() -> None:
    done = {"type": "response.output_text.done", "output_index": 0, "text": "mail a@b.com"}
    event = SseParser().feed(encode_event(json.dumps(done)))[0]
    document, slots = delta_slots("openai_responses", event)
    assert slots[0].snapshot
    queue: DeltaQueue[DeltaSlot] = DeltaQueue()
    delta = {"delta": "mail a@b.com"}
    queue.hold(delta["delta"], DeltaSlot(delta, "delta", delta["delta"]))
    delivery(queue, Release("mail ", consumed=5))
    assert queue.released_text == "" and queue.carry == "mail "  # slot not wholly released
    delivery(queue, Release("[EMAIL]", consumed=7))
    queue.write_snapshot(slots[0])
    assert json.loads(reencode_json(event, document).split(b"data: ")[1])["text"] == "mail [EMAIL]"


def test_delta_queue_delivers_only_wholly_released_slots() -> None:
    body = chat_stream(["ab", "cd", "ef"])
    parser = SseParser()
    slots = [s for e in parser.feed(body) for s in delta_slots("openai_chat", e)[1]]
    queue: DeltaQueue[DeltaSlot] = DeltaQueue()
    for slot in slots:
        queue.hold(slot.text, slot)
    assert delivery(queue, Release("AB", consumed=3)) == [slots[0]]  # "c" of slot 2 released
    assert [s.container["content"] for s in slots[:1]] == ["AB"]
    ready = delivery(queue, Release("CDEF", consumed=3))
    assert ready == slots[1:]
    assert [s.container["content"] for s in ready] == ["CDEF", ""]
    assert queue.released_text == "ABCDEF" and queue.pending == 0
    # Only the texts that change are written: an unmasked release writes nothing.
    queue = DeltaQueue()
    queue.hold("gh", slots[0])
    done = queue.deliver(Release("gh", consumed=2))
    assert done.refs == [slots[0]] and done.masked is None and not done.writes


def test_a_block_keeps_the_services_message_and_details() -> None:
    """The released piece's findings are re-based, not rebuilt: what the service said about a
    block reaches the stream's error event as it reaches a JSON answer's 400."""

    class Service(Guardrail):
        capabilities = Capabilities(max_match_chars=40)

        def __init__(self) -> None:
            super().__init__(GuardrailSpec("svc", "svc", ("post_call",), True, {}))

        async def scan(self, texts: Sequence[str]) -> list[Finding]:
            return [
                Finding(i, m.start(), m.end(), "TOPIC", Action.BLOCK, "X", None, "Nope", {"v": 1})
                for i, text in enumerate(texts)
                for m in SECRET.finditer(text)
            ]

    holdback = HoldBack([Service()])

    async def run() -> Release:
        await holdback.push("clean words " * 8 + "secret-1234 ")
        return await holdback.finish()

    blocked = asyncio.run(run()).blocked
    assert blocked == Block("svc", ("X",), "Nope", {"v": 1})
    assert blocked.details == {"v": 1}  # details do not take part in equality


# -- findings longer than any window -----------------------------------------------------------


def _b64(
    rng: random.Random, size: int, alphabet: str = string.ascii_letters + "0123456789+/"
) -> str:
    return "".join(rng.choice(alphabet) for _ in range(size))


def _long_findings(rng: random.Random) -> dict[str, tuple[str, list[str]]]:
    """Texts whose secret is longer than the old 256-character window, and pieces of it that
    must never be seen unmasked (start, middle, end)."""
    quoted = _b64(rng, 900)
    header = (
        base64.urlsafe_b64encode(
            json.dumps({"alg": "RS256", "kid": _b64(rng, 300), "typ": "JWT"}).encode()
        )
        .decode()
        .rstrip("=")
    )
    token = f"{header}.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkphbmUifQ.{_b64(rng, 43, B64URL)}"
    lines = [_b64(rng, 64) for _ in range(20)]
    pem = "-----BEGIN RSA PRIVATE KEY-----\n" + "\n".join(lines) + "\n-----END RSA PRIVATE KEY-----"
    values = [base64.b64encode(_b64(rng, 40).encode()).decode() for _ in range(3)]
    manifest = (
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\n  namespace: prod\n  labels:\n"
        + "".join(f"    app.example.com/label-{i}: value-{i}\n" for i in range(12))
        + "type: Opaque\ndata:\n"
        + "".join(f"  key{i}: {v}\n" for i, v in enumerate(values))
    )

    def pieces(value: str) -> list[str]:
        middle = len(value) // 2
        return [value[:16], value[middle : middle + 16], value[-16:]]

    return {
        "quoted high-entropy string": (f'config = ["{quoted}"]\nnext line', pieces(quoted)),
        "JWT with a long header": (f"Use the token {token} to call it.", pieces(token)),
        "PEM private key": (
            f"Here it is:\n{pem}\nDone.",
            [p for line in lines for p in (line[:16],)],
        ),
        "Kubernetes Secret": (f"```yaml\n{manifest}```\nApply it.", [v[:16] for v in values]),
    }


B64URL = string.ascii_letters + "0123456789-_"


@pytest.mark.parametrize("name", sorted(_long_findings(random.Random(SEED))))
def test_findings_longer_than_any_window_are_held_whole(name: str) -> None:
    """The old fixed window (256 characters) released the start of such findings before their
    end had come; now each is held until it is decided, and masked whole like the reference."""
    guard = build(GuardrailSpec("s", "secrets", ("post_call",), True, {"action": "mask"}))
    text, leaks = _long_findings(random.Random(SEED))[name]
    expected = reference([guard], text)
    assert all(leak not in expected for leak in leaks)  # the whole text masks all of it
    rng = random.Random(f"{SEED}-{name}")
    for _ in range(4):
        hold = HoldBack([guard], stride=rng.choice([1, 16]))
        deltas = split_randomly(text, rng, longest=rng.choice([3, 40]))
        assert asyncio.run(stream(hold, deltas, expected, leaks)) == expected
