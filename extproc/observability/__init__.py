"""In-process observability: outcome counters per guardrail (read by tests, rendered for
Prometheus)."""

from extproc.observability.counters import (
    COUNTERS,
    OUTCOMES,
    Counters,
    render_gauge,
    render_prometheus,
)

__all__ = ["COUNTERS", "OUTCOMES", "Counters", "render_gauge", "render_prometheus"]
