"""LiteLLM's guardrail integrations (``litellm_params.guardrail`` values, as of LiteLLM
1.106.2's SupportedGuardrailIntegrations) that this service does not run, so that a config
naming one is refused with the way to keep that check, not with a bare "unknown"."""

from __future__ import annotations

NOT_RUN_HERE = frozenset(
    {
        "aporia", "dynamoai", "guardrails_ai", "hiddenlayer", "cato_networks", "pangea",
        "crowdstrike_aidr", "lasso", "pillar", "grayswan", "panw_prisma_airs",
        "cisco_ai_defense", "model_armor", "noma", "noma_v2", "tool_permission",
        "zscaler_ai_guard", "javelin", "enkryptai", "ibm_guardrails", "mcp_security", "onyx",
        "promptguard", "xecguard", "prompt_security", "qualifire", "custom_code", "ovalix",
        "microsoft_purview", "semantic_guard", "mcp_end_user_permission",
        "block_code_execution", "akto", "mcp_jwt_signer", "llm_as_a_judge", "deepkeep",
        "qostodian_nexus", "rubrik", "vigil_guard", "repelloai", "singulr", "headroom",
        "compresr", "typesafe", "straiker", "alice", "agent_365", "llm_shield_proxy",
        "conduct", "decision_model",
    }
)  # fmt: skip


def not_run_here(guardrail: str) -> str | None:
    """The fix for a LiteLLM integration we do not run, or None for any other name."""
    if guardrail not in NOT_RUN_HERE:
        return None
    return (
        f"{guardrail!r} is a LiteLLM integration this service does not run: keep the check by "
        "putting a small adapter to its API behind guardrail: generic_guardrail_api (README: "
        "webhook and generic_guardrail_api), or use a backend that runs here"
    )
