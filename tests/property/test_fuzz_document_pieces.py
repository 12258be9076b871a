"""A large document re-encoded in pieces is byte for byte the one-call encoding."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from extproc.formats import document as doc
from extproc.formats.document import dump_document

# Strings with what the encoders treat specially: escapes, non-ASCII, lone surrogates.
TEXT = st.text(st.characters(codec=None, exclude_categories=()), max_size=12) | st.sampled_from(
    ["\ud83d", "a\udc00b", '"\\', "\u2028", "é", ""]
)
SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | TEXT
DOCUMENTS = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=12) | st.dictionaries(TEXT, inner, max_size=12),
    max_leaves=120,
)


def one_call(document: Any) -> bytes:
    try:
        return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()
    except UnicodeEncodeError:
        return json.dumps(document, separators=(",", ":")).encode()


@pytest.fixture(autouse=True)
def small_pieces(monkeypatch: pytest.MonkeyPatch) -> None:
    # Pieces of 3 elements and at most 40 calls, so small documents take every branch:
    # batches, element-wise containers, the depth limit and the call budget.
    monkeypatch.setattr(doc, "PIECE_ELEMENTS", 3)
    monkeypatch.setattr(doc, "MAX_PIECES", 40)


@given(DOCUMENTS)
def test_pieces_are_the_one_call_bytes(document: Any) -> None:
    assert dump_document(document, in_pieces=True) == one_call(document)


@given(st.dictionaries(st.integers() | st.booleans() | TEXT, SCALARS, max_size=8))
def test_keys_json_converts_are_left_to_it(document: dict[Any, Any]) -> None:
    assert dump_document(document, in_pieces=True) == one_call(document)


def test_a_large_message_list_is_encoded_in_many_calls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(doc, "PIECE_ELEMENTS", 512)
    monkeypatch.setattr(doc, "MAX_PIECES", 4096)
    calls = []
    real = json.dumps

    def counting(value: Any, **options: Any) -> str:
        calls.append(len(value) if isinstance(value, (list, dict)) else 1)
        return real(value, **options)

    monkeypatch.setattr(doc.json, "dumps", counting)
    body = {"model": "m", "messages": [{"role": "user", "content": f"m{i}"} for i in range(20_000)]}
    assert dump_document(body, in_pieces=True) == one_call(body)
    assert len(calls) >= 20_000 // 512 and max(calls) <= 512
    calls.clear()
    dump_document(body)
    assert calls == [2]  # one call by default


def test_the_calls_per_document_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nested small containers (each encoded element by element) cannot multiply the calls:
    past ``MAX_PIECES`` the rest goes whole (an open container's remaining elements at most)."""
    monkeypatch.setattr(doc, "PIECE_ELEMENTS", 30)
    monkeypatch.setattr(doc, "MAX_PIECES", 100)
    calls = [0]
    real = json.dumps

    def counting(value: Any, **options: Any) -> str:
        calls[0] += 1
        return real(value, **options)

    monkeypatch.setattr(doc.json, "dumps", counting)
    nested = [[[[i, j, k] for k in range(30)] for j in range(30)] for i in range(30)]
    assert dump_document(nested, in_pieces=True) == one_call(nested)
    assert calls[0] <= 100 + 4 * 30  # element by element all the way: 27,930 calls
