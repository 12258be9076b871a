"""Policy: which guardrails apply, and how their findings become block / mask / log."""
