"""Inter-process locks that leave nothing behind: a lock's file is removed by its holder.

The holder unlinks the lock file before releasing it; a process that was waiting on the old file
notices that it lost its name and retries on a fresh one (filelock >= 4), so a finished cache holds
no lock files. A holder killed by SIGKILL leaves an unlocked file, removed by the next holder.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

__all__ = ["Timeout", "exclusive"]


@contextmanager
def exclusive(path: Path | str, timeout: float = -1) -> Iterator[None]:
    """Hold the lock `path` (wait at most `timeout` seconds, -1: forever; raises filelock.Timeout)."""
    lock = FileLock(str(path))
    lock.acquire(timeout=timeout)
    try:
        yield
    finally:
        Path(path).unlink(missing_ok=True)
        lock.release()
