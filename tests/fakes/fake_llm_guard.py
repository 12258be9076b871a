"""A fake LLM Guard API (protectai ``llm_guard_api``) on a :class:`FakeService`.

Speaks the real wire protocol: ``POST /analyze/prompt`` and ``/analyze/output`` (plus the
``/scan/*`` variants), Bearer auth with the API's 401/403 bodies, 422 on a malformed body,
scores in [-1, 1] keyed by scanner class name, ``scanners_suppress``. Its scanners are tiny
stand-ins: Anonymize (e-mail addresses and one known name), Secrets (AWS key ids),
PromptInjection and Toxicity (trigger phrases); on output, Toxicity and Sensitive (e-mails).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import re2

from tests.fakes.http_fake import FakeService, Reply, Seen

EMAIL = re2.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
PERSON = re2.compile(r"John Smith")
AWS_KEY = re2.compile(r"AKIA[0-9A-Z]{16}")
INJECTION = re2.compile(r"(?i)ignore (?:all )?previous instructions")
TOXIC = re2.compile(r"(?i)\b(?:idiot|stupid|i hate you)\b")

Scanner = Callable[[str], tuple[str, float]]  # text -> (sanitized text, score)


def _replace_numbered(pattern: Any, kind: str) -> Scanner:
    def scan(text: str) -> tuple[str, float]:
        count = 0

        def label(_: Any) -> str:
            nonlocal count
            count += 1
            return f"[REDACTED_{kind}_{count}]"

        sanitized = pattern.sub(label, text)
        return sanitized, (1.0 if count else -1.0)

    return scan


def _anonymize(text: str) -> tuple[str, float]:
    text, person = _replace_numbered(PERSON, "PERSON")(text)
    text, email = _replace_numbered(EMAIL, "EMAIL_ADDRESS")(text)
    return text, max(person, email)


def _secrets(text: str) -> tuple[str, float]:
    sanitized = AWS_KEY.sub("******", text)
    return sanitized, (1.0 if sanitized != text else -1.0)


def _detector(pattern: Any, hit: float, miss: float) -> Scanner:
    return lambda text: (text, hit if pattern.search(text) else miss)


PROMPT_SCANNERS: dict[str, Scanner] = {
    "Anonymize": _anonymize,
    "Secrets": _secrets,
    "PromptInjection": _detector(INJECTION, 1.0, -1.0),
    "Toxicity": _detector(TOXIC, 0.8, -0.6),
}
OUTPUT_SCANNERS: dict[str, Scanner] = {
    "Toxicity": _detector(TOXIC, 0.8, -0.6),
    "Sensitive": _replace_numbered(EMAIL, "EMAIL_ADDRESS"),
}


def _run(scanners: dict[str, Scanner], text: str, suppress: list[str]) -> dict[str, Any]:
    scores: dict[str, float] = {}
    for name, scanner in scanners.items():
        if name in suppress:
            continue
        text, score = scanner(text)
        scores[name] = score
    return {"is_valid": all(s <= 0 for s in scores.values()), "scanners": scores, "text": text}


def _auth_failure(seen: Seen, token: str | None) -> Reply | None:
    """fastapi 0.115 HTTPBearer: 403 without credentials or another scheme, 401 wrong token."""
    if token is None:
        return None
    header = seen.headers.get("authorization", "")
    scheme, _, credentials = header.partition(" ")
    if not header or not credentials:
        return Reply(403, {"message": "Not authenticated", "details": None})
    if scheme.lower() != "bearer":
        return Reply(403, {"message": "Invalid authentication credentials", "details": None})
    if credentials != token:
        return Reply(401, {"message": "Invalid API key", "details": None})
    return None


def _invalid(body: Any, fields: tuple[str, ...]) -> Reply | None:
    missing = [f for f in fields if not isinstance(body, dict) or not isinstance(body.get(f), str)]
    suppress = body.get("scanners_suppress", []) if isinstance(body, dict) else []
    if missing or not isinstance(suppress, list):
        errors = [{"type": "missing", "loc": ["body", f], "msg": "Field required"} for f in missing]
        return Reply(422, {"message": "Validation failed", "details": errors})
    return None


def install(fake: FakeService, token: str | None = None) -> FakeService:
    """Serve LLM Guard's routes on ``fake``; ``token``: the Bearer token it requires."""

    def prompt(seen: Seen, sanitize: bool) -> Reply:
        failure = _auth_failure(seen, token) or _invalid(seen.body, ("prompt",))
        if failure:
            return failure
        result = _run(PROMPT_SCANNERS, seen.body["prompt"], seen.body.get("scanners_suppress", []))
        answer = {"is_valid": result["is_valid"], "scanners": result["scanners"]}
        if sanitize:
            answer["sanitized_prompt"] = result["text"]
        return Reply(200, answer)

    def output(seen: Seen, sanitize: bool) -> Reply:
        failure = _auth_failure(seen, token) or _invalid(seen.body, ("prompt", "output"))
        if failure:
            return failure
        result = _run(OUTPUT_SCANNERS, seen.body["output"], seen.body.get("scanners_suppress", []))
        answer = {"is_valid": result["is_valid"], "scanners": result["scanners"]}
        if sanitize:
            answer["sanitized_output"] = result["text"]
        return Reply(200, answer)

    fake.route("POST", "/analyze/prompt", lambda seen: prompt(seen, True))
    fake.route("POST", "/scan/prompt", lambda seen: prompt(seen, False))
    fake.route("POST", "/analyze/output", lambda seen: output(seen, True))
    fake.route("POST", "/scan/output", lambda seen: output(seen, False))
    fake.route("GET", "/healthz", lambda seen: Reply(200, {"status": "alive"}))
    return fake
