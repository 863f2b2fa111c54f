"""Where a run keeps what it builds and computes: one cache directory for builds, hub refs and records."""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "LPI_CLAIMS_CACHE"


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """The cache directory: the argument, else $LPI_CLAIMS_CACHE, else ~/.cache/lpi-claims."""
    if cache_dir is not None:
        return Path(cache_dir)
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "lpi-claims"
