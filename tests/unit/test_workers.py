"""The pure parts of `extproc serve --workers`: the addresses the workers listen on (which the
supervisor, the envoy.yaml renderer and the chart must agree on), `--workers` itself, and the
merge of the workers' metrics into one exposition."""

from __future__ import annotations

import os

import pytest

from extproc.cli import build_parser
from extproc.config.settings import (
    SIBLING_WORKERS_ENV,
    Settings,
    SettingsError,
    available_cores,
    worker_addresses,
)
from extproc.observability import metrics_merge
from extproc.stack.envoy_config import EnvoyOptions, Upstream, named, render
from extproc.workers import Supervisor, worker_count
from tests.promtool import check_metrics


def test_one_worker_keeps_the_address_as_it_is() -> None:
    for address in ("127.0.0.1:50051", "unix:/run/x/extproc.sock", "0.0.0.0:0"):
        assert worker_addresses(address, 1) == [address]


def test_more_workers_get_numbered_sockets_or_the_next_ports() -> None:
    assert worker_addresses("unix:/run/g/extproc.sock", 3) == [
        "unix:/run/g/extproc-0.sock",
        "unix:/run/g/extproc-1.sock",
        "unix:/run/g/extproc-2.sock",
    ]
    assert worker_addresses("unix:relative", 2) == ["unix:relative-0", "unix:relative-1"]
    assert worker_addresses("0.0.0.0:50051", 2) == ["0.0.0.0:50051", "0.0.0.0:50052"]
    assert worker_addresses("[::1]:9000", 2) == ["[::1]:9000", "[::1]:9001"]


@pytest.mark.parametrize(
    ("address", "workers"),
    [("127.0.0.1:0", 2), ("127.0.0.1:65535", 2), ("unix:/run/g/", 2), ("nonsense", 2), ("a:1", 0)],
)
def test_addresses_that_cannot_hold_the_workers_are_refused(address: str, workers: int) -> None:
    with pytest.raises(SettingsError):
        worker_addresses(address, workers)


def test_workers_flag_takes_a_number_or_auto() -> None:
    assert worker_count("3") == 3
    assert worker_count("auto") == len(os.sched_getaffinity(0))
    for bad in ("0", "-1", "two", ""):
        with pytest.raises(ValueError):
            worker_count(bad)
    parser = build_parser()
    assert parser.parse_args(["serve"]).workers == 1  # today's single process by default
    assert parser.parse_args(["serve", "--workers", "2"]).workers == 2
    assert parser.parse_args(["stack", "--workers", "auto"]).workers >= 1
    with pytest.raises(SystemExit):
        parser.parse_args(["serve", "--workers", "0"])


def test_the_renderer_lists_every_worker_as_an_endpoint() -> None:
    upstream = Upstream("http", "127.0.0.1", 8080)
    for address, workers, expected in (
        ("unix:/w/extproc.sock", 2, [{"pipe": {"path": f"/w/extproc-{i}.sock"}} for i in (0, 1)]),
        (
            "127.0.0.1:30000",
            3,
            [
                {"socket_address": {"address": "127.0.0.1", "port_value": p}}
                for p in (30000, 30001, 30002)
            ],
        ),
        ("unix:/w/extproc.sock", 1, [{"pipe": {"path": "/w/extproc.sock"}}]),
    ):
        config = render(EnvoyOptions(1, 2, address, upstream, extproc_workers=workers))
        cluster = named(config["static_resources"]["clusters"], "extproc")
        [group] = cluster["load_assignment"]["endpoints"]
        assert [e["endpoint"]["address"] for e in group["lb_endpoints"]] == expected
        assert cluster["lb_policy"] == "LEAST_REQUEST"  # per stream, the least busy worker


WORKER_0 = """\
# HELP reqs_total Requests.
# TYPE reqs_total counter
reqs_total{outcome="ok"} 3.0
reqs_total{outcome="blocked"} 1.0
# HELP lat_seconds Latency.
# TYPE lat_seconds histogram
lat_seconds_bucket{le="0.1"} 2.0
lat_seconds_bucket{le="+Inf"} 4.0
lat_seconds_count 4.0
lat_seconds_sum 0.5
# HELP active_streams In flight.
# TYPE active_streams gauge
active_streams 2.0
# HELP build_info Version.
# TYPE build_info gauge
build_info{version="1"} 1.0
# HELP reload_successful Last reload ok.
# TYPE reload_successful gauge
reload_successful 1.0
# HELP process_start_time_seconds Start.
# TYPE process_start_time_seconds gauge
process_start_time_seconds 200.0
"""
WORKER_1 = (
    WORKER_0.replace('outcome="ok"} 3.0', 'outcome="ok"} 5.0')
    .replace("active_streams 2.0", "active_streams 1.0")
    .replace("reload_successful 1.0", "reload_successful 0.0")
    .replace("process_start_time_seconds 200.0", "process_start_time_seconds 100.0")
)


