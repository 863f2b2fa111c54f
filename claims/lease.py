"""Leases: exclusive claims on a record that hold across machines sharing a filesystem.

A lease is a file created with O_CREAT | O_EXCL (atomic on local filesystems, NFSv3+ and the
parallel filesystems of clusters, where fcntl/flock locks may give no mutual exclusion). It holds
its owner's host, pid and a random token; while the lease is held, a thread touches the file every
`heartbeat` seconds. Another process takes a lease over when its owner is provably gone (same
host, pid no longer alive) or when the file has not changed for `timeout` seconds of the taker's
own clock (no clock comparison across machines). Takeover renames the stale file to a private
name, so of several takers exactly one succeeds.

A result is committed with `claims.atomic.atomic_write_bytes(..., replace=False)` (a hard link:
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
from typing import Callable

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


def _read_owner(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None  # gone, or being written: not yet readable


class Lease:
    """An exclusive claim on `path`; `try_acquire` never waits, `release` gives it back."""

    def __init__(
        self,
        path: Path | str,
        timeout: float = TIMEOUT_S,
        heartbeat: float = HEARTBEAT_S,
        on_takeover: Callable[[], None] = lambda: None,
    ) -> None:
        self.path = Path(path)
        self.timeout, self.heartbeat = timeout, heartbeat
        self.on_takeover = on_takeover  # removes what the previous holder left half-written
        self.token = uuid.uuid4().hex
        self._observed: tuple[tuple[int, int, int], float] | None = None  # (file state, since), our clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.lost = False

    def try_acquire(self) -> bool:
        """Take the lease if it is free or stale; False if another live holder has it."""
        if self._create():
            return True
        if self._stale() and self._take_over():
            self.on_takeover()
            return self._create()
        return False

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        owner = _read_owner(self.path)
        if owner is not None and owner.get("token") == self.token:
            self.path.unlink(missing_ok=True)

    def held(self) -> bool:
        """The file is still ours (checked on disk)."""
        owner = _read_owner(self.path)
        return owner is not None and owner.get("token") == self.token

    def _create(self) -> bool:
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as f:
            json.dump({"host": HOST, "pid": os.getpid(), "token": self.token, "created": time.time()}, f)
        self._stop.clear()
        self._thread = threading.Thread(target=self._beat, name=f"lease-{self.path.name}", daemon=True)
        self._thread.start()
        return True

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

    def _stale(self) -> bool:
        owner = _read_owner(self.path)
        if owner is not None and _owner_gone(owner):
            return True
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return False  # released meanwhile: the next try creates it
        state = (st.st_ino, st.st_mtime_ns, st.st_size)
        now = time.monotonic()
        if self._observed is None or self._observed[0] != state:
            self._observed = (state, now)
            return False
        return now - self._observed[1] >= self.timeout

    def _take_over(self) -> bool:
        """Move the stale file out of the way; of several takers only one succeeds."""
        stale = _read_owner(self.path)
        private = self.path.with_name(f"{self.path.name}.stale-{self.token}")
        try:
            os.rename(self.path, private)
        except FileNotFoundError:
            return False
        taken = _read_owner(private)
        if stale is not None and taken is not None and taken.get("token") != stale.get("token"):
            try:  # a fresh lease was created between our check and the rename: give it back
                os.link(private, self.path)
            except FileExistsError:
                pass
            private.unlink(missing_ok=True)
            return False
        private.unlink(missing_ok=True)
        self._observed = None
        return True

