"""``extproc check``: the server's engine on JSON Lines, for evaluation and scripting.

Reads ``{"text": ...}`` per line and writes one result line per input line, in order:
``{"blocked", "masked_text", "findings": [{"guardrail", "type", "start", "end", "action"}]}``
with character offsets into the input text. A line that cannot be read gets ``{"error": ...}``
so output lines stay aligned with input lines.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Sequence
from typing import Any, TextIO

from extproc.backends import Guardrail
from extproc.config import ConfigError
from extproc.exchange.engine import Engine
from extproc.policy.decision import Placeholders, decide
from extproc.policy.modes import as_logs
from extproc.vocabulary import Action, Block, Mask


def select(engine: Engine, names: Sequence[str]) -> tuple[Guardrail, ...]:
    """The named guardrails, or the ones every request gets (default_on) when none are named."""
    unknown = engine.unknown_name(names)
    if unknown:
        raise ConfigError(unknown)
    if names:
        return tuple(engine.by_name[n] for n in names)
    # What a request without tags gets: a tag-based mode without a default does not run.
    return tuple(g for g in engine.default_on if g.spec.untagged_modes)


async def check_text(engine: Engine, guardrails: Sequence[Guardrail], text: str) -> dict[str, Any]:
    findings = []
    for guardrail in guardrails:
        found = await engine.findings([guardrail], [text])
        if set(guardrail.spec.untagged_modes) == {"logging_only"}:
            found = as_logs(found)
        findings += found
    # What would be forwarded if nothing blocked: mask findings applied (with the guardrails'
    # placeholders), others kept.
    to_mask = [(g, f) for g, f in findings if f.action is Action.MASK]
    masked = decide([text], to_mask, Placeholders(engine.placeholders)) if to_mask else None
    return {
        "blocked": isinstance(decide([text], findings), Block),
        "masked_text": masked.texts[0] if isinstance(masked, Mask) else text,
        "findings": [
            {
                "guardrail": name,
                "type": f.type,
                "start": f.start,
                "end": f.end,
                "action": f.action.value,
                **({"subtype": f.subtype} if f.subtype else {}),
            }
            for name, f in sorted(findings, key=lambda item: (item[1].start, item[1].end))
        ],
    }


async def check_lines(
    engine: Engine, guardrails: Sequence[Guardrail], lines: Iterable[str], out: TextIO
) -> int:
    """Write one result per line; return how many lines could not be read."""
    errors = 0
    for number, line in enumerate(lines, 1):
        try:  # a blank line is an error line too: one output line per input line, always
            record = json.loads(line)
            text = record["text"]
            if not isinstance(text, str):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            errors += 1
            result: dict[str, Any] = {"error": f'line {number}: expected {{"text": "..."}}'}
        else:
            result = await check_text(engine, guardrails, text)
        out.write(json.dumps(result, ensure_ascii=False) + "\n")
    return errors


def run(engine: Engine, names: Sequence[str], lines: Iterable[str], out: TextIO) -> int:
    guardrails = select(engine, names)
    return asyncio.run(check_lines(engine, guardrails, lines, out))
