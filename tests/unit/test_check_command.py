"""`extproc check`: the contract other tools rely on (JSON Lines in, one verdict per line out)."""

from __future__ import annotations

import json
import subprocess
import sys


def check(lines: list[str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "extproc", "--log-level", "WARNING", "check", *args],
        input="".join(line + "\n" for line in lines),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_verdicts_with_character_offsets_one_line_per_input() -> None:
    text = "Grüße 🙂 josé@example.com key AKIAIOSFODNN7EXAMPLE"
    result = check([json.dumps({"text": text}), json.dumps({"text": "nothing here"})])
    assert result.returncode == 0, result.stderr
    first, second = (json.loads(line) for line in result.stdout.splitlines())
    assert first["blocked"] is True
    assert first["masked_text"] == "Grüße 🙂 [EMAIL] key AKIAIOSFODNN7EXAMPLE"
    email, secret = first["findings"]
    assert text[email["start"] : email["end"]] == "josé@example.com"
    assert (email["type"], email["action"], email["guardrail"]) == ("EMAIL", "mask", "mask-pii")
    assert text[secret["start"] : secret["end"]] == "AKIAIOSFODNN7EXAMPLE"
    assert (secret["type"], secret["subtype"], secret["action"]) == (
        "SECRET",
        "AWS_ACCESS_KEY",
        "block",
    )
    assert second == {"blocked": False, "masked_text": "nothing here", "findings": []}


def test_guardrail_option_selects_and_bad_lines_stay_aligned() -> None:
    result = check(
        ['{"text": "a@b.io"}', "not json", '{"txt": 1}', '{"text": "c@d.io"}'],
        "--guardrail",
        "block-secrets",
    )
    assert result.returncode == 1
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [("error" in line) for line in lines] == [False, True, True, False]
    assert lines[0] == {"blocked": False, "masked_text": "a@b.io", "findings": []}


def test_unknown_guardrail_is_a_usage_error() -> None:
    result = check([], "--guardrail", "nope")
    assert result.returncode == 2
    assert '"nope"' in result.stderr


def test_masked_text_uses_the_guardrails_placeholders(tmp_path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        "guardrails:\n"
        "  - guardrail_name: p\n"
        "    litellm_params: {guardrail: pii, mode: pre_call, default_on: true,"
        ' placeholder: "<{type}_{n}>"}\n'
    )
    text = "a x@y.io b z@y.io c x@y.io"
    result = check([json.dumps({"text": text})], "--config", str(config))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["masked_text"] == "a <EMAIL_1> b <EMAIL_2> c <EMAIL_1>"


def test_a_blank_line_still_gets_its_own_output_line() -> None:
    result = check([json.dumps({"text": "a"}), "", "   ", json.dumps({"text": "b"})])
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(lines) == 4
    assert [("error" in line) for line in lines] == [False, True, True, False]
    assert "line 2" in lines[1]["error"] and result.returncode == 1
