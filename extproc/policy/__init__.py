"""Pure decisions, no I/O: which guardrails run when, and how findings become block / mask / log."""
