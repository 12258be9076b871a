"""Train the built-in prompt-injection model and write extproc/backends/injection_model.json.

    /tmp/v/bin/python tools/train_injection.py [--eval-dir DIR] [--folds 5] [--no-cv] [--loso]

Pure Python (no numpy), deterministic: the same data gives byte-identical weights. Features are
exactly the runtime's (extproc.backends.prompt_injection: hand-written RE2 patterns + a word
uni/bi-gram vocabulary found with one RE2 Set), so training and serving cannot drift apart.

Steps, all inside the training rows only (so cross-validation never sees its test fold):
1. rows weighted so every (label, category) counts about equally (the PINT score is a category
   macro average; without weights the 484 WildGuard rows would drown 13 extraction prompts);
2. candidate terms: uni/bi-grams in >= MIN_DF rows, ranked by weighted log-odds, top CANDIDATES;
3. L2 logistic regression (Adagrad SGD, fixed seed) over binary features; keep the KEEP_TERMS
   terms with the largest |weight|, retrain on those. The runtime then scans fewer terms.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import json
import math
import random
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import re2

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from extproc.backends import prompt_injection as pi  # noqa: E402

DEFAULT_EVAL_DIR = Path("/work/shared/eval")
DATA_FILE = "injection.dev.jsonl"
SEED = 20240611
MIN_DF = 3
CANDIDATES = 6000
KEEP_TERMS = 2500
EPOCHS = 15
LEARNING_RATE = 0.2
L2 = 1e-4  # hand-written patterns
L2_TERMS = 3e-3  # vocabulary terms: stronger, they are where dataset-specific topics leak in
CATEGORY_WEIGHT_POWER = 0.7  # 1 = every (label, category) weighs the same; 0 = every row does
DECIMALS = 4

# Everyday requests written for this project (not from the dev set, and disjoint from the
# everyday-traffic benchmark bench/data/everyday_prompts.jsonl, which is never trained on): the dev
# benign rows barely cover coding and office work, the most common real traffic. Added to every
# training set only, never scored.
EXTRA_BENIGN_FILE = ROOT / "tools" / "data" / "extra_benign.jsonl"
# Attack rows with no trigger pattern (mostly CyberSecEval questions that are attacks only under
# a hidden system prompt) can only be learned from topic words, which the runtime ignores for
# "attack"; at full weight they would just drag the bias (featureless text) towards "attack".
UNTRIGGERED_ATTACK_WEIGHT = 0.6

# word, then the whitespace after it, then any punctuation before the next word: a bigram is
# taken only when two words are separated by whitespace alone (what term_regex matches).
_TOKEN = re2.compile(r"([\pL\pN_]+)(\s*)([^\pL\pN_\s]*)")


@dataclass(frozen=True, slots=True)
class Row:
    text: str
    label: int
    source: str
    category: str


@dataclass(slots=True)
class Hyper:
    candidates: int = CANDIDATES
    keep_terms: int = KEEP_TERMS
    epochs: int = EPOCHS
    learning_rate: float = LEARNING_RATE
    l2: float = L2
    l2_terms: float = L2_TERMS
    category_weight_power: float = CATEGORY_WEIGHT_POWER
    seed: int = SEED
    extra_benign: bool = True
    untriggered_attack_weight: float = UNTRIGGERED_ATTACK_WEIGHT


@dataclass(slots=True)
class Report:
    """Row-level outcomes and the figures computed from them."""

    rows: list[Row]
    predicted: list[bool]
    figures: dict = field(default_factory=dict)


def load_rows(eval_dir: Path) -> list[Row]:
    rows = []
    with (eval_dir / DATA_FILE).open(encoding="utf-8") as handle:
        for line in handle:
            item = json.loads(line)
            rows.append(Row(item["text"], int(item["label"]), item["source"], item["category"]))
    return rows


# ---------------------------------------------------------------------------------------------
# candidate vocabulary


_TERMS_CACHE: dict[str, frozenset[str]] = {}  # tokenising is the slow part: once per text


def row_terms(text: str) -> frozenset[str]:
    """Uni- and bigrams of a text, as term_regex would match them (lower-cased)."""
    cached = _TERMS_CACHE.get(text)
    if cached is not None:
        return cached
    terms: set[str] = set()
    previous = None
    for word, space, punct in _TOKEN.findall(text.lower()):
        keep = len(word) > 1 and not word.isdigit()
        if keep:
            terms.add(word)
        if previous is not None and keep:
            terms.add(f"{previous} {word}")
        previous = word if (keep and space and not punct) else None
    result = frozenset(terms)
    _TERMS_CACHE[text] = result
    return result


def row_weights(rows: Sequence[Row], power: float) -> list[float]:
    """Weight ~ 1 / size(label, category)^power, then scaled to a mean of 1."""
    sizes = collections.Counter((r.label, r.category) for r in rows)
    raw = [1.0 / sizes[(r.label, r.category)] ** power for r in rows]
    mean = sum(raw) / len(raw)
    return [w / mean for w in raw]


def select_candidates(rows: Sequence[Row], weights: Sequence[float], limit: int) -> list[str]:
    """Terms in >= MIN_DF rows, ranked by |weighted log-odds| * log(df), best first."""
    df: collections.Counter[str] = collections.Counter()
    mass = [collections.Counter(), collections.Counter()]  # weighted df per label
    totals = [0.0, 0.0]
    for row, weight in zip(rows, weights, strict=True):
        terms = row_terms(row.text)
        df.update(terms)
        totals[row.label] += weight
        counter = mass[row.label]
        for term in terms:
            counter[term] += weight
    smoothing = 0.5
    ranked = []
    for term, count in df.items():
        if count < MIN_DF:
            continue
        attack = (mass[1][term] + smoothing) / (totals[1] + 2 * smoothing)
        benign = (mass[0][term] + smoothing) / (totals[0] + 2 * smoothing)
        ranked.append((-abs(math.log(attack / benign)) * math.log(count), term))
    ranked.sort()
    return [term for _, term in ranked[:limit]]


# ---------------------------------------------------------------------------------------------
# logistic regression


def fit_logistic(
    samples: Sequence[Sequence[int]],
    labels: Sequence[int],
    weights: Sequence[float],
    n_features: int,
    first_term: int,
    hyper: Hyper,
) -> tuple[float, list[float]]:
    """L2-regularised logistic regression by Adagrad SGD, with the runtime's feature values.

    Pattern features are 1 when present; term features are 1/sqrt(max(terms present, 8)),
    exactly as InjectionModel.logit computes them.
    """
    rng = random.Random(hyper.seed)
    coef = [0.0] * n_features
    squares = [1e-8] * n_features
    bias, bias_square = 0.0, 1e-8
    values = [_feature_values(indices, first_term) for indices in samples]
    order = list(range(len(samples)))
    rate = hyper.learning_rate
    for _ in range(hyper.epochs):
        rng.shuffle(order)
        for i in order:
            features = values[i]
            z = bias + sum(coef[j] * x for j, x in features)
            gradient = (pi._sigmoid(z) - labels[i]) * weights[i]
            bias_square += gradient * gradient
            bias -= rate * gradient / math.sqrt(bias_square)
            for j, x in features:
                g = gradient * x + (hyper.l2 if j < first_term else hyper.l2_terms) * coef[j]
                squares[j] += g * g
                coef[j] -= rate * g / math.sqrt(squares[j])
    return bias, coef


def _gate(
    samples: Sequence[Sequence[int]],
    labels: Sequence[int],
    weights: Sequence[float],
    triggers: set[int],
    first_term: int,
    hyper: Hyper,
) -> tuple[list[list[int]], list[float]]:
    """Samples as the gated runtime sees them: no term features without a trigger pattern."""
    gated, gated_weights = [], []
    for indices, label, weight in zip(samples, labels, weights, strict=True):
        if any(j in triggers for j in indices):
            gated.append(list(indices))
            gated_weights.append(weight)
        else:
            gated.append([j for j in indices if j < first_term])
            gated_weights.append(weight * (hyper.untriggered_attack_weight if label else 1.0))
    return gated, gated_weights


def _feature_values(indices: Sequence[int], first_term: int) -> list[tuple[int, float]]:
    n_terms = sum(1 for j in indices if j >= first_term)
    term_value = 1.0 / math.sqrt(max(n_terms, pi.MIN_TERM_NORM))
    return [(j, 1.0 if j < first_term else term_value) for j in indices]


def extract(model: pi.InjectionModel, rows: Sequence[Row]) -> list[list[int]]:
    """Features of each row; code_context only switches others off, so it learns no weight."""
    names = [p.name for p in pi.PATTERNS]
    silent = names.index(pi.CODE_CONTEXT) if pi.CODE_CONTEXT in names else -1
    return [sorted(set(model.present(r.text.lower())) - {silent}) for r in rows]


def load_extra_benign(path: Path = EXTRA_BENIGN_FILE) -> list[Row]:
    with path.open(encoding="utf-8") as handle:
        return [Row(json.loads(line)["text"], 0, "extra:handwritten", "benign") for line in handle]


def train(rows: Sequence[Row], hyper: Hyper | None = None) -> dict:
    """Fit on ``rows``; returns the model dict that injection_model.json holds.

    Two stages: an ungated fit picks the vocabulary and tells which patterns are triggers; the
    gated refits then see term features only in triggered rows, as the runtime does.
    """
    hyper = hyper or Hyper()
    if hyper.extra_benign:
        rows = [*rows, *load_extra_benign()]
    weights = row_weights(rows, hyper.category_weight_power)
    labels = [r.label for r in rows]
    terms = select_candidates(rows, weights, hyper.candidates)
    for _ in range(2):  # fit on the candidates, keep the strongest terms, refit on those
        zero_terms = dict.fromkeys(terms, 0.0)
        probe = pi.InjectionModel(0.0, {}, zero_terms)
        samples = extract(probe, rows)
        bias, coef = fit_logistic(
            samples, labels, weights, len(probe.weights), probe.first_term, hyper
        )
        n_patterns = len(pi.PATTERNS)
        term_coef = coef[n_patterns:]
        strongest = sorted(range(len(terms)), key=lambda k: (-abs(term_coef[k]), terms[k]))
        kept = sorted(terms[k] for k in strongest[: hyper.keep_terms] if term_coef[k] != 0.0)
        if len(kept) == len(terms):
            break
        terms = kept
    n_patterns = len(pi.PATTERNS)
    samples = extract(pi.InjectionModel(0.0, {}, dict.fromkeys(terms, 0.0)), rows)
    coef = coef[:n_patterns] + [0.0] * len(terms)
    for _ in range(2):  # gated refits; the trigger set follows the pattern weights
        triggers = {j for j in range(n_patterns) if coef[j] >= pi.TRIGGER_WEIGHT}
        gated, gated_weights = _gate(samples, labels, weights, triggers, n_patterns, hyper)
        bias, coef = fit_logistic(gated, labels, gated_weights, len(coef), n_patterns, hyper)
    term_coef = coef[n_patterns:]
    model = {
        "format": 1,
        "fingerprint": pi.feature_fingerprint(),
        "bias": round(bias, DECIMALS),
        "pattern_weights": {p.name: round(coef[k], DECIMALS) for k, p in enumerate(pi.PATTERNS)},
        "terms": {t: round(term_coef[k], DECIMALS) for k, t in enumerate(terms)},
    }
    model["checksum"] = pi.payload_checksum(model)
    return model


# ---------------------------------------------------------------------------------------------
# evaluation


def predict(model: pi.InjectionModel, rows: Sequence[Row], threshold: float = 0.5) -> list[bool]:
    cut = pi._logit(threshold)
    return [model.score(r.text)[0] >= cut for r in rows]


def figures(rows: Sequence[Row], predicted: Sequence[bool]) -> dict:
    """PINT category-macro score, precision/recall, accuracy per category and per source."""
    by_category: dict[tuple[int, str], list[bool]] = collections.defaultdict(list)
    by_source: dict[str, list[bool]] = collections.defaultdict(list)
    tp = fp = fn = 0
    for row, flagged in zip(rows, predicted, strict=True):
        correct = flagged == bool(row.label)
        by_category[(row.label, row.category)].append(correct)
        by_source[row.source].append(correct)
        tp += flagged and row.label == 1
        fp += flagged and row.label == 0
        fn += (not flagged) and row.label == 1
    category_accuracy = {key: _mean(v) for key, v in by_category.items()}
    per_label = [
        _mean([acc for (label, _), acc in category_accuracy.items() if label == wanted])
        for wanted in (0, 1)
    ]
    return {
        "score": 100 * _mean([x for x in per_label if not math.isnan(x)]),
        "benign_macro": 100 * per_label[0],
        "attack_macro": 100 * per_label[1],
        "precision": tp / (tp + fp) if tp + fp else float("nan"),
        "recall": tp / (tp + fn) if tp + fn else float("nan"),
        "categories": {
            f"{c} ({'attack' if lab else 'benign'})": (100 * a, len(by_category[(lab, c)]))
            for (lab, c), a in sorted(category_accuracy.items())
        },
        "sources": {s: (100 * _mean(v), len(v)) for s, v in sorted(by_source.items())},
        "notinject": 100
        * _mean([ok for r, ok in _pairs(rows, predicted) if r.source.startswith("NotInject")]),
        "xstest": 100
        * _mean([ok for r, ok in _pairs(rows, predicted) if r.source.startswith("XSTest")]),
    }


def _pairs(rows: Sequence[Row], predicted: Sequence[bool]) -> Iterable[tuple[Row, bool]]:
    return ((r, p == bool(r.label)) for r, p in zip(rows, predicted, strict=True))


def _mean(values: Sequence[float | bool]) -> float:
    return sum(values) / len(values) if values else float("nan")


def stratified_folds(rows: Sequence[Row], k: int) -> list[int]:
    """Fold number per row: round-robin within each (label, category), in text-hash order."""
    strata: dict[tuple[int, str], list[int]] = collections.defaultdict(list)
    for i, row in enumerate(rows):
        strata[(row.label, row.category)].append(i)
    fold = [0] * len(rows)
    for key in sorted(strata):
        members = sorted(strata[key], key=lambda i: hashlib.sha1(rows[i].text.encode()).hexdigest())
        for position, i in enumerate(members):
            fold[i] = position % k
    return fold


def source_family(source: str) -> str:
    """Group for leave-one-source-out: JailbreakBench split by attack method, others by dataset."""
    if source.startswith("JailbreakBench"):
        return "JBB:" + source.split(":", 1)[1].split("/")[0]
    return source.split(":")[0]


def held_out_predictions(
    rows: Sequence[Row],
    groups: Sequence[object],
    hyper: Hyper,
    threshold: float = 0.5,
    progress: Callable[[str], None] | None = None,
) -> list[float]:
    """Logit of every row from a model trained without the row's group."""
    logits = [0.0] * len(rows)
    for group in sorted(set(groups), key=str):
        train_rows = [r for r, g in zip(rows, groups, strict=True) if g != group]
        test_index = [i for i, g in enumerate(groups) if g == group]
        model = pi.InjectionModel.from_dict(train(train_rows, hyper))
        for i in test_index:
            logits[i] = model.score(rows[i].text)[0]
        if progress:
            progress(f"  trained without {group}: {len(train_rows)} rows")
    return logits


