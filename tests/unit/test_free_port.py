"""free_port: ports the tests hand to Envoy and the processor before those bind them."""

from __future__ import annotations

import socket
from pathlib import Path

from extproc.stack import processes
from extproc.stack.processes import free_port


def test_ports_are_outside_the_ephemeral_range_and_never_repeat():
    ports = [free_port() for _ in range(300)]
    assert len(set(ports)) == len(ports)
    assert all(processes._PICK_FROM <= port < processes._PICK_TO for port in ports)
    low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    assert all(not low <= port <= high for port in ports)


def test_a_port_in_use_is_not_handed_out(monkeypatch):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        busy = taken.getsockname()[1]
        # The bound port comes up first (twice), then the range in order.
        picks = iter([busy, busy, *range(processes._PICK_FROM, processes._PICK_TO)])
        monkeypatch.setattr(
            processes.random.SystemRandom, "randrange", lambda self, a, b: next(picks)
        )
        port = free_port()
    assert port != busy
