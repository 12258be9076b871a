import pytest

from extproc.policy.selection import SelectionError, names_from_header, pop_requested


def test_body_field_is_read_and_removed() -> None:
    document = {"model": "m", "guardrails": ["a", "b"], "messages": []}
    assert pop_requested(document) == ["a", "b"]
    assert document == {"model": "m", "messages": []}


def test_dict_form_and_metadata_forms_add_up() -> None:
    document = {
        "guardrails": {"a": {"extra_body": {}}},
        "metadata": {"guardrails": ["b"], "user": "u1"},
        "litellm_metadata": {"guardrails": ["c"]},
    }
    assert pop_requested(document) == ["a", "b", "c"]
    assert document == {"metadata": {"user": "u1"}}


def test_absent_selection_leaves_the_body_alone() -> None:
    document = {"model": "m", "metadata": {"user": "u1"}}
    assert pop_requested(document) is None
    assert document == {"model": "m", "metadata": {"user": "u1"}}


@pytest.mark.parametrize("value", ["a", [1], None])
def test_bad_shapes_are_errors(value: object) -> None:
    with pytest.raises(SelectionError, match="list of guardrail names"):
        pop_requested({"guardrails": value})


def test_mapping_false_requests_nothing() -> None:
    document = {"guardrails": {"a": False, "b": True, "c": {"x": 1}}}
    assert pop_requested(document) == ["b", "c"]
    assert document == {}


def test_header_names() -> None:
    assert names_from_header(" a, b ,,c ") == ["a", "b", "c"]
    assert names_from_header(None) == []
    assert names_from_header("") == []
