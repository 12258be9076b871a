"""promtool for the tests: Debian's ``prometheus`` package unpacked (never installed) into a
cache dir inside the venv, as deployment.md §6.3 does it, or a skip that says why.

``apt-get download`` needs only the apt lists and the network; ``dpkg -x`` needs no root. The
binary is libc-only. ``PROMTOOL=/path/to/promtool`` or one on ``PATH`` is used as is.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

CACHE = Path(sys.prefix) / "promtool-cache"  # one download per venv, gone with `make clean`
DOWNLOAD_SECONDS = 120


def _unpacked() -> Path | str:
    """The cached promtool, or why it cannot be had here."""
    binary = CACHE / "root" / "usr" / "bin" / "promtool"
    if binary.exists():
        return binary
    if shutil.which("apt-get") is None or shutil.which("dpkg") is None:
        return "apt-get/dpkg not available (not a Debian-like machine)"
    CACHE.mkdir(parents=True, exist_ok=True)
    try:
        debs = list(CACHE.glob("prometheus_*.deb"))
        if not debs:
            fetched = subprocess.run(
                ["apt-get", "download", "prometheus"],
                cwd=CACHE,
                capture_output=True,
                text=True,
                timeout=DOWNLOAD_SECONDS,
            )
            debs = list(CACHE.glob("prometheus_*.deb"))
            if fetched.returncode != 0 or not debs:
                why = (fetched.stderr.strip().splitlines() or ["no output"])[-1]
                return f"apt-get download prometheus failed (no apt lists? {why})"
        subprocess.run(
            ["dpkg", "-x", str(debs[0]), str(CACHE / "root")],
            check=True,
            capture_output=True,
            timeout=DOWNLOAD_SECONDS,
        )
        for deb in debs:
            deb.unlink()  # 19 MB; the unpacked tree is the cache
    except (OSError, subprocess.SubprocessError) as error:
        return f"could not unpack Debian's prometheus package: {error}"
    return binary if binary.exists() else "the prometheus package has no usr/bin/promtool"


def promtool() -> Path:
    """The promtool binary, or skip the calling test with the reason."""
    given = os.environ.get("PROMTOOL") or shutil.which("promtool")
    if given:
        return Path(given)
    found = _unpacked()
    if isinstance(found, str):
        pytest.skip(f"promtool unavailable: {found}")
    return found


def check_metrics(text: str) -> subprocess.CompletedProcess[str]:
    """``promtool check metrics`` on the classic text exposition (stdin)."""
    return subprocess.run(
        [str(promtool()), "check", "metrics"],
        input=text,
        capture_output=True,
        text=True,
        timeout=30,
    )
