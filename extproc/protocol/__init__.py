"""The ext_proc protocol: one session per HTTP request. Knows Envoy, knows nothing of LLMs."""
