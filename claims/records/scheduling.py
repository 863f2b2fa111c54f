"""How workers spread over records: each starts at its own place in the list and goes round."""

from __future__ import annotations

import os


def rotated(count: int, rotate: int) -> list[int]:
    """0 .. count-1 starting from the `rotate`-th (modulo count): where each worker starts, so that they spread."""
    shift = rotate % count if count else 0
    return list(range(shift, count)) + list(range(shift))


def worker_index() -> int:
    """0 for the controller or gw0, 1 for gw1, …"""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    return int(worker[2:]) if worker.startswith("gw") else 0
