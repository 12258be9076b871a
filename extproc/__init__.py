"""guardrails-extproc: LLM guardrails as an Envoy external-processing (ext_proc) service."""

__version__ = "0.1.0"
