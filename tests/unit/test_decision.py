from extproc.policy.decision import Placeholders, decide, mask_text
from extproc.vocabulary import Action, Allow, Block, Finding, Mask


def f(start: int, end: int, kind: str = "EMAIL", action: Action = Action.MASK, index: int = 0):
    return Finding(index, start, end, kind, action)


def test_mask_replaces_each_finding() -> None:
    assert mask_text("a x@y.io b 555", [f(2, 8), f(11, 14, "PHONE")]) == "a [EMAIL] b [PHONE]"


def test_overlapping_findings_merge_into_one_mask() -> None:
    text = "0123456789"
    assert mask_text(text, [f(2, 6, "A"), f(4, 8, "B")]) == "01[A]89"
    assert mask_text(text, [f(4, 8, "B"), f(2, 6, "A")]) == "01[A]89"
    assert mask_text(text, [f(2, 4, "A"), f(2, 8, "B")]) == "01[B]89"  # longest wins a tie
    assert mask_text(text, [f(2, 8, "A"), f(3, 4, "B")]) == "01[A]89"  # contained


def test_adjacent_findings_stay_separate() -> None:
    assert mask_text("aabb", [f(0, 2, "A"), f(2, 4, "B")]) == "[A][B]"


def test_block_wins_over_mask_and_names_the_guardrail() -> None:
    findings = [("pii", f(0, 3)), ("secrets", f(4, 8, "SECRET", Action.BLOCK))]
    decision = decide(["abc defg"], findings)
    assert decision == Block("secrets", ("SECRET",))


def test_masks_from_several_guardrails_merge_per_text() -> None:
    findings = [("g1", f(0, 3, index=1)), ("g2", f(2, 5, "PHONE", index=1)), ("g1", f(0, 1))]
    decision = decide(["zz", "abcdefg"], findings)
    assert decision == Mask({0: "[EMAIL]z", 1: "[EMAIL]fg"})


def test_log_only_findings_allow() -> None:
    assert isinstance(decide(["abc"], [("g", f(0, 1, action=Action.LOG))]), Allow)


class _NoWalk(dict):
    """A ``numbers`` map that refuses to be walked: numbering one more value must not look at
    every value numbered before (that made masking n distinct values O(n^2))."""

    def __iter__(self):
        raise AssertionError("numbering walked the values numbered before")


def test_numbered_placeholders_count_per_type_without_walking_earlier_values() -> None:
    placeholders = Placeholders({"g": "<{type}_{n}>"}, numbers=_NoWalk())
    texts = ["a@b.io x@y.io a@b.io 10.0.0.1 x@y.io 10.0.0.2"]
    spans = [
        (0, 6, "EMAIL"),
        (7, 13, "EMAIL"),
        (14, 20, "EMAIL"),
        (21, 29, "IP_ADDRESS"),
        (30, 36, "EMAIL"),
        (37, 45, "IP_ADDRESS"),
    ]
    findings = [("g", Finding(0, s, e, t, Action.MASK)) for s, e, t in spans]
    decision = decide(texts, findings, placeholders)
    assert isinstance(decision, Mask)
    assert decision.texts[0] == (
        "<EMAIL_1> <EMAIL_2> <EMAIL_1> <IP_ADDRESS_1> <EMAIL_2> <IP_ADDRESS_2>"
    )
    assert placeholders.originals["<EMAIL_2>"] == "x@y.io"
