"""Where records live: `<cache>/records/<key>.pt`, keyed by checkpoint, data, options and code,
written atomically and computed by exactly one process (a worker skips a checkpoint another holds
the lease for and comes back to it, so `-n N` workers spread over every series and seed)."""

from __future__ import annotations

import errno
import functools
import hashlib
import io
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path

import torch

from claims.fixtures.series import Announcer, Checkpoint, silent
from claims.records.compute import RECORD_FORMAT, Data, RunOptions, compute_record
from claims.records.provenance import code_version
from claims.records.scheduling import rotated
from claims.storage.atomic import TMP_PREFIX, atomic_write_bytes
from claims.storage.lease import TIMEOUT_S, Lease
from claims.storage.locks import exclusive


def record_key(checkpoint: Checkpoint, data: Data, options: RunOptions, cache: Path | None = None) -> str:
    """The record's name in the store: a digest of everything its numbers depend on. A checkpoint
    inside `cache` (a miniature build) is named by its path relative to it, so that a cache can be
    moved or merged into another and keep its records."""
    source = Path(checkpoint.source)
    if cache is not None and Path(os.path.abspath(source)).is_relative_to(os.path.abspath(cache)):
        source = Path(os.path.abspath(source)).relative_to(os.path.abspath(cache))
    identity = {
        "step": checkpoint.step,
        "source": source.as_posix() if cache is not None else checkpoint.source,
        "revision": checkpoint.revision,
        "data": data.digest,
        "options": asdict(options),
        "code": code_version(),
        "format": RECORD_FORMAT,
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:24]


class CacheWriteError(OSError):
    """The cache cannot take a record: the disk is full, or the directory is read-only or not ours."""


LEASED = object()  # a record another worker is computing
UNWRITABLE = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM)


def _unwritable(directory: Path, err: OSError, size: int | None = None) -> CacheWriteError:
    need = f" (a record here is {size / 1e6:.0f} MB)" if size else ""
    return CacheWriteError(
        err.errno,
        f"cannot write to the cache {directory}: {err.strerror}; free space there or make it writable, or point "
        f"--cache-dir (or LPI_CLAIMS_CACHE) at a writable directory with room{need}",
    )


