"""PII detection quality: span-level precision / recall / F1, scored as eval/README.md says.

A predicted span matches a gold span when the types agree and the spans overlap. Rows with
``annotation_scope: entity_under_test_only`` are scored for that entity's type only (other
findings in them are neither right nor wrong). The guardrail runs through the registry
(``build(GuardrailSpec(...)).scan``), so this measures the code the server runs.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from extproc.backends import build
from extproc.config import GuardrailSpec

STRUCTURED = ("EMAIL", "PHONE", "CREDIT_CARD", "SSN", "IBAN", "IP_ADDRESS")
# entity_under_test names (Presidio's) whose norm_type differs from the name.
UNDER_TEST_TYPES = {
    "EMAIL_ADDRESS": "EMAIL",
    "PHONE_NUMBER": "PHONE",
    "PH_MOBILE_NUMBER": "PHONE",
    "TR_PHONE_NUMBER": "PHONE",
    "US_SSN": "SSN",
    "IBAN_CODE": "IBAN",
}


# Where each structured rule comes from (rules in extproc/backends/pii.py). The per-source table
# below scores them on presidio-research's synthetic corpus and on Presidio's recogniser test
# vectors, neither of which the rules were written from.
PROVENANCE = {
    "EMAIL": "RFC 5322 addr-spec (dot-atom local part), RFC 1035 host names",
    "PHONE": "ITU-T E.164 (<= 15 digits), national numbering-plan layouts, TRAI (+91 mobiles)",
    "CREDIT_CARD": "ISO/IEC 7812 issuer prefixes, lengths and printed layouts, Luhn check digit",
    "SSN": "US SSA number structure (area 001-899 but 666, group 01-99, serial 0001-9999)",
    "IBAN": "ISO 13616 (SWIFT registry lengths, ISO 7064 mod-97-10; any consistent case)",
    "IP_ADDRESS": "RFC 791 dotted quad; RFC 4291 / RFC 5952 IPv6 text forms, RFC 4007 zones",
}


@dataclass
class Counts:
    gold: int = 0
    gold_found: int = 0  # gold spans overlapped by a prediction of the same type (recall)
    predicted: int = 0
    predicted_right: int = 0  # predictions overlapping a gold span of the same type (precision)

    def add(self, other: Counts) -> None:
        self.gold += other.gold
        self.gold_found += other.gold_found
        self.predicted += other.predicted
        self.predicted_right += other.predicted_right

    def scores(self) -> tuple[float, float, float]:
        precision = self.predicted_right / self.predicted if self.predicted else 1.0
        recall = self.gold_found / self.gold if self.gold else 1.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        return precision, recall, f1


def _overlaps(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def score_row(
    gold: list[tuple[str, int, int]], predicted: list[tuple[str, int, int]], scope: set[str] | None
) -> dict[str, Counts]:
    """Counts per type for one row; ``scope`` limits the types scored (None: all)."""
    counts: dict[str, Counts] = defaultdict(Counts)
    for kind, start, end in gold:
        if scope is None or kind in scope:
            counts[kind].gold += 1
            hit = any(k == kind and _overlaps((start, end), (s, e)) for k, s, e in predicted)
            counts[kind].gold_found += hit
    for kind, start, end in predicted:
        if scope is None or kind in scope:
            counts[kind].predicted += 1
            hit = any(k == kind and _overlaps((start, end), (s, e)) for k, s, e in gold)
            counts[kind].predicted_right += hit
    return counts


def short_source(source: str) -> str:
    if "synth_dataset" in source:
        return "presidio-research synth_dataset_v2"
    test = source.split(":")[-2].rsplit("/", 1)[-1] if source.count(":") >= 2 else source
    return f"presidio tests: {test.removesuffix('.py').removeprefix('test_')}"


def _row(label: str, counts: Counts) -> str:
    p, r, f = counts.scores()
    return f"  {label:<44} {counts.gold:>5} {counts.predicted:>5} {p:>6.3f} {r:>6.3f} {f:>6.3f}"


def _header(title: str) -> str:
    return f"  {title:<44} {'gold':>5} {'pred':>5} {'prec':>6} {'rec':>6} {'F1':>6}"


def evaluate(eval_dir: Path, show_text: bool = False) -> None:
    rows = [json.loads(line) for line in (eval_dir / "pii.dev.jsonl").open()]
    spec = GuardrailSpec("bench-pii", "pii", ("pre_call",), True, {"guardrail": "pii"})
    guardrail = build(spec)
    by_type: dict[str, Counts] = defaultdict(Counts)
    by_source: dict[str, Counts] = defaultdict(Counts)  # structured types only
    errors: list[str] = []
    started = time.perf_counter()
    for number, row in enumerate(rows, 1):
        findings = asyncio.run(guardrail.scan([row["text"]]))
        predicted = [(f.type, f.start, f.end) for f in findings]
        gold = [(s["norm_type"], s["start"], s["end"]) for s in row["spans"]]
        scope = None
        if row["annotation_scope"] == "entity_under_test_only":
            name = row["entity_under_test"]
            scope = {UNDER_TEST_TYPES.get(name, name)}
        for kind, counts in score_row(gold, predicted, scope).items():
            by_type[kind].add(counts)
            if kind in STRUCTURED:
                by_source[short_source(row["source"])].add(counts)
                if counts.gold_found < counts.gold or counts.predicted_right < counts.predicted:
                    errors.append(_describe(number, row, kind, gold, predicted, show_text))
    elapsed = time.perf_counter() - started
    _print_tables(by_type, by_source)
    size = sum(len(r["text"].encode()) for r in rows)
    print(f"  {len(rows)} rows, {size / 1e3:.0f} KB scanned in {elapsed * 1e3:.0f} ms")
    print(f"\n  structured errors ({len(errors)} rows; first 80):")
    for line in errors[:80]:
        print(f"    {line}")


def _print_tables(by_type: dict[str, Counts], by_source: dict[str, Counts]) -> None:
    print(_header("per norm_type (structured)") + "  provenance")
    structured = Counts()
    for kind in STRUCTURED:
        print(_row(kind, by_type[kind]) + f"  {PROVENANCE[kind]}")
        structured.add(by_type[kind])
    print(_row("STRUCTURED (aggregate)", structured))
    others = sorted(k for k, c in by_type.items() if k not in STRUCTURED and c.predicted)
    for kind in others:
        print(_row(f"{kind} (custom/other)", by_type[kind]))
    print()
    print(_header("per source (structured types)"))
    for source in sorted(by_source, key=lambda s: (-by_source[s].gold, s)):
        counts = by_source[source]
        if counts.gold or counts.predicted:
            print(_row(source[:44], counts))
    print()


def _describe(
    number: int, row: dict, kind: str, gold: list, predicted: list, show_text: bool
) -> str:
    """One misjudged row: its line number, source and span counts; values and text only with
    ``show_text`` (see bench/quality.py)."""
    text = row["text"]
    g = [(s, e) for k, s, e in gold if k == kind]
    p = [(s, e) for k, s, e in predicted if k == kind]
    line = (
        f"row {number} ({short_source(row['source'])}) {kind}: gold {len(g)}, predicted "
        f"{len(p)}, missed {sum(span not in p for span in g)}"
    )
    if show_text:
        line += f" gold={[text[s:e] for s, e in g]} pred={[text[s:e] for s, e in p]}"
        line += f" text={text[:90]!r}"
    return line
