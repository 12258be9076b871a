"""One ``/metrics`` for N worker processes: their expositions merged into the pod's totals.

``extproc serve --workers N`` runs N processes; a Prometheus user expects one scrape target
whose counters are the pod's, not N targets to sum in every query. prometheus_client's own
multiprocess mode does not fit: it cannot carry the custom collectors the hot path relies on
(``metrics.py``: the check latency and the request totals are read at scrape time) nor the
process collector. So each worker keeps its registry as it is, serves it on a private socket,
and the supervisor merges the texts at scrape time:

- counters, histograms (buckets, sums, counts) and summaries: summed, series by series;
- gauges: summed (streams in flight, memory, open fds), except where a sum means nothing:
  ``*_info`` series and ``process_max_fds`` take the largest value, "was it successful" flags
  and timestamps (``*_successful``, ``*_timestamp_seconds``, ``process_start_time_seconds``)
  the smallest, so one worker whose reload failed shows as a failure.

A worker that exits takes its counts with it; the supervisor adds what it last read of them to
``retired`` (``retire``) so that the pod's counters never go down when a worker is replaced.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from extproc.observability.metrics import render

MONOTONIC_TYPES = ("counter", "histogram", "summary", "gaugehistogram")
_MAX_GAUGES = ("process_max_fds",)
_MIN_GAUGES = ("process_start_time_seconds",)

SeriesKey = tuple[str, tuple[tuple[str, str], ...]]


def parse(text: str) -> list[Metric]:
    """The metric families of one exposition (the classic text format). Raises ValueError on
    text that is not one."""
    return list(text_string_to_metric_families(text))


def _combine(family: Metric) -> str:
    """How the series of ``family`` combine across workers: sum, max or min."""
    if family.type != "gauge":
        return "sum"
    name = family.name
    if name.endswith("_info") or name in _MAX_GAUGES:
        return "max"
    if name.endswith(("_successful", "_timestamp_seconds")) or name in _MIN_GAUGES:
        return "min"
    return "sum"


def merge(expositions: Iterable[list[Metric]]) -> list[Metric]:
    """The families of several workers as one set: series with the same name and labels
    combined (see the module doc), families in first-seen order."""
    families: dict[str, Metric] = {}
    values: dict[str, dict[SeriesKey, float]] = {}
    for exposition in expositions:
        for family in exposition:
            mine = families.get(family.name)
            if mine is None:
                mine = families[family.name] = Metric(
                    family.name, family.documentation, family.type, family.unit
                )
                values[family.name] = {}
            if mine.type != family.type:
                continue  # workers of different versions: keep the first one's type
            how = _combine(family)
            series = values[family.name]
            for sample in family.samples:
                key = (sample.name, tuple(sorted(sample.labels.items())))
                if key not in series:
                    series[key] = sample.value
                elif how == "sum":
                    series[key] += sample.value
                elif how == "max":
                    series[key] = max(series[key], sample.value)
                else:
                    series[key] = min(series[key], sample.value)
    for name, family in families.items():
        for (sample_name, labels), value in values[name].items():
            family.add_sample(sample_name, dict(labels), value)
    return list(families.values())


def retire(retired: list[Metric], last_seen: list[Metric]) -> list[Metric]:
    """``retired`` plus the monotonic series (counters, histograms) of a worker that exited,
    as last read: what the pod's totals must keep counting."""
    kept = [family for family in last_seen if family.type in MONOTONIC_TYPES]
    return merge([retired, kept])


class _Families:
    """A collector that yields fixed families (the merged ones), to render them with
    prometheus_client's own text writer."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        yield from self.families


def render_families(families: list[Metric]) -> str:
    """Families in the classic text format (the one promtool lints)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(families))
    return render(registry)
