"""Reading a JSON body once, strictly, and the generic fallback under every adapter.

Two rules live here (README "What is inspected"):

- **One parse decides.** A body is read as strict UTF-8 JSON; what another parser could read
  differently is refused instead of forwarded: an object with a repeated key (we would judge one
  value, the upstream may read the other), ``NaN`` / ``Infinity`` (not JSON), integers longer than
  Python converts, invalid UTF-8, a byte-order mark. Refusing costs nothing on clean requests;
  re-serialising every body (the other way to make both sides read the same) would rewrite every
  request.
- **Recognise to refine, never to permit.** An adapter knows where a schema keeps its text and
  gives it roles and placement; :func:`inspected_slots` then adds every string the adapter did not
  claim (values, and object keys, which models read too: tool parameter names, unknown fields)
  as generic text, with the role of the nearest enclosing message. Only the schemas' own
  vocabulary is left out (field names such as ``content``, values such as ``"user"`` or
  ``"auto"``): a closed set of literals that a test checks no detector finds anything in.
"""

from __future__ import annotations

import json
from typing import Any

from extproc.formats.base import MAX_JSON_DEPTH, JoinedSlot, KeySlot, TextSlot


class DocumentError(ValueError):
    """The body is not one unambiguous JSON document; the message is safe to show the client."""


def _unique_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document = dict(pairs)
    if len(document) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise DocumentError(f"Request body repeats the key {snippet(key)} in one object.")
            seen.add(key)
    return document


def _no_constant(name: str) -> Any:
    raise DocumentError(f"Request body contains {name}, which is not a JSON number.")


_DECODER = json.JSONDecoder(object_pairs_hook=_unique_object, parse_constant=_no_constant)


