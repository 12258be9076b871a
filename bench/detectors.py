"""Speed of the built-in detectors, in process, one core: what a request pays per guardrail.

    python bench/detectors.py [--eval-dir ../shared/eval] [--mb 3] [--runs 2000]

Two corpora, reported separately because they differ ~10x in how much work a detector does:

(a) "chat/prose mix": what LLM requests look like. Generated prose, some code and JSON snippets,
    15% of the texts non-ASCII (a few accented words and typographic quotes, or whole paragraphs
    in German, Russian or Chinese), sparse numbers that are not PII (dates, versions, amounts,
    ids; ~2% of words) and sparse PII and secrets (~0.2% of words). The issue's target (>= 50 MB/s
    of mixed text on one core) is judged on this figure. Also shown split into its ASCII and
    non-ASCII texts.
(b) "PII-dense eval texts": the rows of pii.dev.jsonl, short and digit-heavy (almost every row
    holds phone numbers, cards, IBANs, addresses): a worst case, not a typical request.

Texts are cut into chat-message-sized pieces (<= 2,000 characters) and scanned the way the server
scans a request: one ``scan`` call per request of 8 texts. MB/s is UTF-8 bytes over the best of
3 passes, by wall clock (perf_counter) and by CPU time (process_time, which other load on the
machine does not inflate). Then the per-call latency on a ~2 KB chat request of 8 messages (p50 /
p99 over ``--runs`` calls). "combined" runs every registered pattern detector (pii, secrets,
prompt_injection) on each request. Detectors not registered (yet) are skipped.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from extproc.backends import REGISTRY, _import_builtins, build  # noqa: E402
from extproc.config import GuardrailSpec  # noqa: E402

NAMES = ("pii", "secrets", "prompt_injection")
CHUNK = 2_000
TEXTS_PER_REQUEST = 8
NON_ASCII_SHARE = 0.15

_PROSE = (
    "the release process starts when main is green for the nightly suite and the manager tags a "
    "commit then the build system produces artifacts for every supported platform which are "
    "signed and uploaded to a staging bucket upgrade tests run against the two previous minor "
    "versions hotfixes follow the same path from a maintenance branch rollbacks promote previous "
    "artifacts and never rebuild them could you please summarise this document explain why the "
    "query is slow compare both approaches how long does it take to migrate the customer account "
    "invoice order history I tried restarting the service but the error still appears in the logs "
    "after upgrading what is the best way to structure the tests for this module thanks in advance"
)
_WORDS = _PROSE.split()
# Numbers that are not PII (dates, versions, amounts, counts, times, ids, ports, percentages).
_NUMBERS = (
    "2024-03-15",
    "v2.4.1",
    "$1,250.00",
    "12",
    "3",
    "10:30",
    "4.5%",
    "1999-2004",
    "#48213",
    "8080",
    "2023",
    "0.25",
    "100",
    "17:45:00",
    "3.11",
    "1e-5",
    "404",
    "1,000,000",
    "Q3",
    "24h",
    "512MB",
    "2.0.0-rc1",
    "2025-01-07T09:15:00Z",
)
_SPRINKLES = (
    "mail jane.doe@example.com",
    "call +1 415-555-0100",
    "ring 0494 92 82 32",
    "card 4111 1111 1111 1111",
    "SSN 078-05-1123",
    "IBAN GB82 WEST 1234 5698 7654 32",
    "host 10.20.30.40",
    "key AKIAIOSFODNN7EXAMPLE",
    "token ghp_0123456789abcdefghijABCDEFGHIJ012345",
)
# Non-ASCII inside mostly English text: names, places, typography.
_SPRINKLED_NON_ASCII = (
    "café",
    "naïve",
    "résumé",
    "Zürich",
    "Ångström",
    "São",
    "José",
    "—",
    "“quoted”",
    "…",
    "€20",
    "①",
)
# Whole paragraphs in other languages (a share of chat traffic is not in English).
_FOREIGN = (
    "Könnten Sie bitte die Rechnung für März prüfen und mir die Änderungen bis Freitag schicken? "
    "Die Lieferung für Bestellung 48213 ist noch nicht angekommen, größere Verzögerungen sind "
    "leider üblich geworden. ",
    "Пожалуйста, объясните, почему запрос выполняется так медленно и как можно ускорить "
    "миграцию данных клиента на новую версию сервиса без остановки работы. ",
    "请帮我总结这份文档的主要内容，并解释为什么这个查询在生产环境中运行得很慢。"  # noqa: RUF001
    "我们计划在下个季度把客户数据迁移到新的系统，需要注意哪些问题？",  # noqa: RUF001
    "Pouvez-vous m’expliquer la différence entre ces deux approches ? Le déploiement échoue "  # noqa: RUF001
    "après la mise à jour et les journaux ne montrent rien d’évident. ",  # noqa: RUF001
)
_CODE = '''def load_orders(session, customer_id: int, limit: int = 100) -> list[dict]:
    """Return the customer's most recent orders, newest first."""
    rows = session.execute(
        "SELECT id, total, created_at FROM orders WHERE customer_id = %s ORDER BY id DESC LIMIT %s",
        (customer_id, limit),
    )
    return [{"id": r[0], "total": float(r[1]), "created": r[2].isoformat()} for r in rows]


