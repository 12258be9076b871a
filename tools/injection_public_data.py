"""Extra training rows for the prompt-injection model, from public data NOT in ../shared/eval.

    python tools/injection_public_data.py [--mirrors /work/.mirror] [--output PATH]

Why: the dev split is the only labelled data the model saw, so the leave-one-source-out figures
were poor (a benign family held out looked like nothing the model knew). These public sets add
what the dev split lacks: harmless role-play ("I want you to act as a ..."), everyday task
instructions, benign questions in ten languages with non-Latin scripts, and attacks the dev split
has few of (prompt extraction by reformatting, developer-claims).

The rows are NOT committed to this repository (fetched third-party data stays out of commits):
this script reads local git snapshots of the source repositories and writes one JSONL file,
by default ``../shared/train/injection.public.jsonl`` beside the dev data. ``train_injection.py``
adds that file to every training set when it is present (and records its hash in the model).

Every row is de-duplicated against the dev split (same text after whitespace/case folding, or
the same first 80 characters), so no eval row comes back as training data. Forbidden sources
(see the team preamble: tensor-trust, PINT, PIGuard, JailbreakBench, garak, PurpleLlama, BIPIA,
XSTest, presidio-research, ...) are not used, and Giskard's collection was skipped because half
of it is garak's.

Sources (repository, path: licence; what the rows are used as):
- f/awesome-chatgpt-prompts @ 0a30e147, README.md: CC0-1.0; benign role-play prompts (the one
  "DAN" prompt as an attack).
- yizhongw/self-instruct, data/seed_tasks.jsonl and human_eval/user_oriented_instructions.jsonl:
  Apache-2.0; benign task instructions.
- google-research/url-nlp, mgsm/mgsm_{bn,de,en,es,fr,ja,ru,sw,te,th,zh}.tsv: CC-BY-4.0; benign
  questions in 11 languages (a sample per language).
- utkusen/promptmap, rules/{prompt_stealing,distraction,jailbreak}/*.yaml: GPL-3.0 (its rows as
  data, none of its code); attacks: prompt extraction, goal hijack, jailbreak.
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
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MIRRORS = Path("/work/.mirror")
DEFAULT_OUTPUT = ROOT.parent / "shared" / "train" / "injection.public.jsonl"
DEFAULT_EVAL = ROOT.parent / "shared" / "eval" / "injection.dev.jsonl"
MGSM_LANGUAGES = ("bn", "de", "en", "es", "fr", "ja", "ru", "sw", "te", "th", "zh")
MGSM_PER_LANGUAGE = 60  # 250 each would make math questions a third of all benign rows
AWESOME_COMMIT = "0a30e147"  # the last README that held the prompts inline
# awesome-chatgpt-prompts titles that are not harmless role-play: the DAN prompt is an attack;
# the others ask the model to manipulate or to play an escaping AI, so they are dropped.
AWESOME_ATTACK_TITLES = ("unconstrained ai model dan",)
AWESOME_DROPPED_TITLES = ("gaslighter", "escape the box", "lunatic", "drunk person")
PROMPTMAP_CATEGORIES = {
    "prompt_stealing": "prompt_extraction",
    "distraction": "prompt_injection",
    "jailbreak": "jailbreak",
}


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


def _git_ls(repo: Path, commit: str, under: str) -> list[str]:
    out = subprocess.run(
        ["git", "--git-dir", str(repo), "ls-tree", "-r", "--name-only", commit, under],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return out.split()


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
        for line in _git_show(repo, "HEAD", path).splitlines():
            item = json.loads(line)
            text = item["instruction"].strip()
            instances = item.get("instances") or []
            if instances and instances[0].get("input", "").strip():
                text = f"{text}\n\n{instances[0]['input'].strip()}"
            yield PublicRow(text, 0, "public:self-instruct", "benign")


def mgsm(repo: Path) -> Iterator[PublicRow]:
    """Grade-school maths questions, a deterministic sample per language (hash order)."""
    for language in MGSM_LANGUAGES:
        table = _git_show(repo, "HEAD", f"mgsm/mgsm_{language}.tsv")
        questions = [row[0] for row in csv.reader(io.StringIO(table), delimiter="\t") if row]
        questions.sort(key=lambda q: hashlib.sha1(q.encode()).hexdigest())
        for question in questions[:MGSM_PER_LANGUAGE]:
            yield PublicRow(question, 0, f"public:mgsm:{language}", "benign")


def promptmap(repo: Path) -> Iterator[PublicRow]:
    """Attack rules; a numbered prompt ("1. ... 2. ...") is several attacks in one rule."""
    for rule_dir, category in PROMPTMAP_CATEGORIES.items():
        for path in _git_ls(repo, "HEAD", f"rules/{rule_dir}"):
            # the "question" rules are plain questions, attacks only against an off-topic system
            # prompt: as training rows they would teach that a question is an attack
            if not path.endswith(".yaml") or "question" in path:
                continue
            prompt = str(yaml.safe_load(_git_show(repo, "HEAD", path)).get("prompt", "")).strip()
            parts = re.split(r"(?m)^\s*\d+\.\s+", prompt)
            pieces = [p.strip() for p in parts if p.strip()] if len(parts) > 2 else [prompt]
            for piece in pieces:
                if category == "prompt_injection" and len(piece) < 50:
                    continue  # a bare question ("Was ist die Hauptstadt ...?"): see above
                yield PublicRow(piece, 1, f"public:promptmap:{rule_dir}", category)


SOURCES = {
    "f+awesome-chatgpt-prompts": awesome_chatgpt_prompts,
    "yizhongw+self-instruct": self_instruct,
    "google-research+url-nlp": mgsm,
    "utkusen+promptmap": promptmap,
}


def _fold(text: str) -> str:
    return " ".join(text.lower().split())


def build(mirrors: Path, eval_file: Path) -> list[PublicRow]:
    """Rows from every source whose snapshot is present, minus near-copies of dev rows."""
    seen_full, seen_prefix = set(), set()
    if eval_file.exists():
        for line in eval_file.open(encoding="utf-8"):
            folded = _fold(json.loads(line)["text"])
            seen_full.add(folded)
            seen_prefix.add(folded[:80])
    rows = []
    for name, reader in SOURCES.items():
        repo = mirrors / name / "repo"
        if not repo.is_dir():
            print(f"  {name}: no snapshot under {mirrors}, skipped", file=sys.stderr)
            continue
        kept = dropped = 0
        for row in reader(repo):
            folded = _fold(row.text)
            if folded in seen_full or folded[:80] in seen_prefix:
                dropped += 1
                continue
            seen_full.add(folded)
            seen_prefix.add(folded[:80])
            rows.append(row)
            kept += 1
        print(f"  {name}: {kept} rows ({dropped} dropped as copies)", file=sys.stderr)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mirrors", type=Path, default=DEFAULT_MIRRORS)
    parser.add_argument("--eval-file", type=Path, default=DEFAULT_EVAL)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)
    rows = build(args.mirrors, args.eval_file)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    with args.output.open("w", encoding="utf-8") as handle:
        for row in rows:
            item = {"text": row.text, "label": row.label, "source": row.source}
            handle.write(json.dumps(item | {"category": row.category}, ensure_ascii=False) + "\n")
    print(f"wrote {len(rows)} rows to {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
