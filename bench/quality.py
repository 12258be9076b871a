"""Detection quality of the built-in detectors on the labelled eval data.

    python bench/quality.py [--eval-dir ../shared/eval] [--only pii|secrets|injection] [--show-text]

Each kind lives in a sibling module ``bench/quality_<kind>.py`` with
``evaluate(eval_dir, show_text=False)``, which prints its own tables; a missing module is reported
and skipped. Errors are listed by row number (line of the eval file, from 1), source and type;
the rows' text only with ``--show-text``: a text on screen invites writing a rule for that row,
which is fitting the eval data, not generalising.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path

KINDS = ("pii", "secrets", "injection")
HERE = Path(__file__).resolve().parent
DEFAULT_EVAL_DIR = HERE.parent.parent / "shared" / "eval"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--eval-dir", type=Path, default=DEFAULT_EVAL_DIR)
    parser.add_argument("--only", choices=KINDS, action="append", help="repeatable")
    parser.add_argument(
        "--show-text",
        action="store_true",
        help="also print the text of misjudged rows (a tuning risk: off by default)",
    )
    args = parser.parse_args(argv)
    if not args.eval_dir.is_dir():
        print(f"eval dir not found: {args.eval_dir}", file=sys.stderr)
        return 2
    sys.path[:0] = [str(HERE), str(HERE.parent)]  # bench modules, and the extproc package
    for kind in args.only or KINDS:
        try:
            module = importlib.import_module(f"quality_{kind}")
        except ModuleNotFoundError as error:
            if error.name != f"quality_{kind}":
                raise
            print(f"== {kind}: skipped (bench/quality_{kind}.py not found)\n")
            continue
        print(f"== {kind}")
        started = time.perf_counter()
        module.evaluate(args.eval_dir, show_text=args.show_text)
        print(f"({kind}: {time.perf_counter() - started:.1f} s)\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