def cross_validate(rows: Sequence[Row], k: int = 5, hyper: Hyper | None = None) -> list[float]:
    return held_out_predictions(rows, stratified_folds(rows, k), hyper or Hyper())


def print_figures(title: str, result: dict, detail: bool = True) -> None:
    print(f"\n## {title}")
    print(
        f"score {result['score']:.1f} (benign macro {result['benign_macro']:.1f}, attack macro "
        f"{result['attack_macro']:.1f}) | precision {result['precision']:.3f} recall "
        f"{result['recall']:.3f} | NotInject {result['notinject']:.1f} "
        f"| XSTest {result['xstest']:.1f}"
    )
    if not detail:
        return
    print("| category | accuracy | rows |\n|---|---|---|")
    for name, (acc, n) in result["categories"].items():
        print(f"| {name} | {acc:.1f} | {n} |")
    print("| source | accuracy | rows |\n|---|---|---|")
    for name, (acc, n) in result["sources"].items():
        print(f"| {name} | {acc:.1f} | {n} |")


def write_model(model: dict, path: Path) -> None:
    path.write_text(json.dumps(model, indent=0, ensure_ascii=False, sort_keys=False) + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--eval-dir", type=Path, default=DEFAULT_EVAL_DIR)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--no-cv", action="store_true", help="only fit and write the model")
    parser.add_argument("--loso", action="store_true", help="also leave-one-source-out figures")
    parser.add_argument("--output", type=Path, default=pi.MODEL_PATH)
    args = parser.parse_args(argv)
    rows = load_rows(args.eval_dir)
    hyper = Hyper()
    if not args.no_cv:
        started = time.perf_counter()
        logits = cross_validate(rows, args.folds, hyper)
        for name, threshold in pi.SENSITIVITY_THRESHOLDS.items():
            cut = pi._logit(threshold)
            result = figures(rows, [z >= cut for z in logits])
            print_figures(
                f"{args.folds}-fold stratified CV, sensitivity {name} (threshold {threshold})",
                result,
                detail=name == "medium",
            )
        print(f"(CV took {time.perf_counter() - started:.1f} s)")
    if args.loso:
        print_loso(rows, hyper)
    model = train(rows, hyper)
    write_model(model, args.output)
    print(f"\nwrote {args.output}: {len(model['terms'])} terms, checksum {model['checksum']}")
    return 0


def print_loso(rows: Sequence[Row], hyper: Hyper) -> None:
    groups = [source_family(r.source) for r in rows]
    logits = held_out_predictions(rows, groups, hyper)
    print("\n## leave-one-source-out (each family scored by a model that never saw it)")
    print("| held-out family | rows | attack acc | benign acc |\n|---|---|---|---|")
    for family in sorted(set(groups)):
        members = [
            (r, z >= 0.0) for r, g, z in zip(rows, groups, logits, strict=True) if g == family
        ]
        attack = [p for r, p in members if r.label == 1]
        benign = [not p for r, p in members if r.label == 0]
        fmt = lambda v: f"{100 * _mean(v):.1f} ({len(v)})" if v else "-"  # noqa: E731
        print(f"| {family} | {len(members)} | {fmt(attack)} | {fmt(benign)} |")


if __name__ == "__main__":
    raise SystemExit(main())
