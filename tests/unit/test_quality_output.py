"""bench/quality*.py name misjudged eval rows by number, source and type, never by their text
unless asked (--show-text): a row's text on screen invites a rule written for that row."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import quality_pii  # noqa: E402
import quality_secrets  # noqa: E402

MISSED_SECRET = "deploy note: the value is zq8Ow3Lm"  # no detector finds it: a false negative
MISSED_EMAIL = "mail maria at maria at example dot org"


@pytest.fixture
def eval_dir(tmp_path: Path) -> Path:
    secret = {"text": MISSED_SECRET, "label": 1, "type": "generic", "source": "made-up:rules"}
    (tmp_path / "secrets.dev.jsonl").write_text(json.dumps(secret) + "\n")
    span = {"start": 13, "end": 38, "type": "EMAIL_ADDRESS", "norm_type": "EMAIL"}
    pii = {
        "text": MISSED_EMAIL,
        "spans": [span],
        "source": "made-up:synth",
        "annotation_scope": "all_entities",
    }
    (tmp_path / "pii.dev.jsonl").write_text(json.dumps(pii) + "\n")
    return tmp_path


@pytest.mark.parametrize(
    ("module", "text"), [(quality_secrets, MISSED_SECRET), (quality_pii, MISSED_EMAIL)]
)
def test_errors_are_named_without_their_text_unless_asked(
    eval_dir: Path, module: object, text: str, capsys: pytest.CaptureFixture[str]
) -> None:
    module.evaluate(eval_dir)
    hidden = capsys.readouterr().out
    assert "row 1" in hidden
    assert text[:20] not in hidden
    module.evaluate(eval_dir, show_text=True)
    assert text[:20] in capsys.readouterr().out