class RecordStore:
    """Records in `<cache>/records/<key>.pt`; a record is computed under its lease (`<key>.lease`,
    lease.py) and published once."""

    def __init__(self, cache_dir: Path, lease_timeout: float = TIMEOUT_S) -> None:
        self.directory = Path(cache_dir) / "records"
        self.lease_timeout = lease_timeout
        self._leases: dict[str, Lease] = {}  # one per key, so that its staleness observations persist across polls
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            if err.errno in UNWRITABLE:
                raise _unwritable(self.directory, err) from None
            raise

    def path(self, key: str) -> Path:
        return self.directory / f"{key}.pt"

    def key(self, checkpoint: Checkpoint, data: Data, options: RunOptions) -> str:
        """The checkpoint's record key in this store (`record_key`, relative to its cache)."""
        return record_key(checkpoint, data, options, self.directory.parent)

    def has(self, checkpoint: Checkpoint, data: Data, options: RunOptions) -> bool:
        """A record of the checkpoint is stored (committed)."""
        return self.path(self.key(checkpoint, data, options)).exists()

    def load(self, key: str) -> dict | None:
        path = self.path(key)
        if not path.exists():
            return None
        try:
            record = torch.load(
                path, weights_only=True, mmap=True
            )  # tensors read from the page cache as needed, not copied
        except Exception:  # unreadable: written by an incompatible version, or damaged; recompute
            return None
        if not isinstance(record, dict) or record.get("meta", {}).get("format") != RECORD_FORMAT:
            return None  # written by an incompatible version: recompute
        return record

    def lease(self, key: str) -> Lease:
        """The claim on computing `key` (its holder removes what an earlier holder left half-written);
        the same object on every call, so that a lease left by a dead remote holder is seen unchanged
        for the timeout and taken over."""
        if key not in self._leases:
            self._leases[key] = Lease(self.directory / f"{key}.lease", timeout=self.lease_timeout)
        return self._leases[key]

    def _remove_temporaries(self, key: str) -> None:
        for leftover in self.directory.glob(f"{TMP_PREFIX}{key}.pt-*"):
            leftover.unlink(missing_ok=True)

    def save(self, key: str, record: dict) -> None:
        """Publish the record (under its lease: an unreadable old file is replaced, a valid one never),
        and log its checksum and writer in `computed.log`."""
        buffer = io.BytesIO()
        torch.save(record, buffer)
        data = buffer.getvalue()
        path = self.path(key)
        try:
            if path.exists() and self.load(key) is None:
                path.unlink()  # damaged or of another format: this holder recomputed it
            if not atomic_write_bytes(path, data, replace=False):
                return  # published by a holder that took our lease over: same inputs, same record
            log = self.directory / "computed.log"
            with exclusive(str(log) + ".lock"), open(log, "a") as f:
                f.write(
                    f"{key}\t{hashlib.sha256(data).hexdigest()}\t"
                    f"{os.environ.get('PYTEST_XDIST_WORKER', 'main')}\t{os.getpid()}\n"
                )
        except OSError as err:
            if err.errno in UNWRITABLE:
                raise _unwritable(self.directory, err, len(data)) from None
            raise

    def computed_log(self) -> list[tuple[str, str, str]]:
        """(key, sha256, worker) of every record written to this store, oldest first."""
        log = self.directory / "computed.log"
        if not log.exists():
            return []
        return [tuple(line.split("\t")[:3]) for line in log.read_text().splitlines() if line]

    def ensure_all(
        self,
        checkpoints: Sequence[Checkpoint],
        data: Data,
        options: RunOptions,
        compute: Callable[[Checkpoint, Data, RunOptions], dict] | None = None,
        rotate: int = 0,
        poll_seconds: float = 0.5,
        keep: bool = True,
        announce: Announcer = silent,
    ) -> list[dict | None]:
        """The record of every checkpoint (of any series and seed), in order, computing the missing
        ones; `rotate` staggers the workers' starting points; `keep=False` only makes sure they exist
        (None in their place: a run's records together can exceed the memory); `announce` gets a
        line when a record starts and when it is stored, and the bars of `compute` (default
        compute_record)."""
        order = rotated(len(checkpoints), rotate)
        found: dict[int, dict] = {}
        while order:
            progressed = False
            for i in list(order):
                record = self._stored_or_computed(checkpoints[i], data, options, compute, announce)
                if record is LEASED:
                    continue  # another worker computes it; come back later
                found[i] = record if keep else None
                order.remove(i)
                progressed = True
            if order and not progressed:
                time.sleep(poll_seconds)
        return [found[i] for i in range(len(checkpoints))]

    def compute_one_missing(
        self,
        checkpoints: Sequence[Checkpoint],
        data: Data,
        options: RunOptions,
        compute: Callable[[Checkpoint, Data, RunOptions], dict] | None = None,
        announce: Announcer = silent,
    ) -> bool:
        """Compute the first of the checkpoints' records that is neither stored nor leased by another
        worker; False, at once, if there is none (what a worker does while it waits for another)."""
        for checkpoint in checkpoints:
            if self.has(checkpoint, data, options):
                continue
            if self._stored_or_computed(checkpoint, data, options, compute, announce) is not LEASED:
                return True
        return False

    def _stored_or_computed(
        self, checkpoint: Checkpoint, data: Data, options: RunOptions, compute: Callable | None, announce: Announcer
    ) -> dict | object:
        """The checkpoint's record, loaded, or computed and stored under its lease; LEASED if another
        worker holds the lease."""
        key = self.key(checkpoint, data, options)
        record = self.load(key)
        if record is not None:  # a lease left beside a stored record (its holder killed before releasing) is garbage
            (self.directory / f"{key}.lease").unlink(missing_ok=True)
            return record
        lease = self.lease(key)
        if not lease.try_acquire():
            return LEASED
        try:
            record = self.load(key)
            if record is None:
                self._remove_temporaries(key)  # an interrupted write of this record
                started = time.time()
                announce(f"record {checkpoint.label}: computing ({len(data.prompts)} examples)")
                record = (compute or functools.partial(compute_record, progress=announce.bar))(
                    checkpoint, data, options
                )
                self.save(key, record)
                announce(f"record {checkpoint.label}: stored in {time.time() - started:.0f} s")
        finally:
            lease.release()
        return record

    def ensure(self, checkpoints: Sequence[Checkpoint], data: Data, options: RunOptions, **kwargs) -> dict[int, dict]:
        """`ensure_all` for the checkpoints of one series, by step."""
        return {c.step: r for c, r in zip(checkpoints, self.ensure_all(checkpoints, data, options, **kwargs))}

    def load_all(
        self, checkpoints: Sequence[Checkpoint], data: Data, options: RunOptions
    ) -> tuple[list[dict | None], list[Checkpoint]]:
        """The cached records (None where missing) and the checkpoints that have none."""
        found = [self.load(self.key(c, data, options)) for c in checkpoints]
        return found, [c for c, r in zip(checkpoints, found) if r is None]