def series(text: str) -> dict[str, float]:
    return {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }


def test_counters_and_histograms_sum_and_gauges_combine_by_meaning() -> None:
    merged = series(
        metrics_merge.render_families(
            metrics_merge.merge([metrics_merge.parse(WORKER_0), metrics_merge.parse(WORKER_1)])
        )
    )
    assert merged['reqs_total{outcome="ok"}'] == 8
    assert merged['reqs_total{outcome="blocked"}'] == 2
    assert merged['lat_seconds_bucket{le="+Inf"}'] == 8 and merged["lat_seconds_sum"] == 1.0
    assert merged["active_streams"] == 3  # in flight in the pod
    assert merged['build_info{version="1"}'] == 1  # an info series stays 1
    assert merged["reload_successful"] == 0  # one worker's failed reload shows
    assert merged["process_start_time_seconds"] == 100  # the oldest


def test_a_retired_workers_counts_stay_in_the_totals_but_not_its_gauges() -> None:
    retired = metrics_merge.retire([], metrics_merge.parse(WORKER_1))
    merged = series(
        metrics_merge.render_families(metrics_merge.merge([metrics_merge.parse(WORKER_0), retired]))
    )
    assert merged['reqs_total{outcome="ok"}'] == 8  # the dead worker's 5 are kept
    assert merged["active_streams"] == 2  # its streams are not in flight any more
    again = metrics_merge.retire(retired, metrics_merge.parse(WORKER_0))
    assert series(metrics_merge.render_families(again))['reqs_total{outcome="ok"}'] == 8


def test_the_merged_exposition_passes_promtool() -> None:
    text = metrics_merge.render_families(
        metrics_merge.merge([metrics_merge.parse(WORKER_0), metrics_merge.parse(WORKER_1)])
    )
    result = check_metrics(text)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_tcp_stack_with_workers_gets_consecutive_free_ports(tmp_path) -> None:
    from extproc.stack.processes import Stack, _bindable

    stack = Stack(extproc_tcp=True, workers=3, workdir=tmp_path)
    addresses = stack.extproc_addresses
    ports = [int(a.rsplit(":", 1)[1]) for a in addresses]
    assert ports == [ports[0], ports[0] + 1, ports[0] + 2]
    assert all(_bindable(port) for port in ports)


def test_the_supervisor_probes_where_each_worker_can_answer_in_plaintext() -> None:
    """Plaintext: the worker's own address. TLS: its health-only listener, the configured one
    (port+i) or a unix socket in the supervisor's private directory; every worker is told
    which (``--health-address``, "" for none), whatever its config says."""
    plain = Supervisor(["extproc"], "127.0.0.1:50051", 2)
    assert [w.health_address for w in plain.workers] == ["", ""]
    assert plain.argv(plain.workers[1])[-2:] == ["--health-address", ""]
    configured = Supervisor(
        ["extproc"], "0.0.0.0:50051", 2, health_address="0.0.0.0:50061", tls=True
    )
    assert [w.health_address for w in configured.workers] == ["0.0.0.0:50061", "0.0.0.0:50062"]
    private = Supervisor(["extproc"], "0.0.0.0:50051", 2, tls=True)
    try:
        assert private.rundir is not None
        assert [w.health_address for w in private.workers] == [
            f"unix:{private.rundir}/health-{i}.sock" for i in (0, 1)
        ]
        assert private.argv(private.workers[0])[-1] == f"unix:{private.rundir}/health-0.sock"
        assert all(w.metrics_socket is None for w in private.workers)  # no metrics asked for
    finally:
        os.rmdir(private.rundir)


def test_the_default_scan_pool_divides_the_cores_among_the_workers(monkeypatch) -> None:
    cores = available_cores()
    monkeypatch.delenv(SIBLING_WORKERS_ENV, raising=False)
    assert Settings.from_mapping({}).scan_workers == cores
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)))
    for siblings, expected in (("1", 8), ("2", 4), ("3", 2), ("8", 1), ("16", 1), ("x", 8)):
        monkeypatch.setenv(SIBLING_WORKERS_ENV, siblings)
        assert Settings.from_mapping({}).scan_workers == expected, siblings
    monkeypatch.setenv(SIBLING_WORKERS_ENV, "4")
    assert Settings.from_mapping({"scan_workers": 6}).scan_workers == 6  # as given
    assert Settings.from_mapping({"scan_workers": 0}).scan_workers == 0
