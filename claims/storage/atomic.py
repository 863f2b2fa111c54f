"""Atomic writes: a result appears complete under its final name, or not at all."""

from __future__ import annotations

import io
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

TMP_PREFIX = ".tmp-"


def _temporary_sibling(path: Path) -> Path:
    return path.parent / f"{TMP_PREFIX}{path.name}-{uuid.uuid4().hex[:8]}"


def atomic_write_bytes(path: Path, data: bytes, replace: bool = True) -> bool:
    """Write `data` to a temporary sibling, then commit it under `path`: replacing what is there, or
    with `replace=False` only if nothing is (a hard link, which fails if the name exists).
    True if this call committed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary_sibling(path)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if replace:
            os.replace(tmp, path)
            return True
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        return True
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: Path, text: str) -> Path:
    atomic_write_bytes(path, text.encode("utf-8"))
    return Path(path)


def atomic_write_json(path: Path, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def atomic_write_png(figure: Any, path: Path, dpi: int = 110) -> Path:
    """A matplotlib figure as a PNG, written atomically; the figure is closed afterwards."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    import matplotlib.pyplot as plt  # only where a figure exists, so matplotlib is already loaded

    plt.close(figure)
    atomic_write_bytes(path, buffer.getvalue())
    return Path(path)


@contextmanager
def atomic_directory(path: Path) -> Iterator[Path]:
    """Yield a temporary directory beside `path`; on success it is renamed to `path` (replacing it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary_sibling(path)
    tmp.mkdir()
    try:
        yield tmp
        if path.exists():
            shutil.rmtree(path)
        os.rename(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def remove_temporaries(directory: Path) -> None:
    """Delete what interrupted atomic writes left in `directory` (call while holding its lock)."""
    for leftover in Path(directory).rglob(f"{TMP_PREFIX}*"):
        if leftover.is_dir():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            leftover.unlink(missing_ok=True)
