"""Leases: exclusive claims on a record that hold across machines sharing a filesystem.

A lease is a file created with O_CREAT | O_EXCL (atomic on local filesystems, NFSv3+ and the
parallel filesystems of clusters, where fcntl/flock locks may give no mutual exclusion). It holds
its owner's host, pid and a random token; while the lease is held, a thread touches the file every
`heartbeat` seconds. Another process takes a lease over when its owner is provably gone (same
host, pid no longer alive) or when the file has not changed for `timeout` seconds of the taker's
own clock (no clock comparison across machines). A takeover is serialised by a second O_EXCL
file (`<lease>.break`): the one breaker checks that the file it judged stale is still the one in
place (inode, mtime, size) and replaces it with its own lease by an atomic rename, so the lease
name is never absent and of several takers exactly one wins. (A breaker descheduled for longer
than the timeout can be judged dead and a second breaker can then run beside it; both may win,
and the record is computed twice but published once.)

A result is committed with `claims.storage.atomic.atomic_write_bytes(..., replace=False)` (a hard link:
it fails if the name exists), so a holder that lost its lease while paused can never replace what
the new holder published.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from pathlib import Path

HOST = socket.gethostname()
TIMEOUT_S = 120.0  # longer than NFS's default attribute caching (acregmax 60 s)
HEARTBEAT_S = 10.0


def _owner_gone(owner: dict) -> bool:
    """The owner ran on this host and its process no longer exists."""
    if owner.get("host") != HOST or not isinstance(owner.get("pid"), int):
        return False
    try:
        os.kill(owner["pid"], 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _file_state(path: Path) -> tuple[int, int, int] | None:
    """What identifies one version of a file: inode, mtime (ns), size; None if absent."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


def _read_owner(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None  # gone, or being written: not yet readable


class _Staleness:
    """Judges one file stale: its owner is gone, or it has not changed for `timeout` of our clock."""

    def __init__(self, path: Path, timeout: float) -> None:
        self.path, self.timeout = path, timeout
        self._observed: tuple[tuple[int, int, int], float] | None = None  # (file state, since)

    def stale_state(self) -> tuple[int, int, int] | None:
        """The state of the file if it is stale now, else None."""
        state = _file_state(self.path)
        if state is None:
            return None
        owner = _read_owner(self.path)
        if owner is not None and _owner_gone(owner):
            return state
        now = time.monotonic()
        if self._observed is None or self._observed[0] != state:
            self._observed = (state, now)
            return None
        return state if now - self._observed[1] >= self.timeout else None


class Lease:
    """An exclusive claim on `path`; `try_acquire` never waits, `release` gives it back."""

    def __init__(
        self,
        path: Path | str,
        timeout: float = TIMEOUT_S,
        heartbeat: float = HEARTBEAT_S,
    ) -> None:
        self.path = Path(path)
        self.heartbeat = heartbeat
        self.token = uuid.uuid4().hex
        self._breaker = self.path.with_name(self.path.name + ".break")
        self._lease_staleness = _Staleness(self.path, timeout)
        self._breaker_staleness = _Staleness(self._breaker, timeout)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.lost = False

    def try_acquire(self) -> bool:
        """Take the lease if it is free or stale; False if another live holder has it."""
        if _create_exclusive(self.path, self._owner_text()):
            self._start_heartbeat()
            return True
        stale = self._lease_staleness.stale_state()
        if stale is None or not self._take_over(stale):
            return False
        self._start_heartbeat()
        return True

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self.held():
            self.path.unlink(missing_ok=True)

    def held(self) -> bool:
        """The file is still ours (checked on disk)."""
        owner = _read_owner(self.path)
        return owner is not None and owner.get("token") == self.token

    def _owner_text(self) -> str:
        return json.dumps({"host": HOST, "pid": os.getpid(), "token": self.token, "created": time.time()})

    def _take_over(self, stale: tuple[int, int, int]) -> bool:
        """Replace the stale file by our lease, as the only breaker; False if anything moved."""
        if not _create_exclusive(self._breaker, self._owner_text()):
            if self._breaker_staleness.stale_state() is not None:
                self._breaker.unlink(missing_ok=True)  # a breaker died mid-takeover
            return False
        try:
            if _file_state(self.path) != stale:
                return False  # released, renewed or already replaced since we judged it
            mine = self.path.with_name(f"{self.path.name}.new-{self.token}")
            mine.write_text(self._owner_text())
            os.replace(mine, self.path)
            return True
        finally:
            self._breaker.unlink(missing_ok=True)

    def _start_heartbeat(self) -> None:
        self._stop.clear()
        self.lost = False
        self._thread = threading.Thread(target=self._beat, name=f"lease-{self.path.name}", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat):
            if not self.held():
                self.lost = True
                return
            try:
                os.utime(self.path)
            except FileNotFoundError:
                self.lost = True
                return


def _create_exclusive(path: Path, text: str) -> bool:
    """Create `path` holding `text` if no file has that name (O_CREAT | O_EXCL)."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return True
