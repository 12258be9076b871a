"""Network faults on 127.0.0.1 that an HTTP fake cannot play: a port that refuses connections
and one that never completes them (a black hole, seen by the client as a connect timeout)."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator


@contextlib.contextmanager
def refusing() -> Iterator[str]:
    """A base URL whose connections are refused (RST at once): the port is bound, so nothing
    else can take it while the test runs, but nothing listens on it."""
    with socket.socket() as bound:
        bound.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{bound.getsockname()[1]}"


@contextlib.contextmanager
def black_hole() -> Iterator[str]:
    """A base URL whose connections never complete: a listener that never accepts, its accept
    queue (one slot with a backlog of 0) filled by our own connections, so the kernel drops
    every further SYN and the client waits until its connect timeout."""
    with contextlib.ExitStack() as stack:
        listener = stack.enter_context(socket.socket())
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        for _ in range(2):
            filler = stack.enter_context(socket.socket())
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", port))
        yield f"http://127.0.0.1:{port}"