def parse_document(body: bytes) -> Any:
    """The body as JSON, read one way only; :class:`DocumentError` says why not."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise DocumentError("Request body is not valid UTF-8.") from None
    try:
        return _DECODER.decode(text)
    except DocumentError:
        raise
    except json.JSONDecodeError:
        raise DocumentError("Request body is not valid JSON.") from None
    except (ValueError, RecursionError):  # an integer too long to convert, absurd nesting
        raise DocumentError("Request body is not valid JSON we can read.") from None


# Elements encoded per ``json.dumps`` call when a large document is written in pieces, and the
# most calls one document gets (past it the rest goes in whole pieces: the extra calls, ~1-2 us
# each, stay a small share of the encoding whatever the document's shape).
PIECE_ELEMENTS = 512
MAX_PIECES = 4096
_PIECE_DEPTH = 4  # containers this deep and deeper are encoded in one call


def dump_document(document: object, in_pieces: bool = False) -> bytes:
    """``document`` as compact UTF-8 JSON (a lone surrogate kept escaped, as it came in).

    ``in_pieces``: the same bytes, encoded by up to ``MAX_PIECES`` ``json.dumps`` calls of at
    most ``PIECE_ELEMENTS`` elements each instead of one. One call over a 3 MB document runs
    ~40 ms in C without giving up the interpreter, even in a worker thread, so the event loop
    waits for all of it; between pieces the loop gets its switch-interval turn.
    """
    try:
        return _encoded(document, in_pieces, ensure_ascii=False).encode()
    except UnicodeEncodeError:  # a lone surrogate ("\ud83d" in the JSON): keep it escaped
        return _encoded(document, in_pieces, ensure_ascii=True).encode()


def _encoded(document: object, in_pieces: bool, ensure_ascii: bool) -> str:
    def dumps(value: object) -> str:
        return json.dumps(value, ensure_ascii=ensure_ascii, separators=(",", ":"))

    if not in_pieces:
        return dumps(document)
    parts: list[str] = []

    def whole(value: object) -> bool:
        return (
            not isinstance(value, (dict, list))
            or not value
            or len(parts) >= MAX_PIECES
            or (isinstance(value, dict) and not all(type(key) is str for key in value))
        )

    def write(value: object, depth: int) -> None:
        if depth >= _PIECE_DEPTH or whole(value):
            parts.append(dumps(value))
            return
        items = list(value.items()) if isinstance(value, dict) else value
        opening, closing = ("{", "}") if isinstance(value, dict) else ("[", "]")
        parts.append(opening)
        if len(items) > PIECE_ELEMENTS:  # batches, each one call
            for start in range(0, len(items), PIECE_ELEMENTS):
                batch = items[start : start + PIECE_ELEMENTS]
                piece = dumps(dict(batch) if isinstance(value, dict) else batch)
                parts.append(("," if start else "") + piece[1:-1])
        else:  # few elements, perhaps large ones: each in pieces of its own
            for i, item in enumerate(items):
                if isinstance(value, dict):
                    key, item = item
                    parts.append(("," if i else "") + dumps(key) + ":")
                elif i:
                    parts.append(",")
                write(item, depth + 1)
        parts.append(closing)

    write(document, 0)
    return "".join(parts)


def snippet(value: str, limit: int = 40) -> str:
    """A client-supplied string for an error message: quoted, escaped, at most ``limit``
    characters of it (error bodies must not echo the client's content back at length)."""
    shown = value if len(value) <= limit else value[:limit] + "..."
    return json.dumps(shown)


# -- the schemas' own vocabulary ------------------------------------------------------------------

# Field names of the request and answer schemas we know (chat, completions, embeddings,
# Responses, Anthropic Messages). Any other key is judged as text.
KNOWN_KEYS = frozenset(
    """
    model messages role content name type text image_url url detail input_audio data format file
    file_id filename file_data tool_calls id function arguments tool_call_id function_call refusal
    audio temperature top_p n stream stream_options include_usage stop max_tokens
    max_completion_tokens presence_penalty frequency_penalty logit_bias logprobs top_logprobs user
    seed tools tool_choice parallel_tool_calls response_format json_schema schema strict
    description parameters properties required items enum additionalProperties modalities
    prediction reasoning_effort service_tier store metadata web_search_options prompt suffix echo
    best_of input encoding_format dimensions instructions previous_response_id include truncation
    reasoning effort summary max_output_tokens max_tool_calls background conversation
    prompt_cache_key safety_identifier call_id output status annotations system stop_sequences
    top_k thinking budget_tokens tool_use tool_result is_error input_schema cache_control source
    media_type signature citations title context document index delta finish_reason choices object
    created usage system_fingerprint prompt_tokens completion_tokens total_tokens input_tokens
    output_tokens stop_reason stop_sequence message created_at completed_at error
    incomplete_details
    """.split()  # noqa: SIM905 (a word list reads better than 150 quoted strings)
)

# Enumerated values of those schemas (roles, part and item types, option values).
KNOWN_VALUES = frozenset(
    """
    system developer user assistant tool function model text image_url input_audio file image
    input_text input_image input_file output_text refusal message function_call
    function_call_output custom_tool_call custom_tool_call_output reasoning summary_text
    reasoning_text item_reference tool_use tool_result server_tool_use thinking redacted_thinking
    document base64 url auto none required low high medium minimal json_object json_schema stop
    length tool_calls content_filter end_turn max_tokens stop_sequence ephemeral completed
    in_progress incomplete float disabled enabled default flex priority object array string number
    integer boolean null
    """.split()  # noqa: SIM905 (a word list reads better than 150 quoted strings)
)


def inspected_slots(
    slots: list[TextSlot], document: Any, role: str | None = None
) -> list[TextSlot]:
    """Every string of ``document`` that ``slots`` (an adapter's) do not cover, then ``slots``.

    The generic texts come first so that services reading a conversation still find its last
    message last (Aim, Lakera judge the latest message on its own). ``role``: of strings outside
    any message (``assistant`` for an answer: all of it is the model's)."""
    covered: set[tuple[int, str | int]] = set()
    for slot in slots:
        for part in slot.parts if isinstance(slot, JoinedSlot) else (slot,):
            covered.add((id(part.container), part.key))
    generic: list[TextSlot] = []
    _uncovered(document, generic, covered, role, 0)
    return generic + slots if generic else slots


def _uncovered(
    value: Any,
    slots: list[TextSlot],
    covered: set[tuple[int, str | int]],
    role: str | None,
    depth: int,
) -> None:
    """Append a slot for each string and key under ``value`` not in ``covered``. On every
    request's hot path: exact type checks (JSON gives no subclasses) and local names."""
    if depth > MAX_JSON_DEPTH:
        raise ValueError("JSON nested too deeply to inspect")
    append, keys, values, walk = slots.append, KNOWN_KEYS, KNOWN_VALUES, _uncovered
    is_dict = type(value) is dict
    if is_dict:
        own_role = value.get("role")
        if type(own_role) is str:
            role = own_role
        pairs: Any = value.items()
    elif type(value) is list:
        pairs = enumerate(value)
    else:
        return
    holder = id(value)
    for key, item in pairs:
        if is_dict and key and key not in keys:
            append(KeySlot(value, key, key, role))
        kind = type(item)
        if kind is str:
            if item and item not in values and (holder, key) not in covered:
                append(TextSlot(value, key, item, role))
        elif kind is dict or kind is list:
            walk(item, slots, covered, role, depth + 1)
