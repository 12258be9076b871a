"""The exchange orchestrator: config -> guardrails, and per request the handler that runs them.

Where the protocol (phases, bytes) meets the API modules (where text lives), the guardrails
(findings) and the policy (block / mask / allow): it awaits the network calls, spawns the
during_call tasks, logs and counts. ``extproc.policy`` stays pure; this package does the I/O.
"""
