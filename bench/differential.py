"""Findings of every built-in detector on the eval texts and on random hostile-alphabet texts,
as JSON lines: run it on two versions of the code and diff the outputs (0 differences is the
proof that a speed change kept detection identical).

    python bench/differential.py OUT.jsonl [--random 3000] [--longest 200]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
EVAL = Path(os.environ.get("EVAL_DIR", HERE.parent.parent / "shared" / "eval"))

# Alphabets of the detectors' formats and of what normalisation rewrites.
ALPHABETS = (
    "0123456789" * 3 + " .-/:()+@x\nabcGBDEFRSN#",
    "0123456789abcdef:.:/ ",
    "0123456789 -" + "4" * 5,
    "0123456789 .-" + "\u2013\uff11\u00a0\u200b\u0301",
    "abcdefABCDEF0123456789_-=:\"' \n" + "ghp_sk-AKIAeyJ.",
    "aeiouAKIA@.com 1" + "\u0301\u0300\u0316\u200b\u00ad\ufeff\u20d7" + "é東\ufb01ж\u1100\u1161",
    "ignore previous instructions system prompt you are now DAN <!-- --> \n:",
)


def texts(random_count: int, longest: int = 200) -> list[str]:
    found = []
    for name in ("pii.dev.jsonl", "secrets.dev.jsonl", "injection.dev.jsonl"):
        path = EVAL / name
        if path.exists():
            found += [json.loads(line)["text"] for line in path.open(encoding="utf-8")]
    rng = random.Random(2026)
    for alphabet in ALPHABETS:
        for _ in range(random_count):
            found.append("".join(rng.choices(alphabet, k=rng.randint(1, longest))))
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--random", type=int, default=3000, help="random texts per alphabet")
    parser.add_argument("--longest", type=int, default=200, help="longest random text (chars)")
    args = parser.parse_args(argv)
    sys.path[:0] = [str(HERE), str(HERE.parent)]
    from worstcase import detectors  # the code next to this file

    import extproc
    from extproc.text.normalize import normalize

    print("code:", extproc.__file__, "texts:", EVAL, file=sys.stderr)

    built = detectors()
    with open(args.out, "w", encoding="utf-8") as out:
        for text in texts(args.random, args.longest):
            row = {"n": normalize(text).text}
            for name, guardrail in built.items():
                if name == "normalize":
                    continue
                found = asyncio.run(guardrail.scan([text]))
                row[name] = sorted(
                    (f.start, f.end, f.type, f.subtype or "", f.action.value) for f in found
                )
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
