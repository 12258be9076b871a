"""The one-command local stack: extproc + Envoy + (optionally) a fake OpenAI-compatible LLM."""
