"""The guardrail engine: config -> guardrails; per request, an ExchangeHandler that applies them.

``Engine`` is the ``HandlerFactory`` the server takes: a ``GuardrailSet`` (built once per config,
``guardrails.py``) that hands out one ``GuardedExchange`` (``handler.py``) per HTTP request.
"""

from __future__ import annotations

from extproc.exchange.guardrails import FailedClosed, GuardrailSet
from extproc.exchange.handler import GuardedExchange

__all__ = ["Engine", "FailedClosed", "GuardedExchange"]


class Engine(GuardrailSet):
    """Built once per config; hands out one :class:`GuardedExchange` per HTTP request."""

    def __call__(self) -> GuardedExchange:
        return GuardedExchange(self)
