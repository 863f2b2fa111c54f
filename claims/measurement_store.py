"""Where a series' measurements live: `<cache>/measurements/<key>.pt`, keyed by the series' records,
its onset and length, and the code that measures. A run's xdist workers and its report all read
every series; under a lock per series the first to need it measures it and the others load it. A
cache that cannot be written to is measured from, not written to."""
from __future__ import annotations

import functools
import hashlib
import io
import json
from dataclasses import fields
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from . import intervals, measure
from .atomic import atomic_write_bytes
from .locks import exclusive
from .measure import SeriesMeasurements, Trajectory
from .store import code_version

FORMAT = 1
TRAJECTORY = "__trajectory__"  # marks an encoded Trajectory among the dictionaries


@functools.cache
def measure_code_version() -> str:
    """The records' code version and a digest of the modules that turn records into measurements."""
    digest = hashlib.sha256(code_version().encode())
    for module in (measure, intervals):
        digest.update(Path(module.__file__).read_bytes())
    return digest.hexdigest()[:12]


def measurement_key(record_keys: Sequence[str], family: str, name: str, seed: int, total_steps: int, onset: int | None) -> str:
    """A digest of everything `measure_series` reads: the records (by their keys, in step order) and its arguments."""
    identity = {
        "records": list(record_keys), "family": family, "name": name, "seed": seed, "total_steps": total_steps,
        "onset": onset, "code": measure_code_version(), "format": FORMAT,
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:24]


def _encode(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(value))
    if isinstance(value, Trajectory):
        return {TRAJECTORY: {f.name: _encode(getattr(value, f.name)) for f in fields(value)}}
    if isinstance(value, dict):
        return {k: _encode(v) for k, v in value.items()}
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


def stored_or_measured(cache: Path, key: str, compute: Callable[[], SeriesMeasurements]) -> SeriesMeasurements:
    """The measurements stored under `key`, or `compute()`'s, stored there (once: under the key's lock)."""
    directory = Path(cache) / "measurements"
    path = directory / f"{key}.pt"
    found = None
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with exclusive(directory / f"{key}.lock"):
            found = decode(path.read_bytes()) if path.exists() else None
            if found is None:
                found = compute()
                atomic_write_bytes(path, encode(found))
    except OSError:  # a read-only or full cache: measured, not kept
        pass
    return found if found is not None else compute()
