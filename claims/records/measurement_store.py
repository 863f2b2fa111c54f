"""Where a series' measurements live: `<cache>/measurements/<key>.pt`, keyed by the series' records
(each by its key and its file's size and modification time, so that a record replaced under its
key, as a merge or a recomputation on another device can do, is measured anew), its onset and
length, and the code that measures. A run's xdist workers and its report all read every series;
under a lock per series the first to need it measures it and the others load it. A cache that
cannot be written to is measured from, not written to.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import json
from collections.abc import Callable, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from claims.records.provenance import code_version, files_digest
from claims.statistics import intervals, measure
from claims.statistics.measure import SeriesMeasurements, Trajectory
from claims.storage.atomic import TMP_PREFIX, atomic_write_bytes
from claims.storage.locks import exclusive

FORMAT = 1
TRAJECTORY = "__trajectory__"  # marks an encoded Trajectory among the dictionaries


@functools.cache
def measure_code_version() -> str:
    """The records' code version and a digest of the modules that turn records into measurements."""
    modules = files_digest([Path(measure.__file__), Path(intervals.__file__)])
    return hashlib.sha256((code_version() + modules).encode()).hexdigest()[:12]


def record_identity(key: str, path: Path) -> list:
    """A stored record as a measurement depends on it: its key and its file's size and mtime."""
    stat = Path(path).stat()
    return [key, stat.st_size, stat.st_mtime_ns]


def measurement_key(
    records: Sequence[list], family: str, name: str, seed: int, total_steps: int, onset: int | None
) -> str:
    """A digest of everything `measure_series` reads: the records (`record_identity`, in step order)
    and its arguments."""
    identity = {
        "records": [list(r) for r in records],
        "family": family,
        "name": name,
        "seed": seed,
        "total_steps": total_steps,
        "onset": onset,
        "code": measure_code_version(),
        "format": FORMAT,
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:24]


def _encode(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(value))
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Trajectory):
        return {TRAJECTORY: {f.name: _encode(getattr(value, f.name)) for f in fields(value)}}
    if isinstance(value, dict):
        return {k: _encode(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_encode(v) for v in value]
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.numpy()
    if isinstance(value, dict) and TRAJECTORY in value:
        return Trajectory(**_decode(value[TRAJECTORY]))
    if isinstance(value, dict):
        return {k: _decode(v) for k, v in value.items()}
    return value


def encode(measured: SeriesMeasurements) -> bytes:
    """The measurements as `torch.save` bytes of tensors, numbers and strings (loadable with weights_only)."""
    buffer = io.BytesIO()
    torch.save({"format": FORMAT, **{f.name: _encode(getattr(measured, f.name)) for f in fields(measured)}}, buffer)
    return buffer.getvalue()


def decode(data: bytes) -> SeriesMeasurements | None:
    """The measurements `encode` wrote; None if the bytes are not that (damaged, or another format)."""
    try:
        stored = torch.load(io.BytesIO(data), weights_only=True)
        if stored.pop("format") != FORMAT:
            return None
        return SeriesMeasurements(**{f.name: _decode(stored[f.name]) for f in fields(SeriesMeasurements)})
    except Exception:
        return None


def _stored(path: Path) -> SeriesMeasurements | None:
    try:
        return decode(path.read_bytes()) if path.exists() else None
    except OSError:
        return None


def stored_or_measured(cache: Path, key: str, compute: Callable[[], SeriesMeasurements]) -> SeriesMeasurements:
    """The measurements stored under `key`, or `compute()`'s, stored there (once: under the key's lock)."""
    directory = Path(cache) / "measurements"
    path = directory / f"{key}.pt"
    found = _stored(path)  # written atomically: readable without the lock
    if found is not None:
        return found
    with contextlib.ExitStack() as held:
        try:
            directory.mkdir(parents=True, exist_ok=True)
            held.enter_context(exclusive(directory / f"{key}.lock"))
        except OSError:  # a read-only cache: measured, not kept
            return compute()
        found = _stored(path)  # measured by another process while this one waited
        if found is None:
            found = compute()
            try:
                for leftover in directory.glob(f"{TMP_PREFIX}{key}.pt-*"):  # a write that was killed
                    leftover.unlink()
                atomic_write_bytes(path, encode(found))
            except OSError:  # a full cache: measured, not kept
                pass
        return found
