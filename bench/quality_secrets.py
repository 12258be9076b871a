"""Row-level precision/recall/F1 of the ``secrets`` guardrail on the labelled secrets eval set.

A row is predicted positive when the guardrail reports any SECRET finding in its text. Figures are
printed per source family (the tool and rule file a row comes from), per tool, and overall.
Usage: ``python -m bench.quality_secrets [EVAL_DIR]`` (default /work/shared/eval).
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections import defaultdict
from pathlib import Path

from extproc.backends import build
from extproc.config.loader import GuardrailSpec

DEFAULT_EVAL_DIR = Path("/work/shared/eval")


def _family(source: str) -> str:
    """``gitleaks/gitleaks:.../rules/slack.go:SlackBotToken:tps`` -> ``gitleaks:slack``."""
    tool = source.split("/", 1)[0]
    path = source.split(":", 1)[1] if ":" in source else source
    stem = path.split(":", 1)[0].rsplit("/", 1)[-1].split(".", 1)[0].removesuffix("_test")
    return f"{tool}:{stem}"


# Where each family of rules comes from (the rules live in extproc/backends/secret_rules.py and
# secret_values.py). Rows of this eval are gitleaks' and detect-secrets' own test cases, so a
# per-source row here says how a rule written from the vendor's format fares on another tool's
# examples of the same vendor: that is the generalisation figure for the rules.
PROVENANCE = (
    (
        "vendor-prefixed tokens (AWS, GCP, Azure, GitHub, GitLab, Slack, Stripe, OpenAI, ...)",
        "each vendor's published token format: prefix, length, alphabet (e.g. GitHub's token "
        "format announcement, AWS IAM unique-ID prefixes, Slack token types, Stripe API keys)",
    ),
    ("PRIVATE_KEY", "RFC 7468 PEM armour labels; OpenSSH PROTOCOL.key"),
    ("JWT", "RFC 7519 / RFC 7515 compact serialisation (base64url header.payload.signature)"),
    (
        "URL_CREDENTIALS, CURL_CREDENTIALS",
        "RFC 3986 userinfo; curl's -u/-U/--user/--proxy-user/--oauth2-bearer options (man curl)",
    ),
    (
        "CLI_PASSWORD",
        "the docker login reference (-p/--password; podman, helm registry login alike), "
        "man sshpass (-p), mysql(1) (-p<password> attached)",
    ),
    (
        "keyword assignments (password = ...)",
        "no vendor: generic key=value / YAML / JSON / logfmt syntax; RFC 9110 s.11 auth schemes,"
        " RFC 7617 Basic; RFC 3986 / form-urlencoded pairs; POSIX ${VAR:-default}",
    ),
    (
        "near-miss negatives",
        "RFC 9562 time-based UUIDs; MD5/SHA-1/SHA-2 digest lengths; sample/dummy keys",
    ),
    ("HIGH_ENTROPY_STRING", "no vendor: Shannon-entropy threshold over base64/hex runs"),
)


def print_provenance() -> None:
    print("\nrule provenance (per family):")
    for family, source in PROVENANCE:
        print(f"  {family}: {source}")


def _scores(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def _line(name: str, counts: dict[str, int]) -> str:
    p, r, f = _scores(counts["tp"], counts["fp"], counts["fn"])
    n = sum(counts.values())
    tp, fp, fn = counts["tp"], counts["fp"], counts["fn"]
    return f"{name:<40} {n:>4} {tp:>4} {fp:>4} {fn:>4}  {p:.3f} {r:.3f} {f:.3f}"


def evaluate(eval_dir: Path, backend: str = "secrets", show_text: bool = False) -> None:
    """``backend``: ``secrets``, or ``hide_secrets`` (LiteLLM's name: any value assigned to a
    credential-named key counts). Errors are listed by row number and type; their text only
    with ``show_text`` (see bench/quality.py)."""
    spec = GuardrailSpec("secrets-eval", backend, ("pre_call",), True, {"guardrail": backend})
    guardrail = build(spec)
    rows = [json.loads(line) for line in (eval_dir / "secrets.dev.jsonl").open()]
    by_family: dict[str, dict[str, int]] = defaultdict(lambda: dict(tp=0, fp=0, fn=0, tn=0))
    by_tool: dict[str, dict[str, int]] = defaultdict(lambda: dict(tp=0, fp=0, fn=0, tn=0))
    errors: list[tuple[str, str, int, str]] = []
    for number, row in enumerate(rows, 1):
        findings = asyncio.run(guardrail.scan([row["text"]]))
        predicted = any(f.type == "SECRET" for f in findings)
        outcome = {(1, True): "tp", (0, True): "fp", (1, False): "fn", (0, False): "tn"}[
            (row["label"], predicted)
        ]
        family = _family(row["source"])
        by_family[family][outcome] += 1
        by_tool[family.split(":")[0]][outcome] += 1
        if outcome in ("fp", "fn"):
            shown = repr(row["text"][:90]) if show_text else f"row {number} type {row['type']}"
            errors.append((outcome, family, number, shown))
    header = f"{'source':<40} {'rows':>4} {'tp':>4} {'fp':>4} {'fn':>4}  prec  rec   f1"
    print(header)
    for family in sorted(by_family):
        print(_line(family, by_family[family]))
    print("-" * len(header))
    total = dict(tp=0, fp=0, fn=0, tn=0)
    for tool in sorted(by_tool):
        print(_line(tool, by_tool[tool]))
        for key in total:
            total[key] += by_tool[tool][key]
    print(_line("OVERALL", total))
    print_provenance()
    print("\nremaining errors:")
    for outcome, family, _, shown in sorted(errors):
        print(f"  {outcome} {family:<32} {shown}")


if __name__ == "__main__":
    evaluate(
        Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_EVAL_DIR,
        sys.argv[2] if len(sys.argv) > 2 else "secrets",
    )
