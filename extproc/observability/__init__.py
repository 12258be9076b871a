"""In-process observability: Prometheus metrics (prometheus_client), JSON logs, the audit log."""

from extproc.observability.counters import (
    COUNTERS,
    OUTCOMES,
    Counters,
    render_prometheus,
)

__all__ = ["COUNTERS", "OUTCOMES", "Counters", "render_prometheus"]
