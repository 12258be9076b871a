"""OpenAI-style error bodies, the shape LiteLLM users' clients already parse."""

from __future__ import annotations

import json
from typing import Any


def error_body(
    message: str,
    error_type: str = "invalid_request_error",
    code: str = "400",
    param: str | None = None,
    **provider_specific: Any,
) -> bytes:
    error: dict[str, Any] = {"message": message, "type": error_type, "param": param, "code": code}
    if provider_specific:
        error["provider_specific_fields"] = provider_specific
    return json.dumps({"error": error}, separators=(",", ":")).encode()
