from extproc.policy.decision import decide, mask_text
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