for attempt in range(3):
    try:
        response = client.get(f"http://localhost:8080/api/v2/orders?page={attempt}", timeout=2.5)
        response.raise_for_status()
        break
    except TimeoutError:
        time.sleep(0.5 * 2**attempt)
'''
_JSON = {
    "id": "ord_48213",
    "status": "shipped",
    "created_at": "2025-01-07T09:15:00Z",
    "total": 1250.0,
    "currency": "EUR",
    "items": [
        {"sku": "A-1042", "qty": 2, "price": 19.99},
        {"sku": "B-2210", "qty": 1, "price": 1210.02},
    ],
    "shipping": {"carrier": "dhl", "tracking": "JD014600006281234567", "weight_kg": 3.4},
    "version": "2.4.1",
}


def prose(rng: random.Random, size: int, sprinkle_non_ascii: bool = False) -> str:
    """English-like prose with sparse numbers and sparse PII / secrets."""
    words: list[str] = []
    length = 0
    while length < size:
        roll = rng.random()
        if roll < 0.002:
            word = rng.choice(_SPRINKLES)
        elif roll < 0.022:
            word = rng.choice(_NUMBERS)
        elif sprinkle_non_ascii and roll < 0.06:
            word = rng.choice(_SPRINKLED_NON_ASCII)
        else:
            word = rng.choice(_WORDS)
        words.append(word)
        length += len(word) + 1
    return " ".join(words)


def chat_text(rng: random.Random, size: int) -> str:
    """One message of the mix: prose, often with a code or JSON snippet; some not ASCII."""
    parts = []
    non_ascii = rng.random() < NON_ASCII_SHARE
    foreign = non_ascii and rng.random() < 0.5
    if foreign:
        paragraph = rng.choice(_FOREIGN)
        parts.append(paragraph * max(1, size // (3 * len(paragraph))))
    roll = rng.random()
    if roll < 0.2:
        parts.append(_CODE)
    elif roll < 0.35:
        parts.append(json.dumps(_JSON, indent=2))
    used = sum(len(p) for p in parts)
    parts.insert(0, prose(rng, max(100, size - used), sprinkle_non_ascii=non_ascii and not foreign))
    return "\n\n".join(parts)


def mix_corpus(megabytes: float) -> list[str]:
    rng = random.Random(1234)
    texts, size = [], 0
    while size < megabytes * 1e6:
        text = chat_text(rng, rng.randint(300, 4000))
        texts.append(text)
        size += len(text.encode())
    return _cut(texts)


def eval_corpus(eval_dir: Path) -> list[str]:
    path = eval_dir / "pii.dev.jsonl"
    if not path.exists():
        return []
    return _cut([json.loads(line)["text"] for line in path.open()])


def _cut(texts: list[str]) -> list[str]:
    """Cut long texts into message-sized pieces, keep short ones whole, shuffle."""
    chunks = [t[i : i + CHUNK] for t in texts for i in range(0, len(t), CHUNK)]
    random.Random(99).shuffle(chunks)
    return chunks


def requests(chunks: Sequence[str]) -> list[list[str]]:
    return [
        list(chunks[i : i + TEXTS_PER_REQUEST]) for i in range(0, len(chunks), TEXTS_PER_REQUEST)
    ]


def throughput(guardrails: Sequence, batches: Sequence[list[str]]) -> tuple[float, float]:
    """MB/s (best of 3 passes) of running every guardrail on every batch, by wall clock and by
    this process's CPU time."""
    size = sum(len(t.encode()) for batch in batches for t in batch)
    if not size:
        return 0.0, 0.0
    best_wall = best_cpu = float("inf")
    loop = asyncio.new_event_loop()
    try:
        for _ in range(3):
            wall, cpu = time.perf_counter(), time.process_time()
            for batch in batches:
                for guardrail in guardrails:
                    loop.run_until_complete(guardrail.scan(batch))
            best_wall = min(best_wall, time.perf_counter() - wall)
            best_cpu = min(best_cpu, time.process_time() - cpu)
    finally:
        loop.close()
    return size / best_wall / 1e6, size / max(best_cpu, 1e-9) / 1e6


def latency(guardrails: Sequence, texts: list[str], runs: int) -> tuple[float, float]:
    """p50 and p99 in microseconds of scanning ``texts`` with every guardrail."""
    loop = asyncio.new_event_loop()
    samples = []
    try:
        for _ in range(runs):
            started = time.perf_counter()
            for guardrail in guardrails:
                loop.run_until_complete(guardrail.scan(texts))
            samples.append(time.perf_counter() - started)
    finally:
        loop.close()
    samples.sort()
    return statistics.median(samples) * 1e6, samples[int(0.99 * (len(samples) - 1))] * 1e6


def chat_request() -> list[str]:
    """~2 KB of chat messages, one with an e-mail address (what the latency bench sends)."""
    rng = random.Random(7)
    texts = [prose(rng, 250) for _ in range(7)]
    question = "Please send the answer to jane.doe@example.com as well. "
    texts.append(question + prose(rng, 200))
    return texts


def _build_all(names: Sequence[str]) -> dict[str, object]:
    _import_builtins()
    guardrails = {}
    for name in names:
        if name not in REGISTRY:
            print(f"{name}: not registered, skipped")
            continue
        spec = GuardrailSpec(f"bench-{name}", name, ("pre_call",), True, {"guardrail": name})
        guardrails[name] = build(spec)
    return guardrails


def _describe(sets: dict[str, list[list[str]]]) -> None:
    for label, batches in sets.items():
        texts = [t for b in batches for t in b]
        size = sum(len(t.encode()) for t in texts)
        print(f"  {label:<10} {size / 1e6:5.2f} MB in {len(texts):>5} texts")
    print()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--eval-dir", type=Path, default=HERE.parent.parent / "shared" / "eval")
    parser.add_argument("--mb", type=float, default=3.0, help="size of corpus (a) in MB")
    parser.add_argument("--runs", type=int, default=2000, help="latency samples")
    parser.add_argument("--only", action="append", choices=NAMES, help="detector(s) to run")
    args = parser.parse_args(argv)
    guardrails = _build_all(args.only or NAMES)
    mix = mix_corpus(args.mb)
    sets = {
        "(a) mix": requests(mix),
        "a: ascii": requests([c for c in mix if c.isascii()]),
        "a: non-asc": requests([c for c in mix if not c.isascii()]),
        "(b) dense": requests(eval_corpus(args.eval_dir)),
    }
    print(f"corpora ({TEXTS_PER_REQUEST} texts of <= {CHUNK} chars per scan call):")
    _describe(sets)
    request = chat_request()
    request_size = sum(len(t.encode()) for t in request)
    print(
        "MB/s by wall clock (by CPU time); target >= 50 MB/s on (a). Latency per scan call "
        f"on a {request_size} B chat request of {len(request)} messages."
    )
    header = " ".join(f"{k:>13}" for k in sets)
    print(f"{'detector':<16} {header}  {'p50 us':>7} {'p99 us':>7}")
    rows: list[tuple[str, list, Callable[[str], bool]]] = [
        (name, [g], lambda _k: True) for name, g in guardrails.items()
    ]
    if len(guardrails) > 1:
        # The combined figure is for the realistic mix only (the eval set is PII-specific).
        rows.append(("combined", list(guardrails.values()), lambda k: k == "(a) mix"))
    for name, group, wanted in rows:
        try:
            speeds = [throughput(group, b) if wanted(k) else None for k, b in sets.items()]
            p50, p99 = latency(group, request, args.runs)
        except Exception as error:  # another detector's bug must not hide the others' numbers
            print(f"{name:<16} failed: {type(error).__name__}: {error}")
            continue
        cells = " ".join(f"{s[0]:>5.1f} ({s[1]:>5.1f})" if s else f"{'-':>13}" for s in speeds)
        print(f"{name:<16} {cells}  {p50:>7.0f} {p99:>7.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
