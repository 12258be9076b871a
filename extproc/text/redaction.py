"""Where a redacted text differs from its original: the shared first step of turning a
service's rewritten text into mask spans.

Services that redact (LLM Guard, Aim, the Generic Guardrail API) answer with the whole text
rewritten, usually changed in one or a few places. Cutting the common prefix and suffix first
leaves only the changed middle for each backend's own alignment. The lengths are found by
bisection on slice comparisons: O(log n) steps, each compare done in C, instead of a Python
loop over every character of a long text.
"""

from __future__ import annotations


def common_prefix(a: str, b: str) -> int:
    """Length of the longest common prefix of ``a`` and ``b``."""
    if not a or not b or a[0] != b[0]:
        return 0  # the usual case for a span against its label: no bisection at all
    low, high = 1, min(len(a), len(b))
    while low < high:  # a[:low] == b[:low]; they differ somewhere before high + 1
        middle = (low + high + 1) // 2
        if a[low:middle] == b[low:middle]:
            low = middle
        else:
            high = middle - 1
    return low


def common_suffix(a: str, b: str) -> int:
    """Length of the longest common suffix of ``a`` and ``b``."""
    return _common_suffix_upto(a, b, min(len(a), len(b)))


def common_ends(a: str, b: str) -> tuple[int, int]:
    """(prefix, suffix) lengths that do not overlap in either text, so that
    ``a[prefix:len(a) - suffix]`` and ``b[prefix:len(b) - suffix]`` are the changed middles
    (both empty when ``a == b``)."""
    prefix = common_prefix(a, b)
    return prefix, _common_suffix_upto(a, b, min(len(a), len(b)) - prefix)


def _common_suffix_upto(a: str, b: str, most: int) -> int:
    """Common suffix length, at most ``most`` characters (no slice copies of the inputs)."""
    if most <= 0 or a[-1] != b[-1]:
        return 0
    size_a, size_b = len(a), len(b)
    low, high = 1, most
    while low < high:  # the last ``low`` characters agree; they differ before high + 1
        middle = (low + high + 1) // 2
        if a[size_a - middle : size_a - low] == b[size_b - middle : size_b - low]:
            low = middle
        else:
            high = middle - 1
    return low
